//! The broker side of `leases`: every mesh's leases in memory (read once at start), each
//! reservation decided under one lock against them (so two peers cannot both get
//! overlapping exclusive leases), written through the group commit, and a sweeper that
//! drops expired leases and those of peers gone longer than the grace window.

use super::glob::{normalize, overlap};
use super::tables::{self, Change, LeaseRecord};
use crate::broker::ctx::{Audience, Caller, CapState, Ctx};
use crate::broker::outbox::{refuse, Refusal, Responder};
use crate::proto::leases::{Lease, Request as Q, Response as A};
use crate::proto::{ErrorCode, Id16, Key};
use crate::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MAX_PATHS: usize = 64;
pub const MAX_PATH: usize = 1024;
pub const MAX_REASON: usize = 512;
pub const MAX_STARS: usize = 16;
pub const MAX_LEASES: usize = 1000;
pub const DEFAULT_TTL_S: u64 = 3600;
pub const MAX_TTL_S: u64 = 24 * 3600;

type Meshes = HashMap<Key, HashMap<Id16, LeaseRecord>>;

pub struct Leases {
    meshes: Mutex<Meshes>,
}

impl CapState for Leases {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut meshes: Meshes = HashMap::new();
        for r in tables::load(ctx.store())? {
            meshes.entry(r.mesh).or_default().insert(r.lease.id, r);
        }
        Ok(Leases {
            meshes: Mutex::new(meshes),
        })
    }
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Meshes> {
        self.meshes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write `change` (already applied in memory under `held`; queued before `held` is
    /// released, so changes reach the file in the order they were decided; `undo` puts
    /// memory back if the write fails), then answer.
    fn save(
        self: &Arc<Self>,
        ctx: &Ctx,
        held: std::sync::MutexGuard<'_, Meshes>,
        change: Change,
        undo: Change,
        reply: impl FnOnce(Result<(), Refusal>) + Send + 'static,
    ) {
        let me = self.clone();
        ctx.store().submit_holding(
            held,
            Op::Cap(Box::new(change)),
            Box::new(move |res| match res {
                Ok(()) => reply(Ok(())),
                Err(e) => {
                    let mut m = me.lock();
                    for (mesh, id) in &undo.remove {
                        if let Some(t) = m.get_mut(mesh) {
                            t.remove(id);
                        }
                    }
                    for r in undo.put {
                        m.entry(r.mesh).or_default().insert(r.lease.id, r);
                    }
                    drop(m);
                    reply(Err(Refusal::from(e)))
                }
            }),
        );
    }
}

fn check_paths(paths: &[String]) -> Result<Vec<String>, Refusal> {
    if paths.len() > MAX_PATHS {
        return refuse(
            ErrorCode::BadRequest,
            format!("at most {MAX_PATHS} patterns per reservation"),
        );
    }
    let mut out = Vec::new();
    for p in paths {
        if p.len() > MAX_PATH || p.chars().any(char::is_control) {
            return refuse(
                ErrorCode::BadRequest,
                format!("a path pattern is at most {MAX_PATH} bytes without control characters"),
            );
        }
        if p.matches('*').count() > MAX_STARS {
            return refuse(
                ErrorCode::BadRequest,
                format!("a path pattern has at most {MAX_STARS} '*'"),
            );
        }
        let n = normalize(p);
        if n.is_empty() || n == "/" {
            return refuse(
                ErrorCode::BadRequest,
                "an empty path pattern reserves nothing",
            );
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// May `c` release `r`: its holder's member, or an admin.
fn may_release(c: &Caller, r: &LeaseRecord) -> bool {
    r.member == c.member || c.is_admin()
}

pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let leases = match ctx.state::<Leases>() {
        Ok(l) => l,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    let now = crate::util::now_ms();
    match q {
        Q::Reserve {
            paths,
            exclusive,
            ttl_s,
            reason,
        } => {
            let paths = match check_paths(&paths) {
                Ok(p) if p.is_empty() => {
                    return r.err(Refusal::new(
                        ErrorCode::BadRequest,
                        "name at least one path pattern to reserve",
                    ))
                }
                Ok(p) => p,
                Err(e) => return r.err(e),
            };
            if reason.len() > MAX_REASON {
                return r.err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("a lease reason is at most {MAX_REASON} bytes"),
                ));
            }
            let ttl = ttl_s.unwrap_or(DEFAULT_TTL_S);
            if ttl == 0 || ttl > MAX_TTL_S {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("ttl_s is 1 to {MAX_TTL_S} seconds"),
                ));
            }
            let exclusive = exclusive.unwrap_or(true);
            let mut m = leases.lock();
            let held = m.entry(mesh).or_default();
            let mut conflicts: Vec<Lease> = held
                .values()
                .filter(|x| x.lease.holder_key != caller.peer && x.lease.expires_at_ms > now)
                .filter(|x| exclusive || x.lease.exclusive)
                .filter(|x| {
                    x.lease
                        .paths
                        .iter()
                        .any(|h| paths.iter().any(|p| overlap(h, p)))
                })
                .map(|x| x.lease.clone())
                .collect();
            if !conflicts.is_empty() {
                drop(m);
                conflicts.sort_by_key(|l| l.created_at_ms);
                return r.ok(A::Reserve {
                    granted: false,
                    lease: None,
                    conflicts,
                });
            }
            if held.len() >= MAX_LEASES {
                return r.err(Refusal::new(
                    ErrorCode::QuotaExceeded,
                    format!("a mesh holds at most {MAX_LEASES} leases; release some"),
                ));
            }
            let lease = Lease {
                id: Id16::random(),
                paths,
                exclusive,
                reason,
                holder: caller.peer_name.clone(),
                holder_key: caller.peer,
                member_name: caller.member_name.clone(),
                created_at_ms: now,
                expires_at_ms: now + ttl * 1000,
            };
            let rec = LeaseRecord {
                mesh,
                lease: lease.clone(),
                member: caller.member,
            };
            held.insert(lease.id, rec.clone());
            let undo = Change {
                put: vec![],
                remove: vec![(mesh, lease.id)],
            };
            let change = Change {
                put: vec![rec],
                remove: vec![],
            };
            leases.save(&ctx, m, change, undo, move |res| {
                r.reply(res.map(|()| A::Reserve {
                    granted: true,
                    lease: Some(Box::new(lease)),
                    conflicts: Vec::new(),
                }))
            });
        }
        Q::Release { paths, lease_id } => {
            let paths = match check_paths(&paths) {
                Ok(p) => p,
                Err(e) => return r.err(e),
            };
            if paths.is_empty() == lease_id.is_none() {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "release names either a lease_id or the paths to release",
                ));
            }
            let mut m = leases.lock();
            let held = m.entry(mesh).or_default();
            let (mut change, mut undo) = (Change::default(), Change::default());
            let mut released = Vec::new();
            if let Some(id) = lease_id {
                let Some(rec) = held.get(&id) else {
                    return r.err(Refusal::new(
                        ErrorCode::NotFound,
                        format!("no lease {} in this mesh (it may have lapsed)", id.hex()),
                    ));
                };
                if !may_release(&caller, rec) {
                    return r.err(Refusal::new(
                        ErrorCode::Forbidden,
                        format!(
                            "lease {} is held by {}; only its holder or a mesh admin releases it",
                            id.hex(),
                            rec.lease.holder
                        ),
                    ));
                }
                if let Some(old) = held.remove(&id) {
                    undo.put.push(old);
                }
                change.remove.push((mesh, id));
                released.push(id);
            } else {
                let mine: Vec<Id16> = held
                    .values()
                    .filter(|x| x.lease.holder_key == caller.peer)
                    .map(|x| x.lease.id)
                    .collect();
                for id in mine {
                    let Some(rec) = held.get_mut(&id) else {
                        continue;
                    };
                    let before = rec.clone();
                    rec.lease.paths.retain(|p| !paths.contains(p));
                    if rec.lease.paths.len() == before.lease.paths.len() {
                        continue;
                    }
                    released.push(id);
                    undo.put.push(before);
                    if rec.lease.paths.is_empty() {
                        held.remove(&id);
                        change.remove.push((mesh, id));
                    } else {
                        change.put.push(rec.clone());
                    }
                }
            }
            if released.is_empty() {
                drop(m);
                return r.ok(A::Release { released });
            }
            leases.save(&ctx, m, change, undo, move |res| {
                r.reply(res.map(|()| A::Release { released }))
            });
        }
        Q::List { path } => {
            let path = match path.map(|p| check_paths(&[p])) {
                Some(Ok(mut v)) => v.pop(),
                Some(Err(e)) => return r.err(e),
                None => None,
            };
            let m = leases.lock();
            let mut out: Vec<Lease> = m
                .get(&mesh)
                .map(|t| {
                    t.values()
                        .filter(|x| x.lease.expires_at_ms > now)
                        .filter(|x| {
                            path.as_deref()
                                .is_none_or(|p| x.lease.paths.iter().any(|h| overlap(h, p)))
                        })
                        .map(|x| x.lease.clone())
                        .collect()
                })
                .unwrap_or_default();
            drop(m);
            out.sort_by_key(|l| l.created_at_ms);
            r.ok(A::List { leases: out })
        }
    }
}

