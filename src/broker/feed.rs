//! Subscriptions: a connection asks to follow a per-mesh log (a state watch, a stream
//! subscription) and gets its records pushed as `feed` frames, from a sequence it names.
//! One task per subscription reads the log from its position (a read transaction per
//! batch, never the whole log) and then waits for commits, so there is no gap between the
//! replay and live records, and nothing is pushed before it is durable. A slow reader slows
//! its own feed (the push waits for room in the connection's queue); a closed connection
//! ends the task. Subscriptions are per connection: a client that reconnects subscribes
//! again from its last sequence + 1.

use super::ctx::{CapState, Ctx};
use super::outbox::{encode_msg, ConnHandle, Refusal};
use crate::proto::{ErrorCode, Feed, Push, ServerFrame};
use crate::store::log::{self, Entry, LogId};
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most subscriptions one connection holds at once.
pub const MAX_PER_CONN: usize = 64;
/// Records read per batch, and about this many bytes at most.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// Every live subscription of the broker, by (connection, the client's sub id).
#[derive(Default)]
pub struct Follows {
    subs: Mutex<HashMap<(u64, u64), (u64, tokio::task::AbortHandle)>>,
    generation: AtomicU64,
}

impl CapState for Follows {
    fn open(_: &Ctx) -> Result<Self, StoreError> {
        Ok(Follows::default())
    }
}

impl Follows {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), (u64, tokio::task::AbortHandle)>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow `log` for connection `conn` under `sub` (replacing a subscription of the same
    /// id), from sequence `from` (`None`: what commits from now on). `pick` turns a record
    /// into what is pushed, or skips it. Returns the first sequence that will be pushed.
    pub fn follow<F>(
        self: &Arc<Self>,
        ctx: &Ctx,
        conn: ConnHandle,
        sub: u64,
        log_id: LogId,
        from: Option<u64>,
        mut pick: F,
    ) -> Result<u64, Refusal>
    where
        F: FnMut(&Entry) -> Option<Push> + Send + 'static,
    {
        let store = ctx.store().clone();
        let mut rx = store
            .logs()
            .watch(&store, &log_id)
            .map_err(|e| Refusal::from(Arc::new(e)))?;
        let last = *rx.borrow_and_update();
        let first = from.unwrap_or(last + 1).max(1);
        let key = (conn.id, sub);
        let mut subs = self.lock();
        let mine = subs.keys().filter(|(c, _)| *c == conn.id).count();
        if !subs.contains_key(&key) && mine >= MAX_PER_CONN {
            return Err(Refusal::new(
                ErrorCode::QuotaExceeded,
                format!("a connection holds at most {MAX_PER_CONN} subscriptions; unsubscribe one first"),
            ));
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let mut closing = ctx.closing();
        let task = tokio::spawn(async move {
            let mut next = first;
            'run: loop {
                loop {
                    let batch = match log::read_from(&store, &log_id, next, BATCH, BATCH_BYTES) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(error = %e, "subscription stopped: the log cannot be read");
                            break 'run;
                        }
                    };
                    if batch.is_empty() {
                        break;
                    }
                    for e in &batch {
                        next = e.seq + 1;
                        if let Some(body) = pick(e) {
                            let f = ServerFrame::Feed(Feed {
                                sub,
                                seq: e.seq,
                                body,
                            });
                            if !conn.send_wait(encode_msg(conn.codec, &f)).await {
                                break 'run;
                            }
                        }
                    }
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = conn.closed() => break,
                    _ = closing.changed() => break,
                }
            }
            let mut subs = me.lock();
            if subs.get(&key).is_some_and(|(g, _)| *g == generation) {
                subs.remove(&key);
            }
        });
        if let Some((_, old)) = subs.insert(key, (generation, task.abort_handle())) {
            old.abort();
        }
        Ok(first)
    }

    /// End subscription `sub` of connection `conn`; false when there was none.
    pub fn stop(&self, conn: u64, sub: u64) -> bool {
        match self.lock().remove(&(conn, sub)) {
            Some((_, t)) => {
                t.abort();
                true
            }
            None => false,
        }
    }
}
