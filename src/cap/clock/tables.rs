//! The table of `clock`: one clock per mesh, written at every change and every tick (a
//! tick is a small record; the group-commit writer batches them), read whole at start.

use crate::proto::clock::Clock;
use crate::proto::Key;
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// mesh (32) → ClockRecord
pub const CLOCKS: Table<&[u8], ClockRecord> = Table::new("clocks");

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    CLOCKS.create(tx)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRecord {
    pub mesh: Key,
    pub clock: Clock,
    /// Wall time the current tick interval began (the last tick, or the resume).
    pub anchor_ms: u64,
}

/// Clocks written in one transaction.
#[derive(Debug, Default)]
pub struct Change {
    pub put: Vec<ClockRecord>,
}

impl CapOp for Change {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = CLOCKS.write(tx)?;
        for r in &self.put {
            t.insert(r.mesh.0.as_slice(), r)?;
        }
        Ok(())
    }
}

pub fn load(store: &crate::store::Store) -> Result<Vec<ClockRecord>, StoreError> {
    CLOCKS.load_all(store)
}
