//! Wire types of the `tasks` capability: a per-mesh task board with atomic claims,
//! dependencies, claim leases and each task's history.

use super::Id16;
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "tasks/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Create {
        title: String,
        #[serde(default)]
        body: String,
        /// A peer or member name the task is meant for (told of it; anyone may claim).
        #[serde(default)]
        assignee: Option<String>,
        /// `low`, `normal` (default), `high` or `urgent`.
        #[serde(default)]
        priority: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        /// Tasks that must be completed before this one can be claimed.
        #[serde(default)]
        depends_on: Vec<Id16>,
    },
    /// Take the task: exactly one of racing claimers wins. `lease_s`: the claim lapses
    /// (the task returns to open) if not completed within that many seconds.
    Claim {
        id: Id16,
        #[serde(default)]
        lease_s: Option<u64>,
    },
    Unclaim {
        id: Id16,
    },
    Complete {
        id: Id16,
        #[serde(default)]
        result: String,
    },
    Get {
        id: Id16,
    },
    /// Tasks matching every filter given, newest first.
    List {
        #[serde(default)]
        status: Option<TaskStatus>,
        #[serde(default)]
        assignee: Option<String>,
        #[serde(default)]
        tag: Option<String>,
    },
    /// Be told of every change of task `id` (`on: false` stops).
    Watch {
        id: Id16,
        on: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Create {
        task: Box<Task>,
    },
    /// `claimed: false` is a typed answer, not an error: another peer holds it (`task`
    /// says who), it is completed, or it waits on the open tasks in `blocked_by`.
    Claim {
        claimed: bool,
        task: Box<Task>,
        blocked_by: Vec<Id16>,
    },
    Unclaim {
        task: Box<Task>,
    },
    Complete {
        task: Box<Task>,
    },
    Get {
        task: Box<Task>,
    },
    /// Without their histories (`get` has them).
    List {
        tasks: Vec<Task>,
        truncated: bool,
    },
    Watch {
        watching: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Claimed,
    Completed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Completed => "completed",
        }
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(TaskStatus::Open),
            "claimed" => Ok(TaskStatus::Claimed),
            "completed" => Ok(TaskStatus::Completed),
            _ => Err(format!(
                "unknown task status '{s}' (expected open, claimed or completed)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: Id16,
    pub title: String,
    pub body: String,
    pub status: TaskStatus,
    pub priority: String,
    pub tags: Vec<String>,
    pub depends_on: Vec<Id16>,
    /// Member name of the creator.
    pub created_by: String,
    /// The assignee's peer name as resolved at creation.
    pub assignee: Option<String>,
    /// Peer name of the claimer while claimed (and of the completer once completed).
    pub claimed_by: Option<String>,
    pub lease_until_ms: Option<u64>,
    pub result: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub history: Vec<HistoryEntry>,
}

/// One thing that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: u64,
    /// Peer name of who did it (`claudemesh` for a lapsed lease).
    pub by: String,
    /// `created`, `claimed`, `unclaimed`, `completed`, `lease_expired`.
    pub action: String,
    #[serde(default)]
    pub note: String,
}
