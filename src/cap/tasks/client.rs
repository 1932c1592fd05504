//! The client side of `tasks`: typed calls on [`Client`].

use crate::client::{Client, ClientError};
use crate::proto::tasks::{Request as Q, Response as A, Task, TaskStatus};
use crate::proto::{Id16, Response};

/// What a new task says.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub body: String,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub tags: Vec<String>,
    pub depends_on: Vec<Id16>,
}

/// A claim's answer: won, or why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claimed {
    pub claimed: bool,
    pub task: Task,
    pub blocked_by: Vec<Id16>,
}

fn task_of(r: Response) -> Result<Task, Response> {
    match r {
        Response::Tasks(
            A::Create { task } | A::Unclaim { task } | A::Complete { task } | A::Get { task },
        ) => Ok(*task),
        r => Err(r),
    }
}

impl Client {
    pub async fn task_create(&self, t: NewTask) -> Result<Task, ClientError> {
        let q = Q::Create {
            title: t.title,
            body: t.body,
            assignee: t.assignee,
            priority: t.priority,
            tags: t.tags,
            depends_on: t.depends_on,
        };
        self.call(q, task_of).await
    }

    pub async fn task_claim(&self, id: Id16, lease_s: Option<u64>) -> Result<Claimed, ClientError> {
        self.call(Q::Claim { id, lease_s }, |r| match r {
            Response::Tasks(A::Claim {
                claimed,
                task,
                blocked_by,
            }) => Ok(Claimed {
                claimed,
                task: *task,
                blocked_by,
            }),
            r => Err(r),
        })
        .await
    }

    pub async fn task_unclaim(&self, id: Id16) -> Result<Task, ClientError> {
        self.call(Q::Unclaim { id }, task_of).await
    }

    pub async fn task_complete(&self, id: Id16, result: &str) -> Result<Task, ClientError> {
        let q = Q::Complete {
            id,
            result: result.to_string(),
        };
        self.call(q, task_of).await
    }

    pub async fn task_get(&self, id: Id16) -> Result<Task, ClientError> {
        self.call(Q::Get { id }, task_of).await
    }

    pub async fn task_list(
        &self,
        status: Option<TaskStatus>,
        assignee: Option<String>,
        tag: Option<String>,
    ) -> Result<(Vec<Task>, bool), ClientError> {
        let q = Q::List {
            status,
            assignee,
            tag,
        };
        self.call(q, |r| match r {
            Response::Tasks(A::List { tasks, truncated }) => Ok((tasks, truncated)),
            r => Err(r),
        })
        .await
    }

    pub async fn task_watch(&self, id: Id16, on: bool) -> Result<bool, ClientError> {
        self.call(Q::Watch { id, on }, |r| match r {
            Response::Tasks(A::Watch { watching }) => Ok(watching),
            r => Err(r),
        })
        .await
    }
}

/// A task id from its 32 hex digits.
pub fn parse_id(s: &str) -> Result<Id16, String> {
    Id16::parse_hex(s.trim()).ok_or_else(|| {
        format!(
            "'{}' is not a task id (32 hex digits, as create_task and list_tasks show)",
            crate::util::truncate(s, 40)
        )
    })
}

/// One line for a task: id, status, priority, title, who.
pub fn line(t: &Task) -> String {
    let who = match (t.status, &t.claimed_by, &t.assignee) {
        (TaskStatus::Completed, Some(c), _) => format!(", completed by {c}"),
        (TaskStatus::Claimed, Some(c), _) => format!(", claimed by {c}"),
        (_, _, Some(a)) => format!(", for {a}"),
        _ => String::new(),
    };
    let tags = if t.tags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", t.tags.join(","))
    };
    format!(
        "{} {} {} \"{}\"{tags} (by {}{who})",
        t.id.hex(),
        t.status.as_str(),
        t.priority,
        t.title,
        t.created_by
    )
}
