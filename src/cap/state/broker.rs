//! The broker side of `state`: validation, compare-and-set against the versions this broker
//! has handed out (a write in flight is already counted), watches, and the TTL sweeper.

use super::tables::{parse_ttl_key, ttl_key, Rec, TtlRows, STREAM, TTL};
use crate::broker::ctx::{CapState, Ctx};
use crate::broker::outbox::{refuse, Refusal, Responder};
use crate::proto::state::{Change, Entry, Request as Q, Response as A};
use crate::proto::{ErrorCode, Json, Key, Push};
use crate::store::log::{self, AppendOpts, LogId};
use crate::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MAX_KEY: usize = 256;
pub const MAX_VALUE: usize = 64 * 1024;
pub const MAX_TTL_S: u64 = 365 * 24 * 3600;
pub const MAX_LIST: usize = 1000;
const MAX_LIST_BYTES: usize = 1 << 20;
/// Keys remembered before the committed ones are forgotten (they are read from the log
/// again when next touched); writes in flight are always kept.
const MAX_REMEMBERED: usize = 65_536;

/// A key as this broker last wrote or read it.
#[derive(Debug, Clone)]
struct Meta {
    version: u64,
    /// The newest record is a value (not a removal).
    alive: bool,
    expires_at_ms: Option<u64>,
    /// The newest record while its commit is in flight (so a lost compare-and-set can
    /// show it).
    pending: Option<Arc<Entry>>,
    /// `version` is committed (the log says the same): the entry may be forgotten.
    committed: bool,
}

impl Meta {
    fn live(&self, now: u64) -> bool {
        self.alive && self.expires_at_ms.is_none_or(|t| t > now)
    }
}

/// The capability's state: the versions of keys touched recently (up to
/// [`MAX_REMEMBERED`] beyond those with a write in flight; the rest are read from the log
/// when touched), and the sweeper's wake-up.
pub struct Kv {
    keys: Mutex<HashMap<(Key, String), Meta>>,
    sweep: tokio::sync::Notify,
}

impl CapState for Kv {
    fn open(_: &Ctx) -> Result<Self, StoreError> {
        Ok(Kv {
            keys: Mutex::new(HashMap::new()),
            sweep: tokio::sync::Notify::new(),
        })
    }
}

fn log_id(mesh: Key) -> LogId {
    LogId::new(mesh, STREAM)
}

fn entry_of(key: &str, e: &log::Entry) -> Option<(Rec, Entry)> {
    let r = Rec::decode(&e.data)?;
    let value = r.value.as_deref().and_then(|v| Json::parse(v).ok());
    let entry = Entry {
        key: key.to_string(),
        value: value.unwrap_or_default(),
        version: e.seq,
        updated_by: r.by.clone(),
        updated_at_ms: e.at_ms,
        expires_at_ms: r.expires_at_ms,
    };
    Some((r, entry))
}

/// The key's committed entry if it is live now.
fn read_live(ctx: &Ctx, key: &str, now: u64) -> Result<Option<Entry>, Refusal> {
    let e = log::latest(ctx.store(), &log_id(ctx.mesh()), key).map_err(stored)?;
    Ok(e.and_then(|e| entry_of(key, &e))
        .filter(|(r, en)| r.value.is_some() && en.expires_at_ms.is_none_or(|t| t > now))
        .map(|(_, en)| en))
}

fn stored(e: StoreError) -> Refusal {
    Refusal::from(Arc::new(e))
}

fn check_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() || key.len() > MAX_KEY {
        return refuse(
            ErrorCode::BadRequest,
            format!("a state key is 1 to {MAX_KEY} bytes"),
        );
    }
    if key.chars().any(char::is_control) {
        return refuse(
            ErrorCode::BadRequest,
            "a state key has no control characters",
        );
    }
    Ok(())
}

