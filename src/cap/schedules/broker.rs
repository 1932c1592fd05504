//! The broker side of `schedules`: every mesh's pending schedules in memory (read once at
//! start from the table, which is the persisted due queue), a due index, and a firing loop
//! that sends each due schedule's sealed envelopes through core delivery on behalf of its
//! creator, then advances or removes the schedule.
//!
//! Exactly once: a firing's message id is fixed by the schedule and its due time, and core
//! delivery stores a (sender, message id) once. Should the broker stop between a firing's
//! commit and the schedule's advance, the firing is repeated on start, recognised as a
//! duplicate, and only the advance happens. A firing missed while the broker was down
//! happens on start and says how late it is; missed firings of a recurring schedule
//! coalesce into that one.

use super::cron::Cron;
use super::tables::{self, Change, ScheduleRecord};
use crate::broker::ctx::{Audience, Caller, CapState, Ctx};
use crate::broker::outbox::{Refusal, Responder};
use crate::proto::schedules::{Request as Q, Response as A, Schedule};
use crate::proto::{ErrorCode, Id16, Key};
use crate::store::{Op, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Pending schedules per mesh.
pub const MAX_PER_MESH: usize = 1000;
/// The furthest a one-time schedule may lie ahead (ten years).
pub const MAX_AHEAD_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// A `deliver_at_ms` this far in the past is refused (clock skew up to it is forgiven).
pub const PAST_SLACK_MS: u64 = 60_000;
/// A firing later than this is reported as late.
pub const LATE_MS: u64 = 60_000;
/// A firing whose store write failed is tried again after this.
const RETRY_MS: u64 = 5_000;
/// How often the firing loop looks at the due index.
const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Inner {
    meshes: HashMap<Key, HashMap<Id16, ScheduleRecord>>,
    /// (due ms, mesh, id) of every wall-clock schedule, soonest first.
    due: BTreeSet<(u64, Key, Id16)>,
    /// (mesh, due mesh-time ms, id) of every schedule on its mesh's clock.
    mesh_due: BTreeSet<(Key, u64, Id16)>,
    /// Firings sent and not yet settled (`u64::MAX`), or whose store write failed, not to
    /// be tried again before this wall time.
    firing: HashMap<(Key, Id16), u64>,
}

impl Inner {
    fn insert(&mut self, r: ScheduleRecord) {
        if r.schedule.mesh_clock {
            self.mesh_due
                .insert((r.mesh, r.schedule.next_due_ms, r.schedule.id));
        } else {
            self.due
                .insert((r.schedule.next_due_ms, r.mesh, r.schedule.id));
        }
        self.meshes
            .entry(r.mesh)
            .or_default()
            .insert(r.schedule.id, r);
    }

    fn remove(&mut self, mesh: &Key, id: &Id16) -> Option<ScheduleRecord> {
        let r = self.meshes.get_mut(mesh)?.remove(id)?;
        self.due.remove(&(r.schedule.next_due_ms, *mesh, *id));
        self.mesh_due.remove(&(*mesh, r.schedule.next_due_ms, *id));
        Some(r)
    }
}

pub struct Schedules {
    inner: Mutex<Inner>,
}

impl CapState for Schedules {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut inner = Inner::default();
        for r in tables::load(ctx.store())? {
            inner.insert(r);
        }
        Ok(Schedules {
            inner: Mutex::new(inner),
        })
    }
}

impl Schedules {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write `change` (applied in memory under `held`, queued before it is released), then
    /// `reply`; `undo` puts memory back when the write fails.
    fn save(
        self: &Arc<Self>,
        ctx: &Ctx,
        held: MutexGuard<'_, Inner>,
        change: Change,
        undo: Change,
        reply: impl FnOnce(Result<(), Refusal>) + Send + 'static,
    ) {
        let me = self.clone();
        let put = change.put.clone();
        ctx.store().submit_holding(
            held,
            Op::Cap(Box::new(change)),
            Box::new(move |res| match res {
                Ok(()) => reply(Ok(())),
                Err(e) => {
                    // Undo only what is still as this change left it: a cancel or an
                    // advance that came in meanwhile stands.
                    let mut m = me.lock();
                    let untouched = |m: &Inner, mesh: &Key, id: &Id16| {
                        let now = m.meshes.get(mesh).and_then(|h| h.get(id));
                        match put.iter().find(|r| r.mesh == *mesh && r.schedule.id == *id) {
                            Some(w) => now == Some(w),
                            None => now.is_none(),
                        }
                    };
                    for (mesh, id) in &undo.remove {
                        if untouched(&m, mesh, id) {
                            m.remove(mesh, id);
                        }
                    }
                    for r in undo.put {
                        if untouched(&m, &r.mesh, &r.schedule.id) {
                            m.remove(&r.mesh, &r.schedule.id);
                            m.insert(r);
                        }
                    }
                    drop(m);
                    reply(Err(Refusal::from(e)))
                }
            }),
        );
    }
}

