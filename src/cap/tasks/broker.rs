//! The broker side of `tasks`: the board of every mesh in memory (loaded once at start;
//! every change written through the group commit before it is answered), claims decided
//! under one lock so exactly one claimer wins, and the sweeper that returns lapsed claims.

use super::tables::{self, Put, TaskRecord};
use crate::broker::ctx::{Audience, Caller, CapState, Ctx};
use crate::broker::outbox::{refuse, Refusal, Responder};
use crate::proto::tasks::{HistoryEntry, Request as Q, Response as A, Task, TaskStatus};
use crate::proto::{ErrorCode, Id16, Key};
use crate::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MAX_TITLE: usize = 256;
pub const MAX_BODY: usize = 16 * 1024;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG: usize = 64;
pub const MAX_DEPS: usize = 32;
pub const MAX_TASKS: usize = 10_000;
pub const MAX_HISTORY: usize = 500;
pub const MAX_LIST: usize = 500;
pub const MAX_LEASE_S: u64 = 7 * 24 * 3600;
const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];

type Boards = HashMap<Key, HashMap<Id16, TaskRecord>>;

/// Every mesh's tasks.
pub struct Board {
    meshes: Mutex<Boards>,
}

impl CapState for Board {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut meshes: Boards = HashMap::new();
        for r in tables::load(ctx.store())? {
            meshes.entry(r.mesh).or_default().insert(r.task.id, r);
        }
        Ok(Board {
            meshes: Mutex::new(meshes),
        })
    }
}

fn not_found(id: &Id16) -> Refusal {
    Refusal::new(
        ErrorCode::NotFound,
        format!("no task {} in this mesh (list_tasks shows them)", id.hex()),
    )
}

