//! The table of `tasks`: one record per task, with who holds it (not on the wire).

use crate::proto::tasks::Task;
use crate::proto::{Id16, Key};
use crate::store::{CapOp, StoreError, Table};
use serde::{Deserialize, Serialize};

/// mesh (32) ‖ task id (16) → TaskRecord
pub const TASKS: Table<&[u8], TaskRecord> = Table::new("tasks");

pub fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    TASKS.create(tx)
}

/// A task and the peers it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub mesh: Key,
    pub task: Task,
    pub creator_peer: Key,
    pub assignee_peer: Option<Key>,
    pub claimer_peer: Option<Key>,
    pub claimer_member: Option<Key>,
    pub watchers: Vec<Key>,
}

pub fn key(mesh: &Key, id: &Id16) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(&mesh.0);
    k.extend_from_slice(&id.0);
    k
}

/// Write one task record.
#[derive(Debug)]
pub struct Put(pub TaskRecord);

impl CapOp for Put {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        TASKS
            .write(tx)?
            .insert(key(&self.0.mesh, &self.0.task.id).as_slice(), &self.0)?;
        Ok(())
    }
}

/// Every stored task (read once when the capability opens).
pub fn load(store: &crate::store::Store) -> Result<Vec<TaskRecord>, StoreError> {
    TASKS.load_all(store)
}
