//! The broker side of `clock`: every mesh's clock in memory (read once at start), and a
//! loop that ticks running clocks, pauses a clock whose mesh has no peer online and
//! resumes it when one returns. Each tick is written, then announced to the mesh as a
//! `clock_tick` event. [`mesh_now`] is mesh time for other capabilities (schedules).

use super::tables::{self, Change, ClockRecord};
use crate::broker::ctx::{Audience, CapState, Ctx};
use crate::broker::outbox::{Refusal, Responder};
use crate::proto::clock::{Clock, Request as Q, Response as A, TICK_MS};
use crate::proto::{ErrorCode, Key};
use crate::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Speeds a clock runs at.
pub const SPEEDS: std::ops::RangeInclusive<u32> = 1..=100;
/// The latest mesh time a clock starts at or jumps to (the end of year 9999), so a
/// recurring schedule's due minute always fits its firing id.
pub const MAX_MESH_TIME_MS: u64 = 253_402_300_799_999;
/// How often the loop looks at the clocks (a tick at x100 is 600 ms apart).
const STEP: Duration = Duration::from_millis(100);

pub struct Clocks {
    inner: Mutex<HashMap<Key, ClockRecord>>,
}

impl CapState for Clocks {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut m = HashMap::new();
        for mut r in tables::load(ctx.store())? {
            // The broker starts with nobody connected: a running clock waits, paused as for
            // an empty mesh, and resumes when a peer is back (the down time does not count).
            if !r.clock.paused {
                r.clock.paused = true;
                r.clock.auto_paused = true;
            }
            m.insert(r.mesh, r);
        }
        Ok(Clocks {
            inner: Mutex::new(m),
        })
    }
}

impl Clocks {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, ClockRecord>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Wall time between two ticks at `speed`.
pub fn interval_ms(speed: u32) -> u64 {
    TICK_MS / u64::from(speed.clamp(*SPEEDS.start(), *SPEEDS.end()))
}

/// The clock as answered: with its next tick while running.
fn view(r: &ClockRecord) -> Clock {
    let mut c = r.clock.clone();
    c.next_tick_at_ms = (!c.paused).then(|| r.anchor_ms + interval_ms(c.speed));
    c
}

/// Mesh time of `mesh` (ms since the Unix epoch, moving a minute per tick), when it has a
/// clock.
pub fn mesh_now(ctx: &Ctx, mesh: &Key) -> Option<u64> {
    let clocks = ctx.state::<Clocks>().ok()?;
    let t = clocks.lock().get(mesh).map(|r| r.clock.mesh_time_ms);
    t
}

pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let clocks = match ctx.state::<Clocks>() {
        Ok(s) => s,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    let now = crate::util::now_ms();
    let mut m = clocks.lock();
    // The record to write, its event and how the answer is wrapped.
    let (rec, kind, text, wrap): (_, _, _, fn(Clock) -> A) = match q {
        Q::Get {} => {
            let clock = m.get(&mesh).map(view);
            drop(m);
            return r.ok(A::Get { clock });
        }
        Q::Set { speed, start_at_ms } => {
            if !SPEEDS.contains(&speed) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!(
                        "speed is {}..={} (ticks of one mesh minute per wall minute)",
                        SPEEDS.start(),
                        SPEEDS.end()
                    ),
                ));
            }
            if start_at_ms.is_some_and(|t| t > MAX_MESH_TIME_MS) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "start_at is at most 9999-12-31T23:59:59Z",
                ));
            }
            let mut rec = match m.get(&mesh) {
                Some(old) => {
                    let mut rec = old.clone();
                    if let Some(t) = start_at_ms {
                        if t < old.clock.mesh_time_ms {
                            return r.err(Refusal::new(
                                ErrorCode::BadRequest,
                                format!(
                                    "mesh time only moves forward: it is {} already",
                                    crate::util::rfc3339(old.clock.mesh_time_ms)
                                ),
                            ));
                        }
                        rec.clock.mesh_time_ms = t;
                    }
                    rec
                }
                None => {
                    let start = start_at_ms.unwrap_or(now);
                    ClockRecord {
                        mesh,
                        clock: Clock {
                            speed,
                            paused: false,
                            auto_paused: false,
                            paused_by: None,
                            tick: 0,
                            mesh_time_ms: start,
                            started_at_ms: start,
                            set_by: String::new(),
                            updated_at_ms: now,
                            next_tick_at_ms: None,
                        },
                        anchor_ms: now,
                    }
                }
            };
            if rec.clock.speed != speed && !rec.clock.paused {
                // The new speed counts from now.
                rec.anchor_ms = now;
            }
            rec.clock.speed = speed;
            rec.clock.set_by = caller.member_name.clone();
            rec.clock.updated_at_ms = now;
            let text = format!(
                "{} set the mesh clock: {}",
                caller.member_name,
                rec.clock.describe()
            );
            (rec, "clock_set", text, |clock| A::Set { clock })
        }
        Q::Pause {} | Q::Resume {} => {
            let pause = matches!(q, Q::Pause {});
            let Some(old) = m.get(&mesh) else {
                return r.err(Refusal::new(
                    ErrorCode::NotFound,
                    "this mesh has no clock; set one first (mesh_set_clock)",
                ));
            };
            let mut rec = old.clone();
            if pause {
                rec.clock.paused = true;
                rec.clock.auto_paused = false;
                rec.clock.paused_by = Some(caller.member_name.clone());
            } else {
                if rec.clock.paused {
                    rec.anchor_ms = now;
                }
                rec.clock.paused = false;
                rec.clock.auto_paused = false;
                rec.clock.paused_by = None;
            }
            rec.clock.updated_at_ms = now;
            let verb = if pause { "paused" } else { "resumed" };
            let text = format!(
                "{} {verb} the mesh clock: {}",
                caller.member_name,
                rec.clock.describe()
            );
            if pause {
                (rec, "clock_paused", text, |clock| A::Pause { clock })
            } else {
                (rec, "clock_resumed", text, |clock| A::Resume { clock })
            }
        }
    };
    let old = m.insert(mesh, rec.clone());
    let wrote = rec.clone();
    let me = clocks.clone();
    let ctx2 = ctx.clone();
    let answer = view(&rec);
    ctx.store().submit_holding(
        m,
        Op::Cap(Box::new(Change { put: vec![rec] })),
        Box::new(move |res| match res {
            Ok(()) => {
                ctx2.notify(&Audience::Mesh, kind, &text);
                r.ok(wrap(answer));
            }
            Err(e) => {
                // Put memory back unless a tick or another change moved on from it.
                let mut m = me.lock();
                if m.get(&mesh) == Some(&wrote) {
                    match old {
                        Some(o) => m.insert(mesh, o),
                        None => m.remove(&mesh),
                    };
                }
                drop(m);
                r.err(Refusal::from(e));
            }
        }),
    );
}