impl Kv {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Key, String), Meta>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key's meta, read from the log the first time.
    fn meta<'a>(
        ctx: &Ctx,
        mesh: Key,
        keys: &'a mut HashMap<(Key, String), Meta>,
        key: &str,
    ) -> Result<&'a mut Meta, Refusal> {
        let k = (mesh, key.to_string());
        if !keys.contains_key(&k) {
            let e = log::latest(ctx.store(), &log_id(mesh), key).map_err(stored)?;
            let m = match e.as_ref().and_then(|e| entry_of(key, e)) {
                Some((r, en)) => Meta {
                    version: en.version,
                    alive: r.value.is_some(),
                    expires_at_ms: r.expires_at_ms,
                    pending: None,
                    committed: true,
                },
                None => Meta {
                    version: 0,
                    alive: false,
                    expires_at_ms: None,
                    pending: None,
                    committed: true,
                },
            };
            if keys.len() >= MAX_REMEMBERED {
                // Forget what the log holds anyway; a write in flight stays counted.
                keys.retain(|_, m| !m.committed);
            }
            keys.insert(k.clone(), m);
        }
        keys.get_mut(&k)
            .ok_or_else(|| Refusal::new(ErrorCode::Internal, "state index"))
    }

    /// Write `rec` for `key` if `check` passes on the key's newest record (its version,
    /// whether it is a value, whether that value is live now): under the lock, so
    /// concurrent writers see each other. `answer` gets the new version, or
    /// `Err((current version or 0, current entry, live))` when the check failed; `reply`
    /// gets the answer (after the commit) or the store's refusal.
    #[allow(clippy::too_many_arguments)]
    fn write(
        self: &Arc<Self>,
        ctx: &Ctx,
        mesh: Key,
        key: &str,
        rec: Rec,
        check: impl FnOnce(u64, bool, bool) -> bool,
        answer: impl FnOnce(Result<u64, (u64, Option<Entry>, bool)>) -> A + Send + 'static,
        reply: impl FnOnce(Result<A, Refusal>) + Send + 'static,
    ) {
        let now = crate::util::now_ms();
        let mut keys = self.lock();
        let m = match Self::meta(ctx, mesh, &mut keys, key) {
            Ok(m) => m,
            Err(e) => return reply(Err(e)),
        };
        let live = m.live(now);
        let current = if live { m.version } else { 0 };
        if !check(m.version, m.alive, live) {
            let pending = m.pending.clone();
            drop(keys);
            let entry = match pending {
                Some(p) if live => Some((*p).clone()),
                _ if live => match read_live(ctx, key, now) {
                    Ok(e) => e,
                    Err(e) => return reply(Err(e)),
                },
                _ => None,
            };
            return reply(Ok(answer(Err((current, entry, live)))));
        }
        let mut ttl = TtlRows::default();
        if let Some(old) = m.expires_at_ms {
            ttl.remove.push(ttl_key(old, &mesh, key));
        }
        let due = rec.expires_at_ms;
        let data = rec.encode();
        let opts = AppendOpts {
            replace: true,
            ..Default::default()
        };
        let kv = self.clone();
        let k = (mesh, key.to_string());
        let k2 = k.clone();
        let seq_slot = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let slot = seq_slot.clone();
        let assigned = ctx.store().logs().append_with(
            ctx.store(),
            &log_id(mesh),
            key,
            data,
            opts,
            |seq| {
                if let Some(d) = due {
                    ttl.put = Some((ttl_key(d, &mesh, key), seq));
                }
                (!ttl.remove.is_empty() || ttl.put.is_some())
                    .then(|| Box::new(ttl) as Box<dyn crate::store::CapOp>)
            },
            move |res| {
                let mut keys = kv.lock();
                // Read under the lock: the writer stores it before releasing it.
                let seq = slot.load(std::sync::atomic::Ordering::SeqCst);
                match res {
                    Ok(v) => {
                        if let Some(m) = keys.get_mut(&k2) {
                            if m.version == v {
                                m.pending = None;
                                m.committed = true;
                            }
                        }
                        drop(keys);
                        if due.is_some() {
                            // Committed: the sweeper can see the new due time now.
                            kv.sweep.notify_one();
                        }
                        reply(Ok(answer(Ok(v))));
                    }
                    Err(e) => {
                        // Not written: forget what this broker assumed (read again later).
                        if keys.get(&k2).is_some_and(|m| m.version == seq || seq == 0) {
                            keys.remove(&k2);
                        }
                        drop(keys);
                        reply(Err(Refusal::from(e)));
                    }
                }
            },
        );
        let seq = match assigned {
            Ok(seq) => seq,
            Err(refused) => {
                drop(keys);
                return refused.run();
            }
        };
        {
            seq_slot.store(seq, std::sync::atomic::Ordering::SeqCst);
            let value = rec.value.as_deref().and_then(|v| Json::parse(v).ok());
            keys.insert(
                k,
                Meta {
                    version: seq,
                    alive: rec.value.is_some(),
                    expires_at_ms: due,
                    committed: false,
                    pending: value.map(|value| {
                        Arc::new(Entry {
                            key: key.to_string(),
                            value,
                            version: seq,
                            updated_by: rec.by.clone(),
                            updated_at_ms: now,
                            expires_at_ms: due,
                        })
                    }),
                },
            );
        }
    }
}

