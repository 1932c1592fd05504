//! The tables and records of `state`: the record kept in the mesh's `state` log, and the
//! due-time index of keys with a time-to-live.

use crate::proto::Key;
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// due time (8, big-endian ms) ‖ mesh (32) ‖ key → version of the write that set the TTL
pub const TTL: Table<&[u8], u64> = Table::new("state_ttl");

/// The stream name of a mesh's state log.
pub const STREAM: &str = "state";

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    TTL.create(tx)
}

/// One write of a key, as the log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rec {
    /// Compact JSON; `None` for a removal.
    pub value: Option<String>,
    /// Member name of the writer (`claudemesh` for an expiry).
    pub by: String,
    pub expires_at_ms: Option<u64>,
    /// A removal because the TTL ran out.
    pub expired: bool,
}

impl Rec {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Option<Rec> {
        postcard::from_bytes(b).ok()
    }
}

pub fn ttl_key(due_ms: u64, mesh: &Key, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(40 + key.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&mesh.0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// (due, mesh, key) of a `state_ttl` row key.
pub fn parse_ttl_key(k: &[u8]) -> Option<(u64, Key, String)> {
    let due = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let mesh = Key(k.get(8..40)?.try_into().ok()?);
    let key = String::from_utf8(k.get(40..)?.to_vec()).ok()?;
    Some((due, mesh, key))
}

/// TTL rows written with a state record: the new one, and the one it replaces.
#[derive(Debug, Default)]
pub struct TtlRows {
    pub put: Option<(Vec<u8>, u64)>,
    pub remove: Vec<Vec<u8>>,
}

impl CapOp for TtlRows {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = TTL.write(tx)?;
        for k in &self.remove {
            t.remove(k.as_slice())?;
        }
        if let Some((k, v)) = &self.put {
            t.insert(k.as_slice(), v)?;
        }
        Ok(())
    }
}