/// May `c` cancel `r`: its creator's member, or an admin.
fn may_cancel(c: &Caller, r: &ScheduleRecord) -> bool {
    r.member == c.member || c.is_admin()
}

/// The schedule as `c` may see it: the creator's own sealed copy only for its member.
fn view(c: &Caller, r: &ScheduleRecord) -> Schedule {
    let mut s = r.schedule.clone();
    if r.member != c.member {
        s.own_copy = None;
    }
    s
}

/// The minute a recurring firing is delivered under (big-endian, into the id's last four
/// bytes).
pub fn firing_id(id: &Id16, due_ms: u64) -> Id16 {
    let mut b = id.0;
    let minute = (due_ms / 60_000).min(u32::MAX as u64) as u32;
    b[12..].copy_from_slice(&minute.to_be_bytes());
    Id16(b)
}

pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let sched = match ctx.state::<Schedules>() {
        Ok(s) => s,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    let wall = crate::util::now_ms();
    match q {
        Q::Create {
            id,
            to,
            envelopes,
            own_copy,
            priority,
            deliver_at_ms,
            in_seconds,
            cron,
            tz,
            mesh_clock,
        } => {
            // Times are on the mesh clock when asked, else on the wall.
            let now = if mesh_clock {
                match crate::cap::clock::broker::mesh_now(&ctx, &mesh) {
                    Some(t) => t,
                    None => {
                        return r.err(Refusal::new(
                            ErrorCode::Unavailable,
                            "this mesh has no simulation clock set; schedule on wall time, or set the clock first (mesh_set_clock)",
                        ))
                    }
                }
            } else {
                wall
            };
            let first = match (deliver_at_ms, in_seconds, cron.as_deref()) {
                (Some(at), None, None) => {
                    if at.saturating_add(PAST_SLACK_MS) < now {
                        return r.err(Refusal::new(
                            ErrorCode::BadRequest,
                            format!("deliver_at {} is in the past", crate::util::rfc3339(at)),
                        ));
                    }
                    if tz.is_some() {
                        return r.err(Refusal::new(
                            ErrorCode::BadRequest,
                            "tz applies to cron schedules only (deliver_at is an absolute time)",
                        ));
                    }
                    at.max(now)
                }
                (None, Some(s), None) => {
                    if tz.is_some() {
                        return r.err(Refusal::new(
                            ErrorCode::BadRequest,
                            "tz applies to cron schedules only",
                        ));
                    }
                    now.saturating_add(s.saturating_mul(1000))
                }
                (None, None, Some(expr)) => {
                    let c = match Cron::parse(expr, tz.as_deref()) {
                        Ok(c) => c,
                        Err(e) => return r.err(Refusal::new(ErrorCode::BadRequest, e)),
                    };
                    if id.0[12..] != [0; 4] {
                        return r.err(Refusal::new(
                            ErrorCode::BadRequest,
                            "a recurring schedule's id ends in four zero bytes (each firing gets its own id from it)",
                        ));
                    }
                    match c.next_after(now) {
                        Some(t) => t,
                        None => {
                            return r.err(Refusal::new(
                                ErrorCode::BadRequest,
                                format!("cron '{expr}' never matches"),
                            ))
                        }
                    }
                }
                _ => {
                    return r.err(Refusal::new(
                        ErrorCode::BadRequest,
                        "give exactly one of deliver_at, in_seconds or cron",
                    ))
                }
            };
            if first > now.saturating_add(MAX_AHEAD_MS) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a schedule fires at most ten years ahead",
                ));
            }
            if to.len() > 256 || to.chars().any(char::is_control) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "'to' is at most 256 bytes without control characters",
                ));
            }
            if let Err(e) = ctx.check_send(&envelopes) {
                return r.err(e);
            }
            if own_copy.nonce.0.len() != 24 || own_copy.ct.0.len() > envelopes_max(&envelopes) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "own_copy is the message sealed to its creator (24-byte nonce, no larger than the envelopes)",
                ));
            }
            let schedule = Schedule {
                id,
                to,
                creator: caller.peer_name.clone(),
                creator_key: caller.peer,
                member_name: caller.member_name.clone(),
                priority,
                cron: cron.clone(),
                tz: if cron.is_some() { tz } else { None },
                mesh_clock,
                created_at_ms: wall,
                next_due_ms: first,
                fired: 0,
                last_fired_ms: None,
                last_late_ms: None,
                own_copy: Some(own_copy),
            };
            let rec = ScheduleRecord {
                mesh,
                schedule: schedule.clone(),
                member: caller.member,
                envelopes,
            };
            let mut m = sched.lock();
            let held = m.meshes.get(&mesh);
            if held.is_some_and(|h| h.contains_key(&id)) {
                return r.err(Refusal::new(
                    ErrorCode::Conflict,
                    format!("schedule {} exists already", id.hex()),
                ));
            }
            if held.map_or(0, |h| h.len()) >= MAX_PER_MESH {
                return r.err(Refusal::new(
                    ErrorCode::QuotaExceeded,
                    format!("a mesh holds at most {MAX_PER_MESH} schedules; cancel some"),
                ));
            }
            m.insert(rec.clone());
            let change = Change {
                put: vec![rec],
                remove: vec![],
            };
            let undo = Change {
                put: vec![],
                remove: vec![(mesh, id)],
            };
            sched.save(&ctx, m, change, undo, move |res| {
                r.reply(res.map(|()| A::Create {
                    schedule: Box::new(schedule),
                }))
            });
        }
        Q::List {} => {
            let m = sched.lock();
            let mut out: Vec<Schedule> = m
                .meshes
                .get(&mesh)
                .map(|h| h.values().map(|x| view(&caller, x)).collect())
                .unwrap_or_default();
            drop(m);
            // Wall-time schedules first, then those on mesh time; each soonest first.
            out.sort_by_key(|s| (s.mesh_clock, s.next_due_ms, s.id.0));
            r.ok(A::List { schedules: out })
        }
        Q::Cancel { id } => {
            let mut m = sched.lock();
            let Some(rec) = m.meshes.get(&mesh).and_then(|h| h.get(&id)) else {
                return r.err(Refusal::new(
                    ErrorCode::NotFound,
                    format!(
                        "no schedule {} in this mesh (it may have fired already)",
                        id.hex()
                    ),
                ));
            };
            if !may_cancel(&caller, rec) {
                return r.err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!(
                        "schedule {} was made by {}; only its creator or a mesh admin cancels it",
                        id.hex(),
                        rec.schedule.member_name
                    ),
                ));
            }
            if m.firing.get(&(mesh, id)) != Some(&u64::MAX) {
                m.firing.remove(&(mesh, id));
            }
            let Some(old) = m.remove(&mesh, &id) else {
                return r.err(Refusal::new(ErrorCode::NotFound, "no such schedule"));
            };
            let change = Change {
                put: vec![],
                remove: vec![(mesh, id)],
            };
            let undo = Change {
                put: vec![old],
                remove: vec![],
            };
            sched.save(&ctx, m, change, undo, move |res| {
                r.reply(res.map(|()| A::Cancel { id }))
            });
        }
    }
}