fn short(t: &Task) -> String {
    format!(
        "\"{}\" ({})",
        crate::util::truncate(&t.title, 80),
        t.id.hex()
    )
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Boards> {
        self.meshes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `rec` (already applied in memory as the task's new state, under `held`;
    /// `before` is what it replaced), then answer and send `event` to `people`. The write
    /// is queued before `held` is released, so writes of one task reach the file in the
    /// order they were decided. A write that fails puts `before` back.
    #[allow(clippy::too_many_arguments)]
    fn save(
        self: &Arc<Self>,
        ctx: &Ctx,
        held: std::sync::MutexGuard<'_, Boards>,
        before: Option<TaskRecord>,
        rec: TaskRecord,
        people: Vec<Key>,
        event: Option<(&'static str, String)>,
        reply: impl FnOnce(Result<(), Refusal>) + Send + 'static,
    ) {
        let board = self.clone();
        let ctx2 = ctx.clone();
        let (mesh, id) = (rec.mesh, rec.task.id);
        ctx.store().submit_holding(
            held,
            Op::Cap(Box::new(Put(rec.clone()))),
            Box::new(move |res| match res {
                Ok(()) => {
                    reply(Ok(()));
                    if let Some((kind, text)) = event {
                        if !people.is_empty() {
                            ctx2.notify(&Audience::Peers(people), kind, &text);
                        }
                    }
                }
                Err(e) => {
                    // Not written: what this broker holds goes back to what is stored.
                    let mut m = board.lock();
                    let tasks = m.entry(mesh).or_default();
                    if tasks.get(&id) == Some(&rec) {
                        match before {
                            Some(b) => {
                                tasks.insert(id, b);
                            }
                            None => {
                                tasks.remove(&id);
                            }
                        }
                    }
                    drop(m);
                    reply(Err(Refusal::from(e)));
                }
            }),
        );
    }
}

/// The peers a task's events go to: creator, assignee, claimer and watchers of each of
/// `recs` (before and after a change, so a claimer that loses the task hears of it), but
/// not `except` (the one who made the change).
fn people(recs: &[&TaskRecord], except: Option<Key>) -> Vec<Key> {
    let mut v = Vec::new();
    for r in recs {
        v.push(r.creator_peer);
        v.extend(r.assignee_peer);
        v.extend(r.claimer_peer);
        v.extend(r.watchers.iter().copied());
    }
    v.sort();
    v.dedup();
    v.retain(|k| Some(*k) != except);
    v
}

fn history(t: &mut Task, by: &str, action: &str, note: String) {
    let at_ms = crate::util::now_ms();
    t.updated_at_ms = at_ms;
    t.history.push(HistoryEntry {
        at_ms,
        by: by.to_string(),
        action: action.to_string(),
        note,
    });
    if t.history.len() > MAX_HISTORY {
        // The creation stays; the oldest changes after it go.
        t.history.remove(1);
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), Refusal> {
    if s.len() > max {
        return refuse(
            ErrorCode::TooLarge,
            format!("a task {what} is at most {max} bytes"),
        );
    }
    Ok(())
}

/// The group a task is assigned to (`assignee` `@eng`), without the `@`.
fn group_of(t: &Task) -> Option<&str> {
    t.assignee.as_deref().and_then(|a| a.strip_prefix('@'))
}

/// The caller may act on a claimed task: it is the claimer's member, an admin, or a lead
/// of the group the task is for.
fn may_act(c: &Caller, r: &TaskRecord) -> bool {
    c.is_admin()
        || r.claimer_member == Some(c.member)
        || group_of(&r.task).is_some_and(|g| c.leads(g))
}

/// Who else may act, for refusals: "its claimer or a mesh admin" (+ the group's leads).
fn who_may(t: &Task) -> String {
    match group_of(t) {
        Some(g) => format!("its claimer, a lead of @{g} or a mesh admin"),
        None => "its claimer or a mesh admin".to_string(),
    }
}

/// Every `tasks` request.
pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let board = match ctx.state::<Board>() {
        Ok(b) => b,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    match q {
        Q::Create {
            title,
            body,
            assignee,
            priority,
            tags,
            depends_on,
        } => create(
            &ctx,
            &board,
            &caller,
            r,
            (title, body, assignee, priority, tags, depends_on),
        ),
        Q::Claim { id, lease_s } => {
            if lease_s.is_some_and(|s| s == 0 || s > MAX_LEASE_S) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("lease_s is 1 to {MAX_LEASE_S} seconds"),
                ));
            }
            let mut m = board.lock();
            let tasks = m.entry(mesh).or_default();
            let Some(cur) = tasks.get(&id).cloned() else {
                return r.err(not_found(&id));
            };
            let blocked_by: Vec<Id16> = cur
                .task
                .depends_on
                .iter()
                .filter(|d| {
                    tasks
                        .get(d)
                        .is_none_or(|t| t.task.status != TaskStatus::Completed)
                })
                .copied()
                .collect();
            // A task for a group is claimed by those working in it (sub-groups included,
            // observers not) or a mesh admin.
            if let Some(g) = group_of(&cur.task) {
                if !caller.works_in(g) && !caller.is_admin() {
                    return r.err(Refusal::new(
                        ErrorCode::Forbidden,
                        format!(
                            "task {} is for @{g}: join @{g} (any role but observer) to claim it",
                            cur.task.id.hex()
                        ),
                    ));
                }
            }
            let mine = cur.claimer_peer == Some(caller.peer);
            let lost = match cur.task.status {
                TaskStatus::Completed => true,
                TaskStatus::Claimed => !mine,
                TaskStatus::Open => !blocked_by.is_empty(),
            };
            if lost {
                drop(m);
                let mut task = cur.task;
                task.history.clear();
                return r.ok(A::Claim {
                    claimed: false,
                    task: Box::new(task),
                    blocked_by,
                });
            }
            let mut next = cur.clone();
            next.task.status = TaskStatus::Claimed;
            next.task.claimed_by = Some(caller.peer_name.clone());
            next.task.lease_until_ms = lease_s.map(|s| crate::util::now_ms() + s * 1000);
            next.claimer_peer = Some(caller.peer);
            next.claimer_member = Some(caller.member);
            let note = lease_s.map(|s| format!("lease {s} s")).unwrap_or_default();
            history(&mut next.task, &caller.peer_name, "claimed", note);
            tasks.insert(id, next.clone());
            let text = format!("{} claimed task {}", caller.peer_name, short(&next.task));
            let task = next.task.clone();
            let told = people(&[&cur, &next], Some(caller.peer));
            board.save(
                &ctx,
                m,
                Some(cur),
                next,
                told,
                (!mine).then_some(("task_claimed", text)),
                move |res| {
                    r.reply(res.map(|()| A::Claim {
                        claimed: true,
                        task: Box::new(task),
                        blocked_by: Vec::new(),
                    }))
                },
            );
        }
        Q::Unclaim { id } => change(&ctx, &board, &caller, id, r, |c, rec| {
            if rec.task.status != TaskStatus::Claimed {
                return refuse(
                    ErrorCode::Conflict,
                    format!(
                        "task {} is {}, not claimed",
                        rec.task.id.hex(),
                        rec.task.status.as_str()
                    ),
                );
            }
            if !may_act(c, rec) {
                return refuse(
                    ErrorCode::Forbidden,
                    format!("only {} can unclaim this task", who_may(&rec.task)),
                );
            }
            rec.task.status = TaskStatus::Open;
            rec.task.claimed_by = None;
            rec.task.lease_until_ms = None;
            rec.claimer_peer = None;
            rec.claimer_member = None;
            history(&mut rec.task, &c.peer_name, "unclaimed", String::new());
            Ok((
                "task_unclaimed",
                format!(
                    "{} gave up task {}; it is open again",
                    c.peer_name,
                    short(&rec.task)
                ),
                A::Unclaim {
                    task: Box::new(rec.task.clone()),
                },
            ))
        }),
        Q::Complete { id, result } => {
            if let Err(e) = check_text("result", &result, MAX_BODY) {
                return r.err(e);
            }
            change(&ctx, &board, &caller, id, r, move |c, rec| {
                match rec.task.status {
                    TaskStatus::Completed => {
                        return refuse(
                            ErrorCode::Conflict,
                            format!("task {} is already completed", rec.task.id.hex()),
                        )
                    }
                    TaskStatus::Claimed if may_act(c, rec) => {}
                    TaskStatus::Open if c.is_admin() => {}
                    TaskStatus::Open => {
                        return refuse(
                            ErrorCode::Forbidden,
                            format!(
                                "claim the task first (claim_task); only {} can complete it",
                                who_may(&rec.task)
                            ),
                        )
                    }
                    TaskStatus::Claimed => {
                        return refuse(
                            ErrorCode::Forbidden,
                            format!(
                                "task is claimed by {}; only {} can complete it",
                                rec.task.claimed_by.clone().unwrap_or_default(),
                                who_may(&rec.task)
                            ),
                        )
                    }
                }
                rec.task.status = TaskStatus::Completed;
                rec.task.claimed_by = Some(c.peer_name.clone());
                rec.task.lease_until_ms = None;
                rec.task.result = result;
                history(&mut rec.task, &c.peer_name, "completed", String::new());
                let res = if rec.task.result.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::util::truncate(&rec.task.result, 300))
                };
                Ok((
                    "task_completed",
                    format!("{} completed task {}{res}", c.peer_name, short(&rec.task)),
                    A::Complete {
                        task: Box::new(rec.task.clone()),
                    },
                ))
            })
        }
        Q::Get { id } => {
            let m = board.lock();
            let t = m
                .get(&mesh)
                .and_then(|t| t.get(&id))
                .map(|r| r.task.clone());
            drop(m);
            match t {
                Some(task) => r.ok(A::Get {
                    task: Box::new(task),
                }),
                None => r.err(not_found(&id)),
            }
        }
        Q::List {
            status,
            assignee,
            tag,
        } => {
            let m = board.lock();
            let mut tasks: Vec<Task> = m
                .get(&mesh)
                .map(|t| {
                    t.values()
                        .filter(|r| status.is_none_or(|s| r.task.status == s))
                        .filter(|r| {
                            assignee.as_deref().is_none_or(|a| {
                                r.task.assignee.as_deref() == Some(a)
                                    || r.task.claimed_by.as_deref() == Some(a)
                            })
                        })
                        .filter(|r| {
                            tag.as_deref()
                                .is_none_or(|g| r.task.tags.iter().any(|x| x == g))
                        })
                        .map(|r| r.task.clone())
                        .collect()
                })
                .unwrap_or_default();
            drop(m);
            tasks.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(a.id.cmp(&b.id)));
            let truncated = tasks.len() > MAX_LIST;
            tasks.truncate(MAX_LIST);
            for t in &mut tasks {
                t.history.clear();
            }
            r.ok(A::List { tasks, truncated })
        }
        Q::Watch { id, on } => {
            let mut m = board.lock();
            let tasks = m.entry(mesh).or_default();
            let Some(cur) = tasks.get(&id).cloned() else {
                return r.err(not_found(&id));
            };
            let mut next = cur.clone();
            next.watchers.retain(|k| *k != caller.peer);
            if on {
                if next.watchers.len() >= 64 {
                    return r.err(Refusal::new(
                        ErrorCode::QuotaExceeded,
                        "a task has at most 64 watchers",
                    ));
                }
                next.watchers.push(caller.peer);
            }
            tasks.insert(id, next.clone());
            board.save(&ctx, m, Some(cur), next, Vec::new(), None, move |res| {
                r.reply(res.map(|()| A::Watch { watching: on }))
            });
        }
    }
}

