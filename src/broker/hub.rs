//! The hub: the broker's in-memory state (meshes, members, peers, presence, queues) and every
//! operation on it. Durable changes go through the store first; a send is acknowledged and
//! delivered only after its commit.
//!
//! Locking: one `std::sync::Mutex` around [`State`], never held across an `.await`. Socket
//! writes are `try_send` into each connection's bounded outbound queue, so no lock waits on I/O.

use super::conn::ConnHandle;
use super::Config;
use crate::crypto::{hello as hello_crypto, invite as invite_crypto};
use crate::proto::*;
use crate::store::*;
use crate::util::{now_ms, valid_group, valid_name};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A refusal with a stable code (sent to clients as an error frame or HTTP error body).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { code, message: message.into() })
}

impl From<Arc<StoreError>> for Refusal {
    fn from(e: Arc<StoreError>) -> Self {
        Refusal { code: ErrorCode::Storage, message: format!("the broker could not store this: {e}") }
    }
}

/// Token bucket for per-peer rate limits.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: f64) -> Self {
        Bucket { tokens: burst, last: Instant::now() }
    }
    fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A queued copy of a message for one recipient.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Connection id it was last handed to (0 = never); resent on any other connection.
    pushed_on: u64,
}

struct PeerState {
    rec: PeerRecord,
    conn: Option<ConnHandle>,
    connected_since_ms: u64,
    queue: BTreeMap<u64, Pending>,
    by_msg: HashMap<Id16, u64>,
    bucket: Bucket,
    /// Disconnected at this time and still inside the grace window (no "left" event yet).
    away_since: Option<u64>,
}

/// A stored message plus its encoded `deliver` frames, made once and shared by all recipients.
struct MsgEntry {
    msg: Arc<StoredMessage>,
    remaining: u32,
    json: OnceLock<Message>,
    bin: OnceLock<Message>,
}

impl MsgEntry {
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
        cell.get_or_init(|| encode_msg(codec, &ServerFrame::Deliver(self.delivery()))).clone()
    }
}

/// Encode a frame as a WebSocket message for a connection's codec.
pub fn encode_msg(codec: Codec, f: &ServerFrame) -> Message {
    match codec {
        Codec::Json => Message::Text(serde_json::to_string(f).unwrap_or_default().into()),
        Codec::Binary => Message::Binary(codec.encode(f)),
    }
}

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

#[derive(Default)]
struct State {
    meshes: HashMap<Key, MeshState>,
    mesh_by_name: HashMap<String, Key>,
    invites: HashMap<Id16, InviteRecord>,
    peers: HashMap<Key, PeerState>,
    messages: HashMap<u64, MsgEntry>,
    /// Client message ids seen (dedupe), with their expiry.
    msg_ids: HashMap<Id16, u64>,
    /// Hello nonces seen recently, with the time they stop mattering.
    hello_nonces: HashMap<(Key, Id16), u64>,
    next_seq: u64,
    next_conn: u64,
}

/// Snapshot for `/health`.
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_s: u64,
    pub meshes: usize,
    pub peers_online: usize,
    pub queued_messages: usize,
    pub store_commits: u64,
    pub store_ops: u64,
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
    live_conns: std::sync::atomic::AtomicUsize,
}