/// The largest sealed size among `envs` (the own copy holds the same text).
fn envelopes_max(envs: &[crate::proto::Envelope]) -> usize {
    envs.iter().map(|e| e.sealed.ct.0.len()).max().unwrap_or(0)
}

/// Start the firing loop (at broker start).
pub fn start(ctx: &Ctx) {
    ctx.every("schedules: the firing loop", TICK, fire_due);
}

/// Send every due schedule that is not already on its way: wall-time ones by the wall,
/// mesh-time ones by their mesh's clock.
fn fire_due(sched: &Arc<Schedules>, ctx: &Ctx) {
    let now = crate::util::now_ms();
    // Mesh time of each mesh with schedules on its clock, read before taking our lock.
    let on_clock: Vec<Key> = {
        let m = sched.lock();
        let mut v: Vec<Key> = m.mesh_due.iter().map(|(k, _, _)| *k).collect();
        v.dedup();
        v
    };
    let mesh_times: Vec<(Key, u64)> = on_clock
        .into_iter()
        .filter_map(|k| crate::cap::clock::broker::mesh_now(ctx, &k).map(|t| (k, t)))
        .collect();
    let due: Vec<(ScheduleRecord, u64)> = {
        let mut m = sched.lock();
        let mut keys: Vec<(Key, Id16, u64)> = m
            .due
            .range(..=(now, Key([0xff; 32]), Id16([0xff; 16])))
            .map(|(_, mesh, id)| (*mesh, *id, now))
            .collect();
        for (mesh, t) in &mesh_times {
            keys.extend(
                m.mesh_due
                    .range((*mesh, 0, Id16([0; 16]))..=(*mesh, *t, Id16([0xff; 16])))
                    .map(|(mesh, _, id)| (*mesh, *id, *t)),
            );
        }
        let mut out = Vec::with_capacity(keys.len());
        for (mesh, id, at) in keys {
            // On its way, or waiting to be tried again after a failed write.
            if m.firing.get(&(mesh, id)).is_some_and(|t| now < *t) {
                continue;
            }
            if let Some(r) = m.meshes.get(&mesh).and_then(|h| h.get(&id)).cloned() {
                m.firing.insert((mesh, id), u64::MAX);
                out.push((r, at));
            }
        }
        out
    };
    for (rec, at) in due {
        fire(sched, ctx, rec, at);
    }
}