/// Every `state` request.
pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let kv = match ctx.state::<Kv>() {
        Ok(k) => k,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    match q {
        Q::Set {
            key,
            value,
            if_version,
            ttl_s,
        } => {
            if let Err(e) = check_key(&key) {
                return r.err(e);
            }
            if value.len() > MAX_VALUE {
                return r.err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!(
                        "a state value is at most {MAX_VALUE} bytes of compact JSON (this one is {})",
                        value.len()
                    ),
                ));
            }
            if ttl_s.is_some_and(|t| t == 0 || t > MAX_TTL_S) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("ttl_s is 1 to {MAX_TTL_S} seconds"),
                ));
            }
            let rec = Rec {
                value: Some(value.as_str().to_string()),
                by: caller.member_name,
                expires_at_ms: ttl_s.map(|t| crate::util::now_ms() + t * 1000),
                expired: false,
            };
            kv.write(
                &ctx,
                mesh,
                &key.clone(),
                rec,
                move |version, _, live| {
                    if_version.is_none_or(|v| v == if live { version } else { 0 })
                },
                |res| match res {
                    Ok(version) => A::Set {
                        applied: true,
                        version,
                        current: None,
                    },
                    Err((version, current, _)) => A::Set {
                        applied: false,
                        version,
                        current,
                    },
                },
                move |res| r.reply(res),
            )
        }
        Q::Get { key } => {
            if let Err(e) = check_key(&key) {
                return r.err(e);
            }
            r.reply(read_live(&ctx, &key, crate::util::now_ms()).map(|entry| A::Get { entry }))
        }
        Q::Delete { key, if_version } => {
            if let Err(e) = check_key(&key) {
                return r.err(e);
            }
            let rec = Rec {
                value: None,
                by: caller.member_name,
                expires_at_ms: None,
                expired: false,
            };
            kv.write(
                &ctx,
                mesh,
                &key.clone(),
                rec,
                move |version, _, live| live && if_version.is_none_or(|v| v == version),
                |res| match res {
                    Ok(version) => A::Delete {
                        applied: true,
                        existed: true,
                        version,
                    },
                    Err((version, _, live)) => A::Delete {
                        applied: false,
                        existed: live,
                        version,
                    },
                },
                move |res| r.reply(res),
            )
        }
        Q::List { prefix } => r.reply(list(&ctx, &prefix)),
        Q::Watch {
            sub,
            key,
            prefix,
            from_version,
        } => {
            let filter = match (key, prefix) {
                (Some(k), None) => {
                    if let Err(e) = check_key(&k) {
                        return r.err(e);
                    }
                    Filter::Key(k)
                }
                (None, Some(p)) => Filter::Prefix(p),
                _ => return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "watch names exactly one of key or prefix (an empty prefix watches every key)",
                )),
            };
            let conn = r.conn();
            let res = ctx.follow(conn, sub, log_id(mesh), from_version, move |e| {
                if !filter.matches(&e.subject) {
                    return None;
                }
                let rec = Rec::decode(&e.data)?;
                Some(Push::State(Change {
                    key: e.subject.clone(),
                    version: e.seq,
                    value: rec.value.as_deref().and_then(|v| Json::parse(v).ok()),
                    deleted: rec.value.is_none(),
                    updated_by: rec.by,
                    at_ms: e.at_ms,
                    expired: rec.expired,
                }))
            });
            r.reply(res.map(|next_version| A::Watch { sub, next_version }))
        }
        Q::Unwatch { sub } => {
            let res = ctx.unfollow(r.conn_id(), sub);
            r.reply(res.map(|existed| A::Unwatch { existed }))
        }
    }
}

