//! The broker side of `streams`: each stream is a per-mesh log (`stream:<name>`) with the
//! stream's retention; publishing is an append, reading a read transaction, subscribing a
//! log follow (`broker::feed`). A sweeper applies age limits.

use crate::broker::ctx::{CapState, Ctx};
use crate::broker::outbox::{refuse, Refusal, Responder};
use crate::proto::streams::{Message, Request as Q, Response as A, StreamInfo};
use crate::proto::{ErrorCode, Json, Key, Push};
use crate::store::log::{self, LogId, Logs, Retention};
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MAX_NAME: usize = 128;
pub const MAX_DATA: usize = 64 * 1024;
pub const MAX_READ: u32 = 1000;
pub const MAX_STREAMS: usize = 256;
const PREFIX: &str = "stream:";

/// The streams that exist, with their limits (read once at start; created here).
pub struct Streams {
    known: Mutex<HashMap<(Key, String), Retention>>,
}

impl CapState for Streams {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut known = HashMap::new();
        for (id, info) in log::all_streams(ctx.store(), PREFIX)? {
            let name = id.stream[PREFIX.len()..].to_string();
            known.insert((id.mesh, name), info.retention);
        }
        Ok(Streams {
            known: Mutex::new(known),
        })
    }
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Key, String), Retention>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn retention(&self, mesh: Key, name: &str) -> Result<Retention, Refusal> {
        self.lock()
            .get(&(mesh, name.to_string()))
            .copied()
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NotFound,
                    format!(
                        "no stream '{}' in this mesh (create_stream makes one; list_streams shows them)",
                        crate::util::truncate(name, 64)
                    ),
                )
            })
    }
}

fn log_id(mesh: Key, name: &str) -> LogId {
    LogId::new(mesh, format!("{PREFIX}{name}"))
}

fn stored(e: StoreError) -> Refusal {
    Refusal::from(Arc::new(e))
}

fn check_name(name: &str) -> Result<(), Refusal> {
    if name.len() > MAX_NAME || !crate::util::valid_group(name) {
        return refuse(
            ErrorCode::BadRequest,
            format!(
                "a stream name is up to {MAX_NAME} bytes of segments of A-Z a-z 0-9 . _ - joined by '/'"
            ),
        );
    }
    Ok(())
}

fn info_of(name: &str, i: &log::StreamInfo) -> StreamInfo {
    StreamInfo {
        name: name.to_string(),
        first_seq: i.first,
        last_seq: i.last,
        count: i.count,
        bytes: i.bytes,
        max_msgs: i.retention.max_count,
        max_bytes: i.retention.max_bytes,
        max_age_s: i.retention.max_age_ms.map(|m| m / 1000),
    }
}

fn message(stream: &str, e: &log::Entry) -> Option<Message> {
    let data = Json::parse(std::str::from_utf8(&e.data).ok()?).ok()?;
    Some(Message {
        stream: stream.to_string(),
        seq: e.seq,
        data,
        by: e.subject.clone(),
        at_ms: e.at_ms,
    })
}

pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let streams = match ctx.state::<Streams>() {
        Ok(s) => s,
        Err(e) => return r.err(e),
    };
    let caller = match ctx.caller() {
        Ok(c) => c,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    match q {
        Q::Create {
            name,
            max_msgs,
            max_bytes,
            max_age_s,
        } => {
            if let Err(e) = check_name(&name) {
                return r.err(e);
            }
            if max_msgs == Some(0) || max_bytes == Some(0) || max_age_s == Some(0) {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a stream limit is at least 1 (leave it out for no limit)",
                ));
            }
            let retention = Retention {
                max_count: max_msgs,
                max_bytes,
                max_age_ms: max_age_s.map(|s| s.saturating_mul(1000)),
            };
            // Counted and taken under one lock, so concurrent creates cannot pass the
            // quota together; publishes use the new limits from here on.
            let before = {
                let mut known = streams.lock();
                let here = known.keys().filter(|(m, _)| *m == mesh).count();
                if !known.contains_key(&(mesh, name.clone())) && here >= MAX_STREAMS {
                    return r.err(Refusal::new(
                        ErrorCode::QuotaExceeded,
                        format!("a mesh has at most {MAX_STREAMS} streams"),
                    ));
                }
                known.insert((mesh, name.clone()), retention)
            };
            tokio::spawn(async move {
                let id = log_id(mesh, &name);
                if let Err(e) = Logs::configure(ctx.store(), &id, retention).await {
                    // Not written: back to what was known, unless changed meanwhile.
                    let mut known = streams.lock();
                    let k = (mesh, name.clone());
                    if known.get(&k) == Some(&retention) {
                        match before {
                            Some(b) => known.insert(k, b),
                            None => known.remove(&k),
                        };
                    }
                    drop(known);
                    return r.err(Refusal::from(e));
                }
                r.reply(
                    log::info(ctx.store(), &id)
                        .map(|i| A::Create {
                            stream: info_of(&name, &i),
                        })
                        .map_err(stored),
                );
            });
        }
        Q::Publish { stream, data } => {
            let retention = match streams.retention(mesh, &stream) {
                Ok(x) => x,
                Err(e) => return r.err(e),
            };
            if data.len() > MAX_DATA {
                return r.err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("a stream message is at most {MAX_DATA} bytes of compact JSON"),
                ));
            }
            // Read by sequence only: no per-publisher index to keep.
            let opts = log::AppendOpts {
                retention,
                unindexed: true,
                ..Default::default()
            };
            let queued = ctx.store().logs().append_with(
                ctx.store(),
                &log_id(mesh, &stream),
                &caller.member_name,
                data.as_str().as_bytes().to_vec(),
                opts,
                |_| None,
                move |res| match res {
                    Ok(seq) => r.ok(A::Publish { seq }),
                    Err(e) => r.err(Refusal::from(e)),
                },
            );
            if let Err(refused) = queued {
                refused.run();
            }
        }
        Q::Subscribe {
            sub,
            stream,
            from_seq,
            last,
        } => {
            if let Err(e) = streams.retention(mesh, &stream) {
                return r.err(e);
            }
            if from_seq.is_some() && last.is_some() {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "subscribe takes from_seq or last, not both",
                ));
            }
            let id = log_id(mesh, &stream);
            let info = match log::info(ctx.store(), &id) {
                Ok(i) => i,
                Err(e) => return r.err(stored(e)),
            };
            let from = match last {
                Some(n) => Some(info.last.saturating_sub(n) + 1),
                None => from_seq,
            };
            let name = stream.clone();
            let res = ctx.follow(r.conn(), sub, id, from, move |e| {
                message(&name, e).map(Push::Streams)
            });
            r.reply(res.map(|next_seq| A::Subscribe {
                sub,
                next_seq,
                first_seq: info.first,
            }))
        }
        Q::Unsubscribe { sub } => {
            let res = ctx.unfollow(r.conn_id(), sub);
            r.reply(res.map(|existed| A::Unsubscribe { existed }))
        }
        Q::Read {
            stream,
            from_seq,
            limit,
        } => {
            if let Err(e) = streams.retention(mesh, &stream) {
                return r.err(e);
            }
            if limit == 0 || limit > MAX_READ {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("limit is 1 to {MAX_READ}"),
                ));
            }
            let id = log_id(mesh, &stream);
            let res = (|| {
                let info = log::info(ctx.store(), &id)?;
                let rows = log::read_from(ctx.store(), &id, from_seq, limit as usize, 4 << 20)?;
                Ok::<_, StoreError>(A::Read {
                    messages: rows.iter().filter_map(|e| message(&stream, e)).collect(),
                    first_seq: info.first,
                    last_seq: info.last,
                })
            })();
            r.reply(res.map_err(stored))
        }
        Q::List {} => {
            let res = log::streams_of(ctx.store(), mesh, PREFIX).map(|v| A::List {
                streams: v
                    .iter()
                    .map(|(n, i)| info_of(&n[PREFIX.len()..], i))
                    .collect(),
            });
            r.reply(res.map_err(stored))
        }
    }
}

/// Start the age sweeper (at broker start): streams with `max_age_s` drop old messages
/// every few seconds.
pub fn start(ctx: &Ctx) {
    let streams = match ctx.state::<Streams>() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e.message, "streams: the age sweeper cannot start");
            return;
        }
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut closing = ctx.closing();
        loop {
            let aged: Vec<LogId> = streams
                .lock()
                .iter()
                .filter(|(_, r)| r.max_age_ms.is_some())
                .map(|((m, n), _)| log_id(*m, n))
                .collect();
            for id in aged {
                if let Err(e) = Logs::expire(ctx.store(), &id).await {
                    tracing::warn!(error = %e, "streams: age expiry failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = closing.changed() => return,
            }
        }
    });
}
