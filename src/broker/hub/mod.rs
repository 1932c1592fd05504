//! The hub: the broker's in-memory state (meshes, members, peers, presence, queues) and every
//! operation on it. Durable changes go through the store first; a send is acknowledged and
//! delivered only after its commit.
//!
//! Locking: one `std::sync::Mutex` around [`State`], never held across an `.await`. Socket
//! writes are `try_send` into each connection's bounded outbound queue, so no lock waits on I/O.
//!
//! Submodules: `enroll` (meshes, invites, joins), `session` (hello, disconnect, presence,
//! housekeeping), `delivery` (send, push, ack, pull), `peers` (profile changes and lookups).

mod delivery;
pub(crate) use delivery::SendReply;
mod enroll;
mod peers;
mod session;

use super::outbox::{encode_msg, send_on, ConnHandle, Responder};
use super::Config;
use crate::proto::*;
use crate::store::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use super::outbox::{refuse, Refusal};
pub use peers::{Audience, Caller};

impl From<Arc<StoreError>> for Refusal {
    fn from(e: Arc<StoreError>) -> Self {
        Refusal {
            code: ErrorCode::Storage,
            message: format!("the broker could not store this: {e}"),
        }
    }
}

/// Most deliveries pushed to one connection and not yet acked; the rest wait (flow control,
/// so a long queue cannot overflow a connection's outbound buffer).
const MAX_INFLIGHT: u32 = 1024;

/// Token bucket for per-peer rate limits.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: f64) -> Self {
        Bucket {
            tokens: burst,
            last: Instant::now(),
        }
    }
    /// Take one token, or say in how many milliseconds one will be there.
    fn take(&mut self, rate: f64, burst: f64) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - self.tokens) / rate.max(f64::MIN_POSITIVE);
            Err((wait_s * 1000.0).ceil().clamp(1.0, 3_600_000.0) as u64)
        }
    }
}

/// A queued copy of a message for one recipient.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    /// Connection it was last handed to (0 = never); resent on any other connection.
    pushed_on: u64,
    /// Counted in the push connection's in-flight window.
    inflight: bool,
}

struct PeerState {
    rec: PeerRecord,
    /// The connection deliveries are pushed to: the newest one that asked for pushes.
    push_conn: Option<ConnHandle>,
    /// Other live connections of this peer (one-shot commands that do not take pushes).
    other_conns: Vec<ConnHandle>,
    connected_since_ms: u64,
    queue: BTreeMap<u64, Pending>,
    /// Message id → queue seq, for acks.
    by_msg: HashMap<Id16, u64>,
    /// Pushed to `push_conn`, not yet acked.
    inflight: u32,
    /// Something eligible is waiting because the in-flight window was full.
    backlog: bool,
    bucket: Bucket,
    /// Disconnected at this time and still inside the grace window (no "left" event yet).
    away_since: Option<u64>,
    /// Others were told this peer joined or returned (so they will hear when it leaves).
    announced: bool,
}

impl PeerState {
    fn new(rec: PeerRecord, burst: f64) -> Self {
        PeerState {
            rec,
            push_conn: None,
            other_conns: Vec::new(),
            connected_since_ms: 0,
            queue: BTreeMap::new(),
            by_msg: HashMap::new(),
            inflight: 0,
            backlog: false,
            bucket: Bucket::new(burst),
            away_since: None,
            announced: false,
        }
    }

    fn online(&self) -> bool {
        self.push_conn.is_some() || !self.other_conns.is_empty()
    }

    fn info(&self) -> PeerInfo {
        PeerInfo {
            peer_pk: self.rec.peer_pk,
            peer_xpk: self.rec.peer_xpk,
            member_pk: self.rec.member_pk,
            name: self.rec.name.clone(),
            online: self.online(),
            status: self.rec.status,
            summary: self.rec.summary.clone(),
            groups: self.rec.groups.clone(),
            hostname: self.rec.hostname.clone(),
            cwd: self.rec.cwd.clone(),
            connected_since_ms: if self.online() {
                self.connected_since_ms
            } else {
                0
            },
            last_seen_ms: self.rec.last_seen_ms,
            profile: self.rec.profile.clone(),
            visible: self.rec.visible,
            member_name: String::new(),
            gets_member_messages: false,
            terminal: false,
        }
    }
}