/// Start the ticking loop (at broker start).
pub fn start(ctx: &Ctx) {
    ctx.every("clock: the ticking loop", STEP, step);
}

/// Tick what is due, pause clocks of empty meshes, resume auto-paused ones whose mesh has
/// a peer again; write the changes, then tell the meshes.
fn step(clocks: &Arc<Clocks>, ctx: &Ctx) {
    let meshes: Vec<Key> = clocks.lock().keys().copied().collect();
    if meshes.is_empty() {
        return;
    }
    let online: HashMap<Key, bool> = meshes
        .iter()
        .map(|k| (*k, ctx.for_mesh(*k).online_count() > 0))
        .collect();
    let now = crate::util::now_ms();
    let mut m = clocks.lock();
    let mut put = Vec::new();
    let mut events: Vec<(Key, &'static str, String)> = Vec::new();
    for (mesh, r) in m.iter_mut() {
        // A clock set since the meshes were read waits for the next step.
        let Some(&here) = online.get(mesh) else {
            continue;
        };
        let c = &mut r.clock;
        if !c.paused && !here {
            c.paused = true;
            c.auto_paused = true;
            c.updated_at_ms = now;
            put.push(r.clone());
        } else if c.paused && c.auto_paused && here {
            c.paused = false;
            c.auto_paused = false;
            c.updated_at_ms = now;
            r.anchor_ms = now;
            events.push((
                *mesh,
                "clock_resumed",
                format!("a peer is back: {}", c.describe()),
            ));
            put.push(r.clone());
        } else if !c.paused {
            let every = interval_ms(c.speed);
            let due = r.anchor_ms.saturating_add(every);
            if now >= due {
                c.tick = c.tick.saturating_add(1);
                c.mesh_time_ms = c.mesh_time_ms.saturating_add(TICK_MS);
                // A stalled broker does not burst: more than one interval behind, the
                // next interval starts now.
                r.anchor_ms = if now - due >= every { now } else { due };
                events.push((*mesh, "clock_tick", c.describe()));
                put.push(r.clone());
            }
        }
    }
    if put.is_empty() {
        return;
    }
    let ctx2 = ctx.clone();
    ctx.store().submit_holding(
        m,
        Op::Cap(Box::new(Change { put })),
        Box::new(move |res| match res {
            Ok(()) => {
                for (mesh, kind, text) in events {
                    ctx2.for_mesh(mesh).notify(&Audience::Mesh, kind, &text);
                }
            }
            // Memory has moved on; the next change writes the whole record again.
            Err(e) => tracing::warn!(error = %e, "clock: a tick could not be written"),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_a_minute_of_mesh_time_every_sixty_over_speed_seconds() {
        assert_eq!(interval_ms(1), 60_000);
        assert_eq!(interval_ms(10), 6_000);
        assert_eq!(interval_ms(100), 600);
        // Out-of-range speeds never divide by zero or tick faster than x100.
        assert_eq!(interval_ms(0), 60_000);
        assert_eq!(interval_ms(1000), 600);
    }
}
