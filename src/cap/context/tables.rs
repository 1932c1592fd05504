//! The table of `context`: one shared context per session (mesh ‖ peer), read whole when
//! the capability opens.

use crate::proto::context::Context;
use crate::proto::Key;
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// mesh (32) ‖ peer (32) → ContextRecord
pub const CONTEXTS: Table<&[u8], ContextRecord> = Table::new("contexts");

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    CONTEXTS.create(tx)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRecord {
    pub mesh: Key,
    pub context: Context,
}

pub fn key(mesh: &Key, peer: &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(&mesh.0);
    k.extend_from_slice(&peer.0);
    k
}

/// Writes and removals of contexts, in one transaction.
#[derive(Debug, Default)]
pub struct Change {
    pub put: Option<ContextRecord>,
    pub remove: Vec<(Key, Key)>,
}

impl CapOp for Change {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = CONTEXTS.write(tx)?;
        for (m, p) in &self.remove {
            t.remove(key(m, p).as_slice())?;
        }
        if let Some(r) = &self.put {
            t.insert(key(&r.mesh, &r.context.peer_key).as_slice(), r)?;
        }
        Ok(())
    }
}

pub fn load(store: &crate::store::Store) -> Result<Vec<ContextRecord>, StoreError> {
    CONTEXTS.load_all(store)
}
