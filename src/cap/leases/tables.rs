//! The table of `leases`.

use crate::proto::leases::Lease;
use crate::proto::{Id16, Key};
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// mesh (32) ‖ lease id (16) → LeaseRecord
pub const LEASES: Table<&[u8], LeaseRecord> = Table::new("leases");

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    LEASES.create(tx)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub mesh: Key,
    pub lease: Lease,
    pub member: Key,
}

pub fn key(mesh: &Key, id: &Id16) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(&mesh.0);
    k.extend_from_slice(&id.0);
    k
}

/// Writes and removals of leases, in one transaction.
#[derive(Debug, Default)]
pub struct Change {
    pub put: Vec<LeaseRecord>,
    pub remove: Vec<(Key, Id16)>,
}

impl CapOp for Change {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = LEASES.write(tx)?;
        for (m, id) in &self.remove {
            t.remove(key(m, id).as_slice())?;
        }
        for r in &self.put {
            t.insert(key(&r.mesh, &r.lease.id).as_slice(), r)?;
        }
        Ok(())
    }
}

pub fn load(store: &crate::store::Store) -> Result<Vec<LeaseRecord>, StoreError> {
    LEASES.load_all(store)
}
