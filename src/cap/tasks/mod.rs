//! The `tasks` capability (`tasks/1`): a per-mesh task board (`create_task`, `claim_task`,
//! `unclaim_task`, `complete_task`, `get_task`, `list_tasks`, `watch_task`).
//!
//! - Semantics: a task is open, claimed or completed. A claim is decided under the
//!   capability's lock against what this broker holds (including claims still being
//!   written), so of racing claimers exactly one wins; the others get a typed answer
//!   (`claimed: false`, who holds it). A task whose dependencies are not all completed
//!   cannot be claimed (the answer lists them). `lease_s` on a claim: if the task is not
//!   completed in time it returns to open, with a `lease_expired` entry and an event.
//!   Completing is for the claimer's member (any of its sessions) or a mesh admin; an
//!   assignee is told of the task but anyone may claim it.
//! - Group roles: a task for `@eng` (assignee `@eng`) is claimed only by peers in `eng` or
//!   a sub-group with a role other than `observer` (or a mesh admin); a `lead` of `eng`
//!   (or of a group above it) may also unclaim and complete it. Its online members are
//!   told when it is created. Every change is in the task's
//!   history (who, what, when; the oldest changes after creation go past 500 entries).
//! - Events (`task_assigned`, `task_claimed`, `task_unclaimed`, `task_completed`,
//!   `task_lease_expired`) go to the creator, the assignee, the claimer (also the one that
//!   lost it) and watchers, not to the one who made the change. Best effort, like all
//!   events: `get_task` and the history are the record.
//! - Limits: title 256 bytes, body and result 16 KiB, 16 tags of 64 bytes, 32
//!   dependencies, lease up to 7 days, 10,000 tasks per mesh, lists of at most 500, 64
//!   watchers per task.
//! - Durability: each change is answered after its commit; the board is read once when
//!   the broker starts (tasks are small), leases keep running across restarts.
//! - Who: every member of the mesh sees and creates tasks.
//!
//! Table `tasks` (mesh ‖ id → the task and the peers it concerns).

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
pub mod tables;
