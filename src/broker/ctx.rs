//! The narrow context through which a capability's broker handler reaches the core: who is
//! asking (session, member, role, groups), name resolution, events pushed to peers, the
//! store, a per-mesh data directory, and the capability's own state. A handler gets a
//! [`Ctx`] and a [`Responder`](super::outbox::Responder), never the hub itself.
//!
//! A capability's state is its own: a type implementing [`CapState`], created once per
//! broker on first use (from the store, which it reads through read transactions) and kept
//! behind whatever lock the capability chooses, so one capability's work never waits on
//! another's or on delivery's lock.

use super::feed::Follows;
use super::hub::{AnyState, Hub, SendReply, Session};
pub use super::hub::{Audience, Caller};
use super::outbox::{ConnHandle, Refusal, Responder};
use crate::proto::peers::{Resolved, Response as PeersResponse};
use crate::proto::Push;
use crate::proto::{msg, Envelope, ErrorCode, Id16, Key, PeerInfo, Priority};
use crate::store::log::{Entry, LogId};
use crate::store::{PeerRecord, Store, StoreError};
use std::any::{Any, TypeId};
use std::path::PathBuf;
use std::sync::Arc;

/// A capability's broker-wide state, created on first use.
pub trait CapState: Any + Send + Sync + Sized {
    /// Open the state: read what the capability needs from the store (keep large data in
    /// the store and read it per request), create caches, start nothing that outlives the
    /// broker without watching [`Ctx::closing`]. `ctx` is the first request's: the state
    /// serves every mesh, so use only its broker-wide parts here ([`Ctx::store`],
    /// [`Ctx::closing`]), never its caller, mesh or `data_dir`.
    fn open(ctx: &Ctx) -> Result<Self, StoreError>;
}

/// A request's view of the core. Cheap to clone and `'static`, so a handler can move it
/// into a blocking task or a commit callback.
#[derive(Clone)]
pub struct Ctx {
    hub: Arc<Hub>,
    s: Session,
}

impl Ctx {
    pub(crate) fn new(hub: &Arc<Hub>, s: &Session) -> Ctx {
        Ctx {
            hub: hub.clone(),
            s: *s,
        }
    }

    /// The broker itself, for work no session asked for (a capability's sweeper): it has
    /// no caller and no mesh; use only [`Ctx::store`], [`Ctx::closing`], [`Ctx::state`]
    /// and the calls that name their mesh.
    pub(crate) fn system(hub: &Arc<Hub>) -> Ctx {
        Ctx {
            hub: hub.clone(),
            s: Session {
                peer: Key([0; 32]),
                mesh: Key([0; 32]),
                conn_id: 0,
            },
        }
    }

    /// The same broker, as seen from a session of `mesh` that is no one (events a sweeper
    /// sends are attributed to the broker).
    pub fn for_mesh(&self, mesh: Key) -> Ctx {
        Ctx {
            hub: self.hub.clone(),
            s: Session {
                peer: Key([0; 32]),
                mesh,
                conn_id: 0,
            },
        }
    }

    /// Follow a per-mesh log for the requesting connection (see [`super::feed`]); returns
    /// the first sequence that will be pushed.
    pub fn follow<F>(
        &self,
        conn: ConnHandle,
        sub: u64,
        log: LogId,
        from: Option<u64>,
        pick: F,
    ) -> Result<u64, Refusal>
    where
        F: FnMut(&Entry) -> Option<Push> + Send + 'static,
    {
        self.state::<Follows>()?
            .follow(self, conn, sub, log, from, pick)
    }

    /// End a subscription of connection `conn`; false when there was none.
    pub fn unfollow(&self, conn: u64, sub: u64) -> Result<bool, Refusal> {
        Ok(self.state::<Follows>()?.stop(conn, sub))
    }

    /// Whether `peer` of the caller's mesh is online, and when it was last seen (`None`:
    /// no such peer).
    pub fn presence(&self, peer: &Key) -> Option<(bool, u64)> {
        self.hub.presence(&self.s.mesh, peer)
    }