/// A stored message plus its encoded `deliver` frames, made once and shared by all recipients.
struct MsgEntry {
    msg: Arc<StoredMessage>,
    remaining: u32,
    json: OnceLock<Message>,
    bin: OnceLock<Message>,
}

impl MsgEntry {
    fn new(msg: Arc<StoredMessage>, remaining: u32) -> Self {
        MsgEntry {
            msg,
            remaining,
            json: OnceLock::new(),
            bin: OnceLock::new(),
        }
    }

    fn delivery(&self) -> Delivery {
        let m = &self.msg;
        Delivery {
            msg_id: m.msg_id,
            from: m.from,
            from_xpk: m.from_xpk,
            from_name: m.from_name.clone(),
            to: m.to_label.clone(),
            target: m.target.clone(),
            priority: m.priority,
            reply_to: m.reply_to,
            sealed: m.sealed.clone(),
            sent_at_ms: m.sent_at_ms,
            expires_at_ms: m.expires_at_ms,
        }
    }

    fn frame(&self, codec: Codec) -> Message {
        let cell = match codec {
            Codec::Json => &self.json,
            Codec::Binary => &self.bin,
        };
        cell.get_or_init(|| encode_msg(codec, &ServerFrame::Deliver(self.delivery())))
            .clone()
    }
}

/// Who holds a name in a mesh: its member, and the peer it currently resolves to.
#[derive(Debug, Clone)]
struct NameOwner {
    member: Key,
    peer: Option<Key>,
}

struct MeshState {
    rec: MeshRecord,
    members: HashMap<Key, MemberRecord>,
    peers: HashSet<Key>,
    names: HashMap<String, NameOwner>,
}

impl MeshState {
    fn new(rec: MeshRecord) -> Self {
        MeshState {
            rec,
            members: HashMap::new(),
            peers: HashSet::new(),
            names: HashMap::new(),
        }
    }
}

/// Dedupe state of one (sender, message id).
struct SentId {
    /// Key of its durable dedupe record.
    sent_seq: u64,
    expires_ms: u64,
    recipients: u32,
    /// Still waiting for its commit; retries that arrive meanwhile wait here for the outcome.
    waiting: Option<Vec<delivery::SendReply>>,
    /// The stored copies (queue seqs), for `message_status`.
    seqs: Few<u64>,
    /// Every recipient of a small send, for `message_status` (not kept across a restart).
    recipient_keys: Few<Key>,
}

/// A short list kept inline when it has one element — the common DM case — so the
/// bookkeeping of a sent message (kept for the retention period) needs no allocation.
#[derive(Debug, Clone)]
enum Few<T> {
    None,
    One(T),
    Many(Box<[T]>),
}

impl<T: Clone> Few<T> {
    fn from_vec(mut v: Vec<T>) -> Self {
        match v.len() {
            0 => Few::None,
            1 => v.pop().map_or(Few::None, Few::One),
            _ => Few::Many(v.into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Few::None => &[],
            Few::One(x) => std::slice::from_ref(x),
            Few::Many(b) => b,
        }
    }

    fn push(&mut self, x: T) {
        let mut v = self.as_slice().to_vec();
        v.push(x);
        *self = Few::from_vec(v);
    }
}

/// A presence change waiting to be announced (announcements are coalesced per sweep).
struct PresenceNote {
    mesh: Key,
    about: Key,
    kind: &'static str,
    name: String,
    text: String,
}

#[derive(Default)]
struct State {
    meshes: HashMap<Key, MeshState>,
    mesh_by_name: HashMap<String, Key>,
    invites: HashMap<Id16, InviteRecord>,
    peers: HashMap<Key, PeerState>,
    messages: HashMap<u64, MsgEntry>,
    sent_ids: HashMap<(Key, Id16), SentId>,
    /// Hello nonces seen recently, with the time they stop mattering.
    hello_nonces: HashMap<(Key, Id16), u64>,
    presence: Vec<PresenceNote>,
    next_seq: u64,
    next_conn: u64,
    last_retention_ms: u64,
}

/// Snapshot for `/health`.
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_s: u64,
    pub meshes: usize,
    pub peers_online: usize,
    pub connections: usize,
    /// Connections accepted and not yet authenticated (upgrading or before their hello).
    pub unauthenticated: usize,
    pub queued_messages: usize,
    pub store_commits: u64,
    pub store_ops: u64,
    pub store_messages: u64,
}