enum Filter {
    Key(String),
    Prefix(String),
}

impl Filter {
    fn matches(&self, subject: &str) -> bool {
        match self {
            Filter::Key(k) => subject == k,
            Filter::Prefix(p) => subject.starts_with(p.as_str()),
        }
    }
}

fn list(ctx: &Ctx, prefix: &str) -> Result<A, Refusal> {
    let id = log_id(ctx.mesh());
    let now = crate::util::now_ms();
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page =
            log::subjects(ctx.store(), &id, prefix, after.as_deref(), 512).map_err(stored)?;
        let Some((last, _)) = page.last() else {
            return Ok(A::List {
                entries,
                truncated: false,
            });
        };
        after = Some(last.clone());
        for (key, seq) in page {
            let Some(e) = log::get(ctx.store(), &id, seq).map_err(stored)? else {
                continue;
            };
            let Some((rec, en)) = entry_of(&key, &e) else {
                continue;
            };
            if rec.value.is_none() || en.expires_at_ms.is_some_and(|t| t <= now) {
                continue;
            }
            if entries.len() >= MAX_LIST || bytes >= MAX_LIST_BYTES {
                return Ok(A::List {
                    entries,
                    truncated: true,
                });
            }
            bytes += en.key.len() + en.value.len();
            entries.push(en);
        }
    }
}

/// Start the TTL sweeper (at broker start): it removes keys whose time ran out, in due
/// order, and sleeps until the next due time or a new, earlier TTL.
pub fn start(ctx: &Ctx) {
    let kv = match ctx.state::<Kv>() {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e.message, "state: the TTL sweeper cannot start");
            return;
        }
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut closing = ctx.closing();
        loop {
            let now = crate::util::now_ms();
            let wait = match sweep_due(&kv, &ctx, now).await {
                Ok(Some(next)) => Duration::from_millis(next.saturating_sub(now).clamp(1, 60_000)),
                Ok(None) => Duration::from_secs(60),
                Err(e) => {
                    tracing::warn!(error = %e, "state: TTL sweep failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = kv.sweep.notified() => {}
                _ = closing.changed() => return,
            }
        }
    });
}

/// Remove every key due by `now`; returns the next due time.
async fn sweep_due(kv: &Arc<Kv>, ctx: &Ctx, now: u64) -> Result<Option<u64>, StoreError> {
    let rows: Vec<(Vec<u8>, u64)> = ctx.store().read(|tx| {
        let t = TTL.read(tx)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_vec(), v));
            if out.len() >= 256 {
                break;
            }
        }
        Ok(out)
    })?;
    let full = rows.len() >= 256;
    for (row, version) in rows {
        let Some((due, mesh, key)) = parse_ttl_key(&row) else {
            // Not a key this version writes: drop it rather than loop on it.
            let _ = ctx
                .store()
                .commit(Op::Cap(Box::new(TtlRows {
                    put: None,
                    remove: vec![row],
                })))
                .await;
            continue;
        };
        if due > now {
            return Ok(Some(due));
        }
        let mctx = ctx.for_mesh(mesh);
        let current = {
            let mut keys = kv.lock();
            match Kv::meta(&mctx, mesh, &mut keys, &key) {
                Ok(m) => m.version == version && m.alive,
                // Unreadable now: keep the row and try again later.
                Err(e) => return Err(StoreError::Unavailable(e.message)),
            }
        };
        if !current {
            // Overwritten or removed since: its row is stale.
            ctx.store()
                .commit(Op::Cap(Box::new(TtlRows {
                    put: None,
                    remove: vec![row],
                })))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            continue;
        }
        let rec = Rec {
            value: None,
            by: "claudemesh".into(),
            expires_at_ms: None,
            expired: true,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        kv.write(
            &mctx,
            mesh,
            &key,
            rec,
            move |v, alive, _| alive && v == version,
            move |_| A::Unwatch { existed: true },
            move |res| {
                let _ = tx.send(res.err());
            },
        );
        if let Ok(Some(e)) = rx.await {
            return Err(StoreError::Unavailable(e.message));
        }
    }
    // A full batch may have more due rows behind it: look again at once.
    Ok(full.then_some(now))
}