    /// Run `step` on capability state `T` now and then every `period` until the broker
    /// closes: a capability's sweeper or timer, started from `cap::START`. `what` names it
    /// in the log when its state cannot be opened.
    pub fn every<T: CapState>(
        &self,
        what: &'static str,
        period: std::time::Duration,
        step: impl Fn(&Arc<T>, &Ctx) + Send + 'static,
    ) {
        let state = match self.state::<T>() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e.message, "{what} cannot start");
                return;
            }
        };
        let ctx = self.clone();
        tokio::spawn(async move {
            let mut closing = ctx.closing();
            loop {
                step(&state, &ctx);
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = closing.changed() => return,
                }
            }
        });
    }

    /// How many peers of this mesh are online now.
    pub fn online_count(&self) -> usize {
        self.hub.online_count(&self.s.mesh)
    }

    /// How long a peer may be gone before the mesh treats it as having left.
    pub fn grace(&self) -> std::time::Duration {
        self.hub.cfg.grace
    }

    /// The caller's mesh.
    pub fn mesh(&self) -> Key {
        self.s.mesh
    }

    /// The caller's session.
    pub fn session(&self) -> &Session {
        &self.s
    }

    /// The caller as the mesh knows it now (a refusal if its peer or member is gone).
    pub fn caller(&self) -> Result<Caller, Refusal> {
        self.hub.caller(&self.s).ok_or_else(|| {
            Refusal::new(
                ErrorCode::NotMember,
                "this session is no longer a member of the mesh",
            )
        })
    }

    /// Resolve names (peer name, member name, or hex key) in the caller's mesh, per name.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<Resolved>, Refusal> {
        self.hub.resolve(&self.s, names)
    }

    /// Push an event (`kind`, e.g. `"task_assigned"`, and a sentence) to online peers of
    /// the caller's mesh, attributed to the caller's member name (a hidden session is not
    /// named by its peer name). Events are best effort: an offline peer does not get it
    /// later; what must not be missed goes through the log, which watchers resume from.
    pub fn notify(&self, to: &Audience, kind: &str, text: &str) {
        self.hub.notify(&self.s, to, kind, text);
    }

    /// The store: [`Store::read`] for read transactions, [`Store::submit`] with a
    /// [`CapOp`](crate::store::CapOp) for writes that join the group commit, and the logs.
    pub fn store(&self) -> &Store {
        self.hub.store()
    }

    /// A directory of capability `cap` for the caller's mesh
    /// (`<data dir>/meshes/<mesh id hex>/<cap>/`), created if missing.
    pub fn data_dir(&self, cap: &str) -> Result<PathBuf, Refusal> {
        let dir = self
            .hub
            .cfg
            .data_dir
            .join("meshes")
            .join(self.s.mesh.hex())
            .join(cap);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Refusal::new(
                ErrorCode::Storage,
                format!("the broker could not create its data directory for {cap}: {e}"),
            )
        })?;
        Ok(dir)
    }

    /// This capability's broker-wide state, opened on first use.
    pub fn state<T: CapState>(&self) -> Result<Arc<T>, Refusal> {
        let s = self.hub.cap_states().get_or_open(TypeId::of::<T>(), || {
            T::open(self)
                .map(|t| Arc::new(t) as AnyState)
                .map_err(|e| Refusal::from(Arc::new(e)))
        })?;
        downcast(s)
    }

    /// Changes to true when the broker shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.hub.closing()
    }

    // ---- the peer registry: the `peers` capability's data, which delivery shares ----

    /// The mesh's peers as the caller should see them (see `cap::peers`).
    pub fn list_peers(&self) -> Vec<PeerInfo> {
        self.hub.list_peers(&self.s)
    }

    /// Change the caller's own peer record: `f` validates and applies the change in memory,
    /// the record is written in order, and `r` gets `done` after the commit. `f` runs under
    /// the hub's lock: it must not call back into a `Ctx`.
    pub fn update_own_peer<F>(&self, r: Responder, done: PeersResponse, f: F)
    where
        F: FnOnce(&mut PeerRecord) -> Result<(), Refusal>,
    {
        self.hub.update_peer(&self.s, r, done, f)
    }

    // ---- core delivery, for capabilities that send messages on a peer's behalf ----

    /// Whether `envelopes` (sealed as for `msg.send`) could be sent in this mesh later:
    /// their count, sizes and nonces, and every peer they name belongs to the mesh.
    pub fn check_send(&self, envelopes: &[Envelope]) -> Result<(), Refusal> {
        self.hub.check_send(&self.s.mesh, envelopes)
    }

    /// Send `envelopes` as peer `from` of this mesh through core delivery: stored once per
    /// (`from`, `msg_id`), queued for offline recipients, pushed to online ones. `done`
    /// hears the recipient count or the refusal once, after the commit, on a task of its
    /// own (never under the hub's lock). Call it from within the broker's runtime. A
    /// sender whose member was removed from the mesh is refused with `not_member`.
    pub fn send_as(
        &self,
        from: Key,
        msg_id: Id16,
        priority: Priority,
        envelopes: Vec<Envelope>,
        done: Box<dyn FnOnce(Result<u32, Refusal>) + Send>,
    ) {
        let s = Session {
            peer: from,
            mesh: self.s.mesh,
            conn_id: 0,
        };
        if self.hub.caller(&s).is_none() {
            tokio::spawn(async move {
                done(Err(Refusal::new(
                    ErrorCode::NotMember,
                    "the sender is no longer a member of this mesh",
                )))
            });
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = SendReply::Call(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        self.hub.send(&s, msg_id, priority, None, envelopes, reply);
        tokio::spawn(async move {
            let res = match rx.await {
                Ok(Ok(msg::Response::Send { recipients, .. })) => Ok(recipients),
                Ok(Ok(_)) => Err(Refusal::new(ErrorCode::Internal, "unexpected send answer")),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(Refusal::new(
                    ErrorCode::Internal,
                    "the send ended without an answer",
                )),
            };
            done(res);
        });
    }

    /// Stop announcing the caller's comings and goings (it is hiding).
    pub fn stop_announcing(&self) {
        self.hub.stop_announcing(&self.s)
    }
}

fn downcast<T: Any + Send + Sync>(s: Arc<dyn Any + Send + Sync>) -> Result<Arc<T>, Refusal> {
    s.downcast::<T>()
        .map_err(|_| Refusal::new(ErrorCode::Internal, "capability state has the wrong type"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static OPENED: AtomicUsize = AtomicUsize::new(0);

    /// A capability state that counts how often it is opened.
    struct Counter {
        hits: std::sync::Mutex<u64>,
    }

    impl CapState for Counter {
        fn open(_: &Ctx) -> Result<Self, StoreError> {
            OPENED.fetch_add(1, Ordering::SeqCst);
            Ok(Counter {
                hits: std::sync::Mutex::new(0),
            })
        }
    }

    static SLOW_OPENED: AtomicUsize = AtomicUsize::new(0);

    /// A state whose open takes a while, so first uses overlap.
    struct Slow;

    impl CapState for Slow {
        fn open(_: &Ctx) -> Result<Self, StoreError> {
            SLOW_OPENED.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
            Ok(Slow)
        }
    }

    #[tokio::test]
    async fn capability_state_opens_once_even_when_raced_data_dirs_are_per_mesh_and_strangers_are_refused(
    ) {
        let d = tempfile::tempdir().unwrap();
        let cfg = super::super::Config::new("127.0.0.1:0".parse().unwrap(), d.path().into());
        let (store, loaded) = Store::open(d.path()).unwrap();
        let hub = Hub::new(Arc::new(cfg), store.clone(), loaded);
        let s = Session {
            peer: Key([1; 32]),
            mesh: Key([2; 32]),
            conn_id: 1,
        };
        let ctx = Ctx::new(&hub, &s);
        let a = ctx.state::<Counter>().unwrap();
        *a.hits.lock().unwrap() += 1;
        let b = ctx.clone().state::<Counter>().unwrap();
        assert_eq!(*b.hits.lock().unwrap(), 1, "one state for the whole broker");
        assert_eq!(OPENED.load(Ordering::SeqCst), 1);
        let dir = ctx.data_dir("tasks").unwrap();
        assert!(dir.is_dir());
        assert!(dir.ends_with(format!("meshes/{}/tasks", Key([2; 32]).hex())));
        // A session the hub does not know is no caller.
        let e = ctx.caller().unwrap_err();
        assert_eq!(e.code, ErrorCode::NotMember);
        // Concurrent first uses of a slow-opening state open it once and share it.
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let c = ctx.clone();
                std::thread::spawn(move || c.state::<Slow>().map(|s| Arc::as_ptr(&s) as usize))
            })
            .collect();
        let ptrs: Vec<usize> = racers
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert!(ptrs.windows(2).all(|w| w[0] == w[1]), "{ptrs:?}");
        assert_eq!(SLOW_OPENED.load(Ordering::SeqCst), 1);
        store.close().await;
    }
}