type Created = (
    String,
    String,
    Option<String>,
    Option<String>,
    Vec<String>,
    Vec<Id16>,
);

fn create(ctx: &Ctx, board: &Arc<Board>, caller: &Caller, r: Responder, c: Created) {
    let (title, body, assignee, priority, tags, depends_on) = c;
    let checks = (|| {
        if title.trim().is_empty() {
            return refuse(ErrorCode::BadRequest, "a task needs a title");
        }
        check_text("title", &title, MAX_TITLE)?;
        check_text("body", &body, MAX_BODY)?;
        if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG) {
            return refuse(
                ErrorCode::BadRequest,
                format!("a task has at most {MAX_TAGS} tags of 1 to {MAX_TAG} bytes"),
            );
        }
        if depends_on.len() > MAX_DEPS {
            return refuse(
                ErrorCode::BadRequest,
                format!("a task depends on at most {MAX_DEPS} tasks"),
            );
        }
        let p = priority.unwrap_or_else(|| "normal".into());
        if !PRIORITIES.contains(&p.as_str()) {
            return refuse(
                ErrorCode::BadRequest,
                format!("unknown priority '{p}' (expected low, normal, high or urgent)"),
            );
        }
        Ok(p)
    })();
    let priority = match checks {
        Ok(p) => p,
        Err(e) => return r.err(e),
    };
    // `@group`: the task is the group's (its members are told; see `claim`).
    let for_group = match assignee.as_deref().map(|a| a.strip_prefix('@')) {
        Some(Some(g)) if crate::util::valid_group(g) => Some(g.to_string()),
        Some(Some(g)) => {
            return r.err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                "'@{}' is not a group name (letters, digits, '.', '_', '-', '/' for sub-groups)",
                crate::util::truncate(g, 64)
            ),
            ))
        }
        _ => None,
    };
    let assigned = match &assignee {
        _ if for_group.is_some() => None,
        Some(name) => match ctx.resolve(std::slice::from_ref(name)) {
            Ok(v) => match v.into_iter().next().and_then(|x| x.peer) {
                Some(p) => Some((p.name, p.peer_pk)),
                None => {
                    return r.err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!(
                            "no peer or member named '{}' in this mesh",
                            crate::util::truncate(name, 64)
                        ),
                    ))
                }
            },
            Err(e) => return r.err(e),
        },
        None => None,
    };
    // Who hears of a group's task: its online peers that may claim it (read before the
    // board's lock is taken).
    let group_peers: Vec<Key> = match &for_group {
        Some(g) => ctx
            .list_peers()
            .into_iter()
            .filter(|p| p.online && p.peer_pk != caller.peer)
            .filter(|p| p.groups.iter().any(|x| x.works_in(g)))
            .map(|p| p.peer_pk)
            .collect(),
        None => Vec::new(),
    };
    let now = crate::util::now_ms();
    let mut m = board.lock();
    let tasks = m.entry(ctx.mesh()).or_default();
    if tasks.len() >= MAX_TASKS {
        return r.err(Refusal::new(
            ErrorCode::QuotaExceeded,
            format!("a mesh holds at most {MAX_TASKS} tasks"),
        ));
    }
    if let Some(d) = depends_on.iter().find(|d| !tasks.contains_key(d)) {
        return r.err(not_found(d));
    }
    let mut task = Task {
        id: Id16::random(),
        title,
        body,
        status: TaskStatus::Open,
        priority,
        tags,
        depends_on,
        created_by: caller.member_name.clone(),
        assignee: match &for_group {
            Some(g) => Some(format!("@{g}")),
            None => assigned.as_ref().map(|a| a.0.clone()),
        },
        claimed_by: None,
        lease_until_ms: None,
        result: String::new(),
        created_at_ms: now,
        updated_at_ms: now,
        history: Vec::new(),
    };
    history(&mut task, &caller.peer_name, "created", String::new());
    let rec = TaskRecord {
        mesh: ctx.mesh(),
        task: task.clone(),
        creator_peer: caller.peer,
        assignee_peer: assigned.map(|a| a.1),
        claimer_peer: None,
        claimer_member: None,
        watchers: Vec::new(),
    };
    tasks.insert(task.id, rec.clone());
    let text = format!("{} created task {} for you", caller.peer_name, short(&task));
    let text = match &for_group {
        Some(g) => format!(
            "{} created task {} for @{g}",
            caller.peer_name,
            short(&task)
        ),
        None => text,
    };
    let told: Vec<Key> = rec
        .assignee_peer
        .into_iter()
        .filter(|k| *k != caller.peer)
        .chain(group_peers)
        .collect();
    board.save(
        ctx,
        m,
        None,
        rec,
        told,
        Some(("task_assigned", text)),
        move |res| {
            r.reply(res.map(|()| A::Create {
                task: Box::new(task),
            }))
        },
    );
}