/// Start the sweeper (at broker start): expired leases, and leases of peers gone longer
/// than the grace window, are dropped with an event to the mesh.
pub fn start(ctx: &Ctx) {
    ctx.every("leases: the sweeper", Duration::from_millis(250), sweep);
}

fn sweep(leases: &Arc<Leases>, ctx: &Ctx) {
    let now = crate::util::now_ms();
    let grace = ctx.grace().as_millis() as u64;
    let mut gone: Vec<(LeaseRecord, &'static str)> = Vec::new();
    {
        let mut m = leases.lock();
        for (mesh, held) in m.iter_mut() {
            let mctx = ctx.for_mesh(*mesh);
            let drop_ids: Vec<(Id16, &'static str)> = held
                .values()
                .filter_map(|x| {
                    if x.lease.expires_at_ms <= now {
                        return Some((x.lease.id, "expired"));
                    }
                    match mctx.presence(&x.lease.holder_key) {
                        None => Some((x.lease.id, "its holder left the mesh")),
                        Some((false, seen)) if now.saturating_sub(seen) > grace => {
                            Some((x.lease.id, "its holder went away"))
                        }
                        _ => None,
                    }
                })
                .collect();
            for (id, why) in drop_ids {
                if let Some(r) = held.remove(&id) {
                    gone.push((r, why));
                }
            }
        }
    }
    for (rec, why) in gone {
        let mctx = ctx.for_mesh(rec.mesh);
        let text = format!(
            "the lease of {} on {} was released: {why}",
            rec.lease.holder,
            rec.lease.paths.join(", ")
        );
        let change = Change {
            put: vec![],
            remove: vec![(rec.mesh, rec.lease.id)],
        };
        let undo = Change {
            put: vec![rec],
            remove: vec![],
        };
        let ctx2 = mctx.clone();
        leases.save(&mctx, leases.lock(), change, undo, move |res| match res {
            Ok(()) => ctx2.notify(&Audience::Mesh, "lease_released", &text),
            Err(e) => {
                tracing::warn!(error = %e.message, "leases: a lapsed lease could not be removed")
            }
        });
    }
}