/// One line of `mesh list`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshSummary {
    pub name: String,
    pub mesh_id: String,
    pub members: usize,
    pub peers: usize,
    pub peers_online: usize,
    pub created: String,
}

/// What a connection learns from a successful hello.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub peer: Key,
    pub mesh: Key,
    pub conn_id: u64,
}

pub struct Hub {
    state: Mutex<State>,
    store: Store,
    pub cfg: Arc<Config>,
    started: Instant,
    /// Serialises joins and admin changes (rare) so their validate→commit→apply is atomic.
    admin_lock: tokio::sync::Mutex<()>,
    /// Flips to true at shutdown; every connection task watches it.
    closing: tokio::sync::watch::Sender<bool>,
    live_conns: AtomicUsize,
    /// Places for connections that have not authenticated yet.
    pub gate: Arc<super::gate::Gate>,
    /// Each capability's own state (see `broker::ctx`).
    caps: CapStates,
}

impl Hub {
    pub fn new(cfg: Arc<Config>, store: Store, loaded: Loaded) -> Arc<Hub> {
        let mut st = State {
            next_seq: 1,
            next_conn: 1,
            ..Default::default()
        };
        for m in loaded.meshes {
            st.mesh_by_name.insert(m.name.clone(), m.mesh_id);
            st.meshes.insert(m.mesh_id, MeshState::new(m));
        }
        for i in loaded.invites {
            st.invites.insert(i.invite_id, i);
        }
        for m in loaded.members {
            if let Some(ms) = st.meshes.get_mut(&m.mesh_id) {
                ms.names.insert(
                    m.name.clone(),
                    NameOwner {
                        member: m.member_pk,
                        peer: None,
                    },
                );
                ms.members.insert(m.member_pk, m);
            }
        }
        // A name resolves to its member's most recently seen peer using it.
        let mut peers = loaded.peers;
        peers.sort_by_key(|p| p.last_seen_ms);
        for p in peers {
            let Some(ms) = st.meshes.get_mut(&p.mesh_id) else {
                continue;
            };
            ms.peers.insert(p.peer_pk);
            let owner = ms.names.entry(p.name.clone()).or_insert(NameOwner {
                member: p.member_pk,
                peer: None,
            });
            if owner.member == p.member_pk {
                owner.peer = Some(p.peer_pk);
            }
            st.peers
                .insert(p.peer_pk, PeerState::new(p, cfg.rate_burst));
        }
        let acked: HashSet<(u64, Key)> = loaded.acked.into_iter().collect();
        let mut orphans = Vec::new();
        for m in loaded.messages {
            st.next_seq = st.next_seq.max(m.seq + 1);
            let (seq, msg_id) = (m.seq, m.msg_id);
            let mut remaining = 0;
            for r in &m.recipients {
                if acked.contains(&(seq, *r)) {
                    continue;
                }
                if let Some(ps) = st.peers.get_mut(r) {
                    ps.queue.insert(seq, Pending::default());
                    ps.by_msg.insert(msg_id, seq);
                    remaining += 1;
                }
            }
            if remaining == 0 {
                orphans.push(seq);
            } else {
                st.messages
                    .insert(seq, MsgEntry::new(Arc::new(m), remaining));
            }
        }
        if !orphans.is_empty() {
            store.submit(
                Op::Expire {
                    seqs: orphans.into_iter().map(|s| (s, true)).collect(),
                    sent: vec![],
                },
                None,
            );
        }
        for (sent_seq, r) in loaded.sent {
            st.next_seq = st.next_seq.max(sent_seq + 1);
            let v = SentId {
                sent_seq,
                expires_ms: r.expires_ms,
                recipients: r.recipients,
                waiting: None,
                seqs: Few::None,
                recipient_keys: Few::None,
            };
            st.sent_ids.insert((r.from, r.msg_id), v);
        }
        for (seq, e) in &st.messages {
            if let Some(v) = st.sent_ids.get_mut(&(e.msg.from, e.msg.msg_id)) {
                v.seqs.push(*seq);
            }
        }
        tracing::info!(
            meshes = st.meshes.len(),
            peers = st.peers.len(),
            queued = st.messages.len(),
            "state loaded"
        );
        let gate = super::gate::Gate::new(cfg.max_unauthenticated, cfg.max_unauthenticated_per_ip);
        Arc::new(Hub {
            gate,
            state: Mutex::new(st),
            store,
            cfg,
            started: Instant::now(),
            admin_lock: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::channel(false).0,
            live_conns: AtomicUsize::new(0),
            caps: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn cap_states(&self) -> &CapStates {
        &self.caps
    }

    pub fn health(&self) -> Health {
        let st = self.lock();
        let stats = &self.store.stats;
        Health {
            status: "ok",
            version: crate::VERSION,
            uptime_s: self.started.elapsed().as_secs(),
            meshes: st.meshes.len(),
            peers_online: st.peers.values().filter(|p| p.online()).count(),
            connections: self.live_conns.load(Ordering::Relaxed),
            unauthenticated: self.gate.pending(),
            queued_messages: st.messages.len(),
            store_commits: stats.commits.load(Ordering::Relaxed),
            store_ops: stats.ops.load(Ordering::Relaxed),
            store_messages: stats.messages.load(Ordering::Relaxed),
        }
    }

    /// Tell every connection task to close (graceful shutdown) and wait up to `wait` for
    /// them to finish.
    pub async fn close_all(&self, wait: std::time::Duration) {
        self.closing.send_replace(true);
        let deadline = Instant::now() + wait;
        while self.live_conns.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A receiver that changes to true when the broker shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Count a connection task for the lifetime of the returned guard.
    pub fn conn_guard(self: &Arc<Self>) -> ConnGuard {
        self.live_conns.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    pub fn next_conn_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_conn += 1;
        st.next_conn
    }

    /// Rate limiting applies to every frame of an authenticated connection: `Err` holds
    /// the milliseconds until the next frame would be allowed.
    pub fn allow_frame(&self, s: &Session) -> Result<(), u64> {
        let (rate, burst) = (self.cfg.rate_per_s, self.cfg.rate_burst);
        let mut st = self.lock();
        match st.peers.get_mut(&s.peer) {
            Some(p) => p.bucket.take(rate, burst),
            None => Ok(()),
        }
    }
}

/// Push a frame to the push connection of each listed peer that has one, encoded once per
/// codec (best effort: a full outbound queue drops it).
fn send_each<'k>(st: &State, to: impl IntoIterator<Item = &'k Key>, ev: &ServerFrame) {
    let (json, bin) = (OnceLock::new(), OnceLock::new());
    for pk in to {
        if let Some(c) = st.peers.get(pk).and_then(|p| p.push_conn.as_ref()) {
            let msg = match c.codec {
                Codec::Json => json.get_or_init(|| encode_msg(Codec::Json, ev)).clone(),
                Codec::Binary => bin.get_or_init(|| encode_msg(Codec::Binary, ev)).clone(),
            };
            let _ = c.try_send(msg);
        }
    }
}

/// A capability's state, type-erased.
pub(crate) type AnyState = Arc<dyn std::any::Any + Send + Sync>;

/// One capability's slot: empty until its state is opened (the lock is held while opening,
/// so concurrent first requests wait and the state is opened exactly once).
type Slot = Arc<Mutex<Option<AnyState>>>;

/// Every capability's own state, by type (see `broker::ctx`). The table's lock is only held
/// to find a slot, never while a capability opens or works.
#[derive(Default)]
pub(crate) struct CapStates {
    slots: Mutex<HashMap<std::any::TypeId, Slot>>,
}

impl CapStates {
    /// The state of type `id`, opened by `open` if this is its first use. A failed open
    /// leaves the slot empty, so the next request tries again.
    pub(crate) fn get_or_open<E>(
        &self,
        id: std::any::TypeId,
        open: impl FnOnce() -> Result<AnyState, E>,
    ) -> Result<AnyState, E> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(id).or_default().clone()
        };
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = &*s {
            return Ok(v.clone());
        }
        let v = open()?;
        *s = Some(v.clone());
        Ok(v)
    }
}

/// Keeps the live-connection count while a connection task runs.
pub struct ConnGuard(Arc<Hub>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.live_conns.fetch_sub(1, Ordering::SeqCst);
    }
}
