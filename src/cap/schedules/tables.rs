//! The table of `schedules`: every pending schedule with its sealed envelopes and its next
//! due time (the persisted due queue; the broker rebuilds its in-memory index from it at
//! start, so a firing missed while the broker was down happens on start).

use crate::proto::schedules::Schedule;
use crate::proto::{Envelope, Id16, Key};
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// mesh (32) ‖ schedule id (16) → ScheduleRecord
pub const SCHEDULES: Table<&[u8], ScheduleRecord> = Table::new("schedules");

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    SCHEDULES.create(tx)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub mesh: Key,
    /// What `list` shows (`own_copy` included; it is withheld from other members).
    pub schedule: Schedule,
    /// The creator's member (who may cancel it besides admins).
    pub member: Key,
    /// Sealed as for `msg.send`, sent at each firing.
    pub envelopes: Vec<Envelope>,
}

pub fn key(mesh: &Key, id: &Id16) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(&mesh.0);
    k.extend_from_slice(&id.0);
    k
}

/// Writes and removals of schedules, in one transaction.
#[derive(Debug, Default)]
pub struct Change {
    pub put: Vec<ScheduleRecord>,
    pub remove: Vec<(Key, Id16)>,
}

impl CapOp for Change {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = SCHEDULES.write(tx)?;
        for (m, id) in &self.remove {
            t.remove(key(m, id).as_slice())?;
        }
        for r in &self.put {
            t.insert(key(&r.mesh, &r.schedule.id).as_slice(), r)?;
        }
        Ok(())
    }
}

pub fn load(store: &crate::store::Store) -> Result<Vec<ScheduleRecord>, StoreError> {
    SCHEDULES.load_all(store)
}