/// Apply `f` to task `id` under the lock (it validates, changes the record, and says the
/// event and the answer), then store it.
fn change<F>(ctx: &Ctx, board: &Arc<Board>, caller: &Caller, id: Id16, r: Responder, f: F)
where
    F: FnOnce(&Caller, &mut TaskRecord) -> Result<(&'static str, String, A), Refusal>,
{
    let mut m = board.lock();
    let tasks = m.entry(ctx.mesh()).or_default();
    let Some(cur) = tasks.get(&id).cloned() else {
        return r.err(not_found(&id));
    };
    let mut next = cur.clone();
    let (kind, text, answer) = match f(caller, &mut next) {
        Ok(x) => x,
        Err(e) => return r.err(e),
    };
    tasks.insert(id, next.clone());
    let told = people(&[&cur, &next], Some(caller.peer));
    board.save(
        ctx,
        m,
        Some(cur),
        next,
        told,
        Some((kind, text)),
        move |res| r.reply(res.map(|()| answer)),
    );
}

/// Start the lease sweeper (at broker start): a claim whose lease ran out returns the task
/// to open, with an event to its people.
pub fn start(ctx: &Ctx) {
    ctx.every(
        "tasks: the lease sweeper",
        Duration::from_millis(250),
        |board: &Arc<Board>, ctx| lapse(board, ctx, crate::util::now_ms()),
    );
}

/// Return every task whose claim lease ended by `now` to open, one at a time, each written
/// before the lock is let go.
fn lapse(board: &Arc<Board>, ctx: &Ctx, now: u64) {
    loop {
        let mut m = board.lock();
        let due = m.iter().find_map(|(mesh, tasks)| {
            tasks
                .values()
                .find(|r| {
                    r.task.status == TaskStatus::Claimed
                        && r.task.lease_until_ms.is_some_and(|t| t <= now)
                })
                .map(|r| (*mesh, r.task.id))
        });
        let Some((mesh, id)) = due else { return };
        let Some(rec) = m.get_mut(&mesh).and_then(|t| t.get_mut(&id)) else {
            return;
        };
        let before = rec.clone();
        let who = rec.task.claimed_by.take().unwrap_or_default();
        rec.task.status = TaskStatus::Open;
        rec.task.lease_until_ms = None;
        rec.claimer_peer = None;
        rec.claimer_member = None;
        history(
            &mut rec.task,
            "claudemesh",
            "lease_expired",
            format!("claimed by {who}"),
        );
        let after = rec.clone();
        let text = format!(
            "the claim of {who} on task {} lapsed; it is open again",
            short(&after.task)
        );
        let told = people(&[&before, &after], None);
        board.save(
            &ctx.for_mesh(mesh),
            m,
            Some(before),
            after,
            told,
            Some(("task_lease_expired", text)),
            |res| {
                if let Err(e) = res {
                    tracing::warn!(error = %e.message, "tasks: a lapsed claim could not be stored");
                }
            },
        );
    }
}