impl Hub {
    pub fn new(cfg: Arc<Config>, store: Store, loaded: Loaded) -> Arc<Hub> {
        let mut st = State { next_seq: 1, next_conn: 1, ..Default::default() };
        for m in loaded.meshes {
            st.mesh_by_name.insert(m.name.clone(), m.mesh_id);
            st.meshes.insert(
                m.mesh_id,
                MeshState { rec: m, members: HashMap::new(), peers: HashSet::new(), names: HashMap::new() },
            );
        }
        for i in loaded.invites {
            st.invites.insert(i.invite_id, i);
        }
        for m in loaded.members {
            if let Some(ms) = st.meshes.get_mut(&m.mesh_id) {
                ms.names.insert(m.name.clone(), NameOwner { member: m.member_pk, peer: None });
                ms.members.insert(m.member_pk, m);
            }
        }
        for p in loaded.peers {
            let Some(ms) = st.meshes.get_mut(&p.mesh_id) else { continue };
            ms.peers.insert(p.peer_pk);
            let owner = ms.names.entry(p.name.clone()).or_insert(NameOwner { member: p.member_pk, peer: None });
            if owner.member == p.member_pk {
                owner.peer = Some(p.peer_pk);
            }
            st.peers.insert(p.peer_pk, new_peer_state(p, cfg.rate_burst));
        }
        for m in loaded.messages {
            st.next_seq = st.next_seq.max(m.seq + 1);
            st.messages.insert(
                m.seq,
                MsgEntry { msg: Arc::new(m), remaining: 0, json: OnceLock::new(), bin: OnceLock::new() },
            );
        }
        for (peer, seq) in loaded.queue {
            let (Some(ps), Some(e)) = (st.peers.get_mut(&peer), st.messages.get_mut(&seq)) else { continue };
            e.remaining += 1;
            ps.queue.insert(seq, Pending { pushed_on: 0 });
            ps.by_msg.insert(e.msg.msg_id, seq);
        }
        st.messages.retain(|_, e| e.remaining > 0);
        st.msg_ids = loaded.msg_ids.into_iter().collect();
        tracing::info!(
            meshes = st.meshes.len(),
            peers = st.peers.len(),
            queued = st.messages.len(),
            "state loaded"
        );
        Arc::new(Hub {
            state: Mutex::new(st),
            store,
            cfg,
            started: Instant::now(),
            admin_lock: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::channel(false).0,
            live_conns: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // ---------------------------------------------------------------- admin

    pub async fn create_mesh(&self, name: &str, mesh_id: Key, owner_pk: Key) -> Result<MeshRecord, Refusal> {
        if !valid_name(name) {
            return refuse(ErrorCode::BadRequest, format!("invalid mesh name '{name}': use 1-64 of A-Z a-z 0-9 . _ -"));
        }
        let _g = self.admin_lock.lock().await;
        if self.lock().mesh_by_name.contains_key(name) {
            return refuse(ErrorCode::NameTaken, format!("a mesh named '{name}' already exists"));
        }
        let rec = MeshRecord { mesh_id, name: name.to_string(), owner_pk, created_ms: now_ms() };
        self.store.commit(Op::PutMesh(rec.clone())).await?;
        let mut st = self.lock();
        st.mesh_by_name.insert(rec.name.clone(), mesh_id);
        st.meshes.insert(
            mesh_id,
            MeshState { rec: rec.clone(), members: HashMap::new(), peers: HashSet::new(), names: HashMap::new() },
        );
        tracing::info!(mesh = %rec.name, "mesh created");
        Ok(rec)
    }

    pub fn mesh_by_name(&self, name: &str) -> Option<MeshRecord> {
        let st = self.lock();
        st.mesh_by_name.get(name).and_then(|id| st.meshes.get(id)).map(|m| m.rec.clone())
    }

    pub async fn register_invite(&self, rec: InviteRecord) -> Result<(), Refusal> {
        let _g = self.admin_lock.lock().await;
        if !self.lock().meshes.contains_key(&rec.mesh_id) {
            return refuse(ErrorCode::UnknownMesh, "no such mesh");
        }
        self.store.commit(Op::PutInvite(rec.clone())).await?;
        self.lock().invites.insert(rec.invite_id, rec);
        Ok(())
    }

    pub fn list_meshes(&self) -> Vec<MeshSummary> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .meshes
            .values()
            .map(|m| MeshSummary {
                name: m.rec.name.clone(),
                mesh_id: m.rec.mesh_id.hex(),
                members: m.members.len(),
                peers: m.peers.len(),
                peers_online: m.peers.iter().filter(|p| st.peers.get(p).is_some_and(|p| p.conn.is_some())).count(),
                created: crate::util::rfc3339(m.rec.created_ms),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn health(&self) -> Health {
        let st = self.lock();
        Health {
            status: "ok",
            version: crate::VERSION,
            uptime_s: self.started.elapsed().as_secs(),
            meshes: st.meshes.len(),
            peers_online: st.peers.values().filter(|p| p.conn.is_some()).count(),
            queued_messages: st.messages.len(),
            store_commits: self.store.stats.commits.load(std::sync::atomic::Ordering::Relaxed),
            store_ops: self.store.stats.ops.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    // ---------------------------------------------------------------- join

    pub async fn join(&self, req: JoinRequest) -> Result<JoinReply, Refusal> {
        let payload = invite_crypto::parse_signed(&req.invite).map_err(|e| match e {
            invite_crypto::InviteError::BadSignature => {
                Refusal { code: ErrorCode::InviteInvalid, message: "invite signature is invalid (the invite was altered)".into() }
            }
            other => Refusal { code: ErrorCode::InviteInvalid, message: other.to_string() },
        })?;
        let now = now_ms();
        if !valid_name(&req.name) {
            return refuse(ErrorCode::BadRequest, format!("invalid name '{}': use 1-64 of A-Z a-z 0-9 . _ -", req.name));
        }
        if req.ts_ms.abs_diff(now) > self.cfg.hello_window.as_millis() as u64 {
            return refuse(ErrorCode::StaleHello, "join request timestamp is outside the allowed window (check the clock)");
        }
        let sig_input = invite_crypto::join_bytes(
            &payload.invite_id,
            &req.member_pk,
            &req.member_xpk,
            &req.peer_pk,
            &req.name,
            req.ts_ms,
        );
        crate::crypto::verify(&req.member_pk, &sig_input, &req.sig)
            .map_err(|_| Refusal { code: ErrorCode::BadSignature, message: "join request signature is invalid".into() })?;
        hello_crypto::verify_cert(&req.member_pk, &payload.mesh_id, &req.peer_pk, &req.peer_xpk, &req.peer_cert)
            .map_err(|_| Refusal { code: ErrorCode::BadSignature, message: "peer certificate is invalid".into() })?;

        let _g = self.admin_lock.lock().await;
        let (member, peer, invite) = {
            let st = self.lock();
            let Some(mesh) = st.meshes.get(&payload.mesh_id) else {
                return refuse(ErrorCode::UnknownMesh, "this broker has no such mesh (was it created on another broker?)");
            };
            if mesh.rec.owner_pk != payload.owner {
                return refuse(ErrorCode::InviteInvalid, "invite is not signed by this mesh's owner");
            }
            let Some(inv) = st.invites.get(&payload.invite_id) else {
                return refuse(ErrorCode::InviteInvalid, "invite is unknown to this broker");
            };
            if inv.revoked {
                return refuse(ErrorCode::InviteInvalid, "invite has been revoked");
            }
            if let Some(existing) = mesh.members.get(&req.member_pk) {
                if existing.revoked {
                    return refuse(ErrorCode::NotMember, "this member was removed from the mesh");
                }
                return Ok(JoinReply {
                    mesh_id: mesh.rec.mesh_id,
                    mesh_name: mesh.rec.name.clone(),
                    name: existing.name.clone(),
                    role: existing.role,
                    already_member: true,
                });
            }
            if now >= inv.expires_ms.min(payload.expires_ms) {
                return refuse(
                    ErrorCode::InviteExpired,
                    format!("invite expired at {}", crate::util::rfc3339(inv.expires_ms.min(payload.expires_ms))),
                );
            }
            if let Some(max) = inv.max_uses {
                if inv.uses >= max {
                    return refuse(ErrorCode::InviteUsedUp, format!("invite has been used up ({max} of {max} uses)"));
                }
            }
            if mesh.names.contains_key(&req.name) {
                return refuse(
                    ErrorCode::NameTaken,
                    format!("the name '{}' is already used in mesh '{}'; pick another with --name", req.name, mesh.rec.name),
                );
            }
            if st.peers.contains_key(&req.peer_pk) {
                return refuse(ErrorCode::BadRequest, "peer key already registered");
            }
            let member = MemberRecord {
                mesh_id: payload.mesh_id,
                member_pk: req.member_pk,
                member_xpk: req.member_xpk,
                name: req.name.clone(),
                role: inv.role,
                joined_ms: now,
                revoked: false,
            };
            let peer = PeerRecord {
                peer_pk: req.peer_pk,
                peer_xpk: req.peer_xpk,
                mesh_id: payload.mesh_id,
                member_pk: req.member_pk,
                name: req.name.clone(),
                session_id: "cli".into(),
                groups: vec![],
                summary: String::new(),
                hostname: String::new(),
                cwd: String::new(),
                status: Status::Idle,
                last_seen_ms: 0,
            };
            let mut inv = inv.clone();
            inv.uses += 1;
            (member, peer, inv)
        };
        // One batch: the writer commits these together (nothing else is awaited in between).
        self.store.submit(Op::PutInvite(invite.clone()), None);
        self.store.submit(Op::PutMember(member.clone()), None);
        self.store.commit(Op::PutPeer(peer.clone())).await?;
        let mut st = self.lock();
        st.invites.insert(invite.invite_id, invite);
        let mesh_name = {
            let Some(mesh) = st.meshes.get_mut(&member.mesh_id) else {
                return refuse(ErrorCode::UnknownMesh, "mesh disappeared");
            };
            mesh.names.insert(member.name.clone(), NameOwner { member: member.member_pk, peer: Some(peer.peer_pk) });
            mesh.members.insert(member.member_pk, member.clone());
            mesh.peers.insert(peer.peer_pk);
            mesh.rec.name.clone()
        };
        st.peers.insert(peer.peer_pk, new_peer_state(peer, self.cfg.rate_burst));
        tracing::info!(mesh = %mesh_name, member = %member.name, role = member.role.as_str(), "member joined");
        Ok(JoinReply {
            mesh_id: member.mesh_id,
            mesh_name,
            name: member.name,
            role: member.role,
            already_member: false,
        })
    }

    // ---------------------------------------------------------------- connections

    pub fn next_conn_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_conn += 1;
        st.next_conn
    }

    /// Authenticate a hello and attach the connection to its peer.
    pub async fn hello(&self, h: &Hello, conn: ConnHandle) -> Result<(Session, ServerFrame), Refusal> {
        if h.v != PROTOCOL_VERSION {
            return refuse(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {} is not supported (this broker speaks {PROTOCOL_VERSION})", h.v),
            );
        }
        let now = now_ms();
        let window = self.cfg.hello_window.as_millis() as u64;
        hello_crypto::verify_hello(h, now, window).map_err(|e| {
            let code = match e {
                hello_crypto::HelloError::Stale(..) => ErrorCode::StaleHello,
                _ => ErrorCode::BadSignature,
            };
            Refusal { code, message: e.to_string() }
        })?;
        if !valid_name(&h.name) {
            return refuse(ErrorCode::BadRequest, format!("invalid peer name '{}'", h.name));
        }
        if h.session_id.len() > 128 || h.hostname.len() > 256 || h.cwd.len() > 4096 {
            return refuse(ErrorCode::BadRequest, "session id, hostname or cwd too long");
        }

        // Validate against state; decide whether the peer record changes.
        let new_rec = {
            let mut st = self.lock();
            if st.hello_nonces.contains_key(&(h.peer_pk, h.nonce)) {
                return refuse(ErrorCode::ReplayedHello, "this hello was already used (replay)");
            }
            let Some(mesh) = st.meshes.get(&h.mesh_id) else {
                return refuse(ErrorCode::NotMember, "unknown mesh");
            };
            let Some(member) = mesh.members.get(&h.member_pk) else {
                return refuse(ErrorCode::NotMember, "this key is not a member of the mesh");
            };
            if member.revoked {
                return refuse(ErrorCode::NotMember, "this member was removed from the mesh");
            }
            if let Some(owner) = mesh.names.get(&h.name) {
                if owner.member != h.member_pk {
                    return refuse(ErrorCode::NameTaken, format!("the name '{}' belongs to another member", h.name));
                }
                if let Some(other) = owner.peer.filter(|p| *p != h.peer_pk) {
                    if st.peers.get(&other).is_some_and(|p| p.conn.is_some()) {
                        return refuse(
                            ErrorCode::NameTaken,
                            format!("the name '{}' is in use by another of your sessions", h.name),
                        );
                    }
                }
            }
            if let Some(existing) = st.peers.get(&h.peer_pk) {
                if existing.rec.mesh_id != h.mesh_id || existing.rec.member_pk != h.member_pk {
                    return refuse(ErrorCode::BadRequest, "peer key is registered to another member");
                }
            }
            st.hello_nonces.insert((h.peer_pk, h.nonce), now + 2 * window);
            let mut rec = st.peers.get(&h.peer_pk).map(|p| p.rec.clone()).unwrap_or(PeerRecord {
                peer_pk: h.peer_pk,
                peer_xpk: h.peer_xpk,
                mesh_id: h.mesh_id,
                member_pk: h.member_pk,
                name: String::new(),
                session_id: String::new(),
                groups: vec![],
                summary: String::new(),
                hostname: String::new(),
                cwd: String::new(),
                status: Status::Idle,
                last_seen_ms: 0,
            });
            let before = rec.clone();
            rec.name = h.name.clone();
            rec.session_id = h.session_id.clone();
            rec.hostname = h.hostname.clone();
            rec.cwd = h.cwd.clone();
            rec.peer_xpk = h.peer_xpk;
            (rec != before || !st.peers.contains_key(&h.peer_pk)).then_some(rec)
        };
        if let Some(rec) = &new_rec {
            self.store.commit(Op::PutPeer(rec.clone())).await?;
        }

        let mut st = self.lock();
        let conn_id = conn.id;
        let rate_burst = self.cfg.rate_burst;
        if let Some(rec) = new_rec {
            if let Some(mesh) = st.meshes.get_mut(&rec.mesh_id) {
                mesh.peers.insert(rec.peer_pk);
                mesh.names.insert(rec.name.clone(), NameOwner { member: rec.member_pk, peer: Some(rec.peer_pk) });
            }
            match st.peers.get_mut(&rec.peer_pk) {
                Some(p) => p.rec = rec,
                None => {
                    st.peers.insert(rec.peer_pk, new_peer_state(rec, rate_burst));
                }
            }
        }
        let mesh_name = st.meshes.get(&h.mesh_id).map(|m| m.rec.name.clone()).unwrap_or_default();
        let Some(ps) = st.peers.get_mut(&h.peer_pk) else {
            return refuse(ErrorCode::Internal, "peer vanished");
        };
        if let Some(old) = ps.conn.take() {
            old.kill(); // a newer connection of the same session wins
        }
        let was_away = ps.away_since.take().is_some();
        let seen_before = ps.rec.last_seen_ms > 0;
        let last_seen = ps.rec.last_seen_ms;
        ps.rec.status = h.status;
        ps.rec.last_seen_ms = now;
        ps.connected_since_ms = now;
        ps.conn = Some(conn);
        let queued = ps.queue.len() as u32;
        let name = ps.rec.name.clone();
        let ack = ServerFrame::HelloAck {
            peer_pk: h.peer_pk,
            mesh_id: h.mesh_id,
            mesh_name,
            name: name.clone(),
            server_version: crate::VERSION.to_string(),
            max_message_bytes: self.cfg.max_message_bytes as u32,
            queued,
        };
        // The ack goes first, then anything queued, then others hear about it.
        let ack_msg = encode_msg(conn_codec(&st, &h.peer_pk), &ack);
        send_to(&mut st, &h.peer_pk, ack_msg);
        push_eligible(&mut st, &h.peer_pk);
        if !was_away {
            let (kind, text) = if seen_before {
                ("peer_returned", format!("{name} is back (last seen {})", crate::util::rfc3339(last_seen)))
            } else {
                ("peer_joined", format!("{name} joined the mesh"))
            };
            mesh_event(&mut st, &h.mesh_id, &h.peer_pk, kind, &name, text);
        }
        tracing::debug!(peer = %name, conn = conn_id, "peer connected");
        Ok((Session { peer: h.peer_pk, mesh: h.mesh_id, conn_id }, ServerFrame::Ok { id: 0 }))
    }

    /// A connection ended. The peer stays "away" for the grace window before others hear
    /// it left, so quick reconnects make no noise.
    pub fn disconnect(&self, s: &Session) {
        let mut st = self.lock();
        let now = now_ms();
        let Some(ps) = st.peers.get_mut(&s.peer) else { return };
        if ps.conn.as_ref().map(|c| c.id) != Some(s.conn_id) {
            return; // replaced by a newer connection
        }
        ps.conn = None;
        ps.away_since = Some(now);
        ps.rec.last_seen_ms = now;
        // Deliveries handed to this connection but not acked will be resent on the next one.
        let rec = ps.rec.clone();
        self.store.submit(Op::PutPeer(rec), None);
    }

    /// Periodic housekeeping: grace-window expiry, liveness pings, retention.
    pub fn sweep(&self) {
        let now = now_ms();
        let grace = self.cfg.grace.as_millis() as u64;
        let ping_after = self.cfg.ping_interval.as_millis() as u64;
        let dead_after = self.cfg.dead_after.as_millis() as u64;
        let mut st = self.lock();
        st.hello_nonces.retain(|_, exp| *exp > now);
        // Presence: announce peers whose grace window ran out.
        let left: Vec<(Key, Key, String)> = st
            .peers
            .iter_mut()
            .filter_map(|(pk, p)| match p.away_since {
                Some(t) if now.saturating_sub(t) >= grace => {
                    p.away_since = None;
                    Some((*pk, p.rec.mesh_id, p.rec.name.clone()))
                }
                _ => None,
            })
            .collect();
        for (pk, mesh, name) in left {
            mesh_event(&mut st, &mesh, &pk, "peer_left", &name, format!("{name} left the mesh"));
        }
        // Liveness: ping quiet connections, drop dead ones.
        for p in st.peers.values() {
            if let Some(c) = &p.conn {
                let idle = now.saturating_sub(c.last_rx());
                if idle >= dead_after {
                    tracing::info!(peer = %p.rec.name, idle_ms = idle, "dropping dead connection");
                    c.kill();
                } else if idle >= ping_after {
                    let _ = c.try_send(Message::Ping(Default::default()));
                }
            }
        }
        // Retention: expire messages past their time, and old dedupe ids.
        let expired: Vec<u64> =
            st.messages.iter().filter(|(_, e)| e.msg.expires_at_ms <= now).map(|(s, _)| *s).collect();
        let mut seqs = Vec::new();
        for seq in expired {
            if let Some(e) = st.messages.remove(&seq) {
                let mut holders = Vec::new();
                for (pk, p) in st.peers.iter_mut() {
                    if p.queue.remove(&seq).is_some() {
                        p.by_msg.remove(&e.msg.msg_id);
                        holders.push(*pk);
                    }
                }
                seqs.push((seq, holders));
            }
        }
        let old_ids: Vec<Id16> = st.msg_ids.iter().filter(|(_, exp)| **exp <= now).map(|(id, _)| *id).collect();
        for id in &old_ids {
            st.msg_ids.remove(id);
        }
        if !seqs.is_empty() || !old_ids.is_empty() {
            tracing::info!(messages = seqs.len(), "retention expired messages");
            self.store.submit(Op::Expire { seqs, msg_ids: old_ids }, None);
        }
    }

    /// Tell every connection task to close (graceful shutdown) and wait up to `wait` for
    /// them to finish.
    pub async fn close_all(&self, wait: std::time::Duration) {
        self.closing.send_replace(true);
        let deadline = Instant::now() + wait;
        while self.live_conns.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A receiver that changes to true when the broker shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Count a connection task for the lifetime of the returned guard.
    pub fn conn_guard(self: &Arc<Self>) -> ConnGuard {
        self.live_conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    // ---------------------------------------------------------------- frames

    /// Handle one authenticated frame. Replies go out through the connection's queue.
    pub fn handle(self: &Arc<Self>, s: &Session, f: ClientFrame) {
        let id = f.req_id();
        let r = match f {
            ClientFrame::Hello(_) => refuse(ErrorCode::BadRequest, "already authenticated"),
            ClientFrame::Send { id, msg_id, priority, reply_to, envelopes } => {
                return self.send(s, id, msg_id, priority, reply_to, envelopes);
            }
            ClientFrame::Ack { ids } => {
                self.ack(s, &ids);
                return;
            }
            ClientFrame::Pull { id, limit } => self.pull(s, id, limit),
            ClientFrame::SetStatus { id, status } => return self.set_status(s, id, status),
            ClientFrame::SetSummary { id, summary } => {
                return self.update_peer(s, id, move |r| {
                    if summary.len() > 2048 {
                        return refuse(ErrorCode::BadRequest, "summary is longer than 2048 bytes");
                    }
                    r.summary = summary;
                    Ok(())
                })
            }
            ClientFrame::ListPeers { id } => Ok(ServerFrame::Peers { id, peers: self.list_peers(s) }),
            ClientFrame::Resolve { id, names } => self.resolve(s, &names).map(|peers| ServerFrame::Peers { id, peers }),
            ClientFrame::JoinGroup { id, group, role } => {
                return self.update_peer(s, id, move |r| {
                    if !valid_group(&group) {
                        return refuse(ErrorCode::BadRequest, format!("invalid group name '{group}'"));
                    }
                    if role.len() > 64 {
                        return refuse(ErrorCode::BadRequest, "group role is longer than 64 bytes");
                    }
                    let role = if role.is_empty() { "member".to_string() } else { role };
                    match r.groups.iter_mut().find(|g| g.group == group) {
                        Some(g) => g.role = role,
                        None => {
                            if r.groups.len() >= 64 {
                                return refuse(ErrorCode::BadRequest, "a peer can be in at most 64 groups");
                            }
                            r.groups.push(GroupRole { group, role })
                        }
                    }
                    Ok(())
                })
            }
            ClientFrame::LeaveGroup { id, group } => {
                return self.update_peer(s, id, move |r| {
                    r.groups.retain(|g| g.group != group);
                    Ok(())
                })
            }
            ClientFrame::Ping { id } => Ok(ServerFrame::Pong { id, server_time_ms: now_ms() }),
        };
        let out = r.unwrap_or_else(|e| ServerFrame::error(id, e.code, e.message));
        self.reply(s, &out);
    }

    /// Send a frame to this session's connection.
    pub fn reply(&self, s: &Session, f: &ServerFrame) {
        let mut st = self.lock();
        reply_conn(&mut st, s, f);
    }

    /// Rate limiting applies to every frame of an authenticated connection.
    pub fn allow_frame(&self, s: &Session) -> bool {
        let (rate, burst) = (self.cfg.rate_per_s, self.cfg.rate_burst);
        let mut st = self.lock();
        st.peers.get_mut(&s.peer).is_some_and(|p| p.bucket.take(rate, burst))
    }

    fn send(
        self: &Arc<Self>,
        s: &Session,
        id: ReqId,
        msg_id: Id16,
        priority: Priority,
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
    ) {
        let r = self.prepare_send(s, msg_id, priority, reply_to, envelopes);
        let batch = match r {
            Ok(Prepared::Duplicate) => {
                return self.reply(s, &ServerFrame::Accepted { id, msg_id, recipients: 0, duplicate: true })
            }
            Ok(Prepared::Batch(b)) => b,
            Err(e) => return self.reply(s, &ServerFrame::error(Some(id), e.code, e.message)),
        };
        let hub = self.clone();
        let sess = Session { peer: s.peer, mesh: s.mesh, conn_id: s.conn_id };
        let done_batch = batch.clone();
        self.store.submit(
            Op::InsertMessages(batch),
            Some(Box::new(move |res| hub.finish_send(&sess, id, msg_id, done_batch, res))),
        );
    }

    fn prepare_send(
        &self,
        s: &Session,
        msg_id: Id16,
        priority: Priority,
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
    ) -> Result<Prepared, Refusal> {
        if envelopes.is_empty() {
            return refuse(ErrorCode::BadRequest, "send has no envelopes");
        }
        if envelopes.len() > self.cfg.max_envelopes {
            return refuse(ErrorCode::BadRequest, format!("send has more than {} envelopes", self.cfg.max_envelopes));
        }
        let limit = self.cfg.max_message_bytes;
        for e in &envelopes {
            // The limit applies to the sealed plaintext: ciphertext minus the 16-byte tag.
            let size = e.sealed.ct.0.len().saturating_sub(16);
            if size > limit {
                return refuse(ErrorCode::TooLarge, format!("message is {size} bytes; the limit is {limit} bytes"));
            }
            if e.sealed.nonce.0.len() != 24 {
                return refuse(ErrorCode::BadRequest, "sealed nonce must be 24 bytes");
            }
        }
        let now = now_ms();
        let mut st = self.lock();
        if st.msg_ids.contains_key(&msg_id) {
            return Ok(Prepared::Duplicate);
        }
        let Some(me) = st.peers.get(&s.peer) else {
            return refuse(ErrorCode::NotAuthenticated, "unknown session");
        };
        let (from_xpk, from_name, my_member) = (me.rec.peer_xpk, me.rec.name.clone(), me.rec.member_pk);
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return refuse(ErrorCode::NotMember, "mesh is gone");
        };
        let mut seen: HashSet<Key> = HashSet::new();
        let mut plan: Vec<(Envelope, String, Vec<Key>)> = Vec::new();
        for env in envelopes {
            let (label, recipients): (String, Vec<Key>) = match &env.to {
                Target::Peer(pk) => {
                    let Some(p) = st.peers.get(pk).filter(|p| p.rec.mesh_id == s.mesh) else {
                        return refuse(ErrorCode::UnknownTarget, format!("no peer with key {} in this mesh", pk.short()));
                    };
                    (p.rec.name.clone(), vec![*pk])
                }
                Target::Group(g) => {
                    if !valid_group(g) {
                        return refuse(ErrorCode::BadRequest, format!("invalid group name '{g}'"));
                    }
                    let sub = format!("{g}/");
                    let r: Vec<Key> = mesh
                        .peers
                        .iter()
                        .filter(|pk| **pk != s.peer)
                        .filter(|pk| {
                            st.peers.get(pk).is_some_and(|p| {
                                p.rec.groups.iter().any(|x| x.group == *g || x.group.starts_with(&sub))
                            })
                        })
                        .copied()
                        .collect();
                    if r.is_empty() {
                        return refuse(ErrorCode::UnknownTarget, format!("no other peer is in @{g}"));
                    }
                    (format!("@{g}"), r)
                }
                Target::Broadcast => {
                    let r: Vec<Key> = mesh
                        .peers
                        .iter()
                        .filter(|pk| st.peers.get(pk).is_some_and(|p| p.rec.member_pk != my_member))
                        .copied()
                        .collect();
                    ("*".to_string(), r)
                }
            };
            let recipients: Vec<Key> = recipients.into_iter().filter(|r| seen.insert(*r)).collect();
            plan.push((env, label, recipients));
        }
        let expires = now + self.cfg.retention.as_millis() as u64;
        let mut batch = Vec::with_capacity(plan.len());
        for (env, label, recipients) in plan {
            let seq = st.next_seq;
            st.next_seq += 1;
            let msg = StoredMessage {
                seq,
                msg_id,
                mesh_id: s.mesh,
                from: s.peer,
                from_xpk,
                from_name: from_name.clone(),
                to_label: label,
                target: env.to,
                priority,
                reply_to,
                sealed: env.sealed,
                sent_at_ms: now,
                expires_at_ms: expires,
            };
            batch.push((Arc::new(msg), recipients));
        }
        st.msg_ids.insert(msg_id, expires);
        Ok(Prepared::Batch(batch))
    }

    /// Runs on the store writer after the commit: queue, push, acknowledge.
    fn finish_send(
        &self,
        s: &Session,
        id: ReqId,
        msg_id: Id16,
        batch: Vec<(Arc<StoredMessage>, Vec<Key>)>,
        res: Result<(), Arc<StoreError>>,
    ) {
        let mut st = self.lock();
        if let Err(e) = res {
            st.msg_ids.remove(&msg_id);
            let r: Refusal = e.into();
            reply_conn(&mut st, s, &ServerFrame::error(Some(id), r.code, r.message));
            return;
        }
        let mut total = 0u32;
        let mut touched = Vec::new();
        for (msg, recipients) in batch {
            let seq = msg.seq;
            let mut remaining = 0;
            for r in &recipients {
                if let Some(p) = st.peers.get_mut(r) {
                    p.queue.insert(seq, Pending { pushed_on: 0 });
                    p.by_msg.insert(msg_id, seq);
                    remaining += 1;
                    touched.push((*r, seq));
                }
            }
            total += remaining;
            st.messages.insert(seq, MsgEntry { msg, remaining, json: OnceLock::new(), bin: OnceLock::new() });
        }
        reply_conn(&mut st, s, &ServerFrame::Accepted { id, msg_id, recipients: total, duplicate: false });
        for (peer, seq) in touched {
            try_push(&mut st, &peer, seq);
        }
    }

    fn ack(&self, s: &Session, ids: &[Id16]) {
        let mut st = self.lock();
        for id in ids {
            let Some(seq) = st.peers.get_mut(&s.peer).and_then(|p| {
                let seq = p.by_msg.remove(id)?;
                p.queue.remove(&seq);
                Some(seq)
            }) else {
                continue; // unknown or already acked: acks are idempotent
            };
            let delete_message = match st.messages.get_mut(&seq) {
                Some(e) => {
                    e.remaining = e.remaining.saturating_sub(1);
                    e.remaining == 0
                }
                None => false,
            };
            if delete_message {
                st.messages.remove(&seq);
            }
            self.store.submit(Op::Ack { peer: s.peer, seq, delete_message }, None);
        }
    }

    fn pull(&self, s: &Session, id: ReqId, limit: u32) -> Result<ServerFrame, Refusal> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(p) = st.peers.get_mut(&s.peer) else {
            return refuse(ErrorCode::NotAuthenticated, "unknown session");
        };
        let limit = if limit == 0 { 1000 } else { limit.min(1000) } as usize;
        let mut out = Vec::new();
        for (seq, pend) in p.queue.iter_mut().take(limit) {
            if let Some(e) = st.messages.get(seq) {
                pend.pushed_on = s.conn_id;
                out.push(e.delivery());
            }
        }
        Ok(ServerFrame::Messages { id, messages: out })
    }

    fn set_status(&self, s: &Session, id: ReqId, status: Status) {
        let mut st = self.lock();
        let Some(p) = st.peers.get_mut(&s.peer) else { return };
        p.rec.status = status;
        // Reply first so the client sees `ok` before the deliveries it unlocked.
        reply_conn(&mut st, s, &ServerFrame::Ok { id });
        push_eligible(&mut st, &s.peer);
    }

    /// Change a durable peer field: validate, commit, then apply and reply.
    fn update_peer<F>(self: &Arc<Self>, s: &Session, id: ReqId, f: F)
    where
        F: FnOnce(&mut PeerRecord) -> Result<(), Refusal>,
    {
        let rec = {
            let st = self.lock();
            let Some(p) = st.peers.get(&s.peer) else { return };
            let mut rec = p.rec.clone();
            if let Err(e) = f(&mut rec) {
                drop(st);
                return self.reply(s, &ServerFrame::error(Some(id), e.code, e.message));
            }
            rec
        };
        let hub = self.clone();
        let sess = Session { peer: s.peer, mesh: s.mesh, conn_id: s.conn_id };
        let applied = rec.clone();
        self.store.submit(
            Op::PutPeer(rec),
            Some(Box::new(move |res| {
                let mut st = hub.lock();
                let out = match res {
                    Ok(()) => {
                        if let Some(p) = st.peers.get_mut(&sess.peer) {
                            // Live fields (status, last seen) keep their current values.
                            p.rec.groups = applied.groups;
                            p.rec.summary = applied.summary;
                        }
                        ServerFrame::Ok { id }
                    }
                    Err(e) => {
                        let r: Refusal = e.into();
                        ServerFrame::error(Some(id), r.code, r.message)
                    }
                };
                reply_conn(&mut st, &sess, &out);
            })),
        );
    }

    fn peer_info(&self, p: &PeerState) -> PeerInfo {
        PeerInfo {
            peer_pk: p.rec.peer_pk,
            peer_xpk: p.rec.peer_xpk,
            member_pk: p.rec.member_pk,
            name: p.rec.name.clone(),
            online: p.conn.is_some(),
            status: p.rec.status,
            summary: p.rec.summary.clone(),
            groups: p.rec.groups.clone(),
            hostname: p.rec.hostname.clone(),
            cwd: p.rec.cwd.clone(),
            connected_since_ms: if p.conn.is_some() { p.connected_since_ms } else { 0 },
            last_seen_ms: p.rec.last_seen_ms,
        }
    }

    fn list_peers(&self, s: &Session) -> Vec<PeerInfo> {
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else { return vec![] };
        let mut v: Vec<PeerInfo> =
            mesh.peers.iter().filter_map(|pk| st.peers.get(pk)).map(|p| self.peer_info(p)).collect();
        v.sort_by(|a, b| b.online.cmp(&a.online).then(a.name.cmp(&b.name)));
        v
    }

    fn resolve(&self, s: &Session, names: &[String]) -> Result<Vec<PeerInfo>, Refusal> {
        if names.len() > 256 {
            return refuse(ErrorCode::BadRequest, "too many names");
        }
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else { return refuse(ErrorCode::NotMember, "mesh is gone") };
        let mut out = Vec::new();
        for n in names {
            let by_key = Key::parse_hex(n).filter(|k| mesh.peers.contains(k));
            let pk = by_key.or_else(|| mesh.names.get(n).and_then(|o| o.peer));
            match pk.and_then(|k| st.peers.get(&k)) {
                Some(p) => out.push(self.peer_info(p)),
                None => {
                    let shown: String = n.chars().take(64).collect();
                    return refuse(ErrorCode::UnknownTarget, format!("unknown peer '{shown}' in mesh '{}'", mesh.rec.name));
                }
            }
        }
        Ok(out)
    }
}

/// Keeps the live-connection count while a connection task runs.
pub struct ConnGuard(Arc<Hub>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.live_conns.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

enum Prepared {
    Duplicate,
    Batch(Vec<(Arc<StoredMessage>, Vec<Key>)>),
}

fn new_peer_state(rec: PeerRecord, burst: f64) -> PeerState {
    PeerState {
        rec,
        conn: None,
        connected_since_ms: 0,
        queue: BTreeMap::new(),
        by_msg: HashMap::new(),
        bucket: Bucket::new(burst),
        away_since: None,
    }
}

fn conn_codec(st: &State, peer: &Key) -> Codec {
    st.peers.get(peer).and_then(|p| p.conn.as_ref()).map(|c| c.codec).unwrap_or(Codec::Json)
}

/// Queue a message on a peer's live connection. A full queue means a reader too slow to
/// keep up: it is disconnected (its messages stay queued durably for its next connection).
fn send_to(st: &mut State, peer: &Key, m: Message) -> bool {
    let Some(p) = st.peers.get_mut(peer) else { return false };
    let Some(c) = &p.conn else { return false };
    if c.try_send(m) {
        true
    } else {
        tracing::warn!(peer = %p.rec.name, "outbound queue full or closed; disconnecting slow reader");
        c.kill();
        false
    }
}

fn reply_conn(st: &mut State, s: &Session, f: &ServerFrame) {
    let Some(c) = st.peers.get(&s.peer).and_then(|p| p.conn.as_ref()).filter(|c| c.id == s.conn_id) else {
        return; // the connection that asked is gone
    };
    let m = encode_msg(c.codec, f);
    send_to(st, &s.peer, m);
}

fn gate_allows(status: Status, pr: Priority) -> bool {
    match pr {
        Priority::Now => true,
        Priority::Next => status == Status::Idle,
        Priority::Low => false,
    }
}

/// Push one queued message if the peer is connected, wants pushes, and its status allows.
fn try_push(st: &mut State, peer: &Key, seq: u64) {
    let Some(p) = st.peers.get_mut(peer) else { return };
    let Some(c) = p.conn.as_ref().filter(|c| c.push) else { return };
    let Some(pend) = p.queue.get_mut(&seq) else { return };
    if pend.pushed_on == c.id {
        return;
    }
    let Some(e) = st.messages.get(&seq) else { return };
    if !gate_allows(p.rec.status, e.msg.priority) {
        return;
    }
    if c.try_send(e.frame(c.codec)) {
        pend.pushed_on = c.id;
    } else {
        tracing::warn!(peer = %p.rec.name, "outbound queue full or closed; disconnecting slow reader");
        c.kill();
    }
}

fn push_eligible(st: &mut State, peer: &Key) {
    let seqs: Vec<u64> = match st.peers.get(peer) {
        Some(p) => p.queue.keys().copied().collect(),
        None => return,
    };
    for seq in seqs {
        try_push(st, peer, seq);
    }
}

/// Tell every other online peer of a mesh about a presence change.
fn mesh_event(st: &mut State, mesh: &Key, about: &Key, kind: &str, peer: &str, text: String) {
    let ev = ServerFrame::Event(Event { kind: kind.into(), peer: peer.into(), text, at_ms: now_ms() });
    let (json, bin) = (OnceLock::new(), OnceLock::new());
    let Some(m) = st.meshes.get(mesh) else { return };
    for pk in &m.peers {
        if pk == about {
            continue;
        }
        if let Some(c) = st.peers.get(pk).and_then(|p| p.conn.as_ref()) {
            let msg = match c.codec {
                Codec::Json => json.get_or_init(|| encode_msg(Codec::Json, &ev)).clone(),
                Codec::Binary => bin.get_or_init(|| encode_msg(Codec::Binary, &ev)).clone(),
            };
            let _ = c.try_send(msg);
        }
    }
}