fn fire(sched: &Arc<Schedules>, ctx: &Ctx, rec: ScheduleRecord, now: u64) {
    let s = &rec.schedule;
    let due = s.next_due_ms;
    let msg_id = if s.cron.is_some() {
        firing_id(&s.id, due)
    } else {
        s.id
    };
    let mctx = ctx.for_mesh(rec.mesh);
    let sched2 = sched.clone();
    let ctx2 = mctx.clone();
    mctx.send_as(
        s.creator_key,
        msg_id,
        s.priority,
        rec.envelopes.clone(),
        Box::new(move |res| settle(&sched2, &ctx2, rec, now, res)),
    );
}

/// After a firing's send: advance a recurring schedule, remove a one-time one, tell the
/// creator; a store failure leaves it due, to be tried again shortly.
fn settle(
    sched: &Arc<Schedules>,
    ctx: &Ctx,
    rec: ScheduleRecord,
    fired_at: u64,
    res: Result<u32, Refusal>,
) {
    let (mesh, id) = (rec.mesh, rec.schedule.id);
    let due = rec.schedule.next_due_ms;
    let late = fired_at.saturating_sub(due);
    let outcome = match res {
        Ok(n) => Ok(n),
        Err(e) if matches!(e.code, ErrorCode::Storage | ErrorCode::Internal) => {
            tracing::warn!(error = %e.message, schedule = %id.hex(), "schedules: a firing could not be stored; retrying");
            // Due as it was (its firing id stays the same), held back for a while.
            let mut m = sched.lock();
            m.firing
                .insert((mesh, id), crate::util::now_ms().saturating_add(RETRY_MS));
            return;
        }
        Err(e) => Err(e),
    };
    // Its creator's member was removed from the mesh: the schedule goes with it.
    let creator_gone = matches!(&outcome, Err(e) if e.code == ErrorCode::NotMember);
    let mut m = sched.lock();
    m.firing.remove(&(mesh, id));
    // Cancelled while on its way: the firing stands, nothing is left to advance.
    let Some(current) = m.remove(&mesh, &id) else {
        return;
    };
    let next = current
        .schedule
        .cron
        .as_deref()
        .and_then(|c| Cron::parse(c, current.schedule.tz.as_deref()).ok())
        .and_then(|c| c.next_after(fired_at.max(due)))
        .filter(|_| !creator_gone);
    let late_note = if late > LATE_MS {
        format!(", {} late", crate::util::human_duration(late))
    } else {
        String::new()
    };
    let text = match &outcome {
        Ok(n) => format!(
            "schedule {} to {} fired ({n} recipient(s){late_note})",
            id.hex(),
            current.schedule.to
        ),
        Err(e) => format!(
            "schedule {} to {} could not be delivered: {}",
            id.hex(),
            current.schedule.to,
            e.message
        ),
    };
    let creator = current.schedule.creator_key;
    let (change, undo) = match next {
        Some(n) => {
            let mut r = current.clone();
            r.schedule.next_due_ms = n;
            r.schedule.fired = r.schedule.fired.saturating_add(1);
            r.schedule.last_fired_ms = Some(fired_at);
            r.schedule.last_late_ms = Some(late);
            m.insert(r.clone());
            (
                Change {
                    put: vec![r],
                    remove: vec![],
                },
                Change {
                    put: vec![current],
                    remove: vec![],
                },
            )
        }
        None => (
            Change {
                put: vec![],
                remove: vec![(mesh, id)],
            },
            Change {
                put: vec![current],
                remove: vec![],
            },
        ),
    };
    let ctx2 = ctx.clone();
    sched.save(ctx, m, change, undo, move |res| match res {
        Ok(()) => ctx2.notify(&Audience::Peers(vec![creator]), "schedule_fired", &text),
        Err(e) => {
            tracing::warn!(error = %e.message, "schedules: a fired schedule could not be advanced")
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_ids_differ_per_due_minute_and_keep_the_schedule_prefix() {
        let id = Id16([7; 16]);
        let a = firing_id(
            &Id16([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0]),
            120_000,
        );
        let b = firing_id(
            &Id16([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0]),
            180_000,
        );
        assert_ne!(a, b);
        assert_eq!(a.0[..12], id.0[..12]);
        assert_eq!(a.0[12..], 2u32.to_be_bytes());
        // Seconds within the minute do not change the id: a repeated firing is the same.
        assert_eq!(firing_id(&a, 120_000), firing_id(&a, 179_999));
    }
}
