//! Sessions: the hello handshake, connections coming and going, presence announcements, and
//! the periodic sweep (grace windows, liveness, retention).

use super::{
    delivery, encode_msg, refuse, send_each, send_on, Hub, NameOwner, PeerState, PresenceNote,
    Refusal, Session, State,
};
use crate::broker::outbox::ConnHandle;
use crate::crypto::hello as hello_crypto;
use crate::proto::*;
use crate::store::*;
use crate::util::{now_ms, valid_name};
use std::collections::HashMap;
use tokio_tungstenite::tungstenite::Message;

/// Most distinct sessions (peer keys) one member may register in a mesh.
const MAX_PEERS_PER_MEMBER: usize = 1000;
/// Up to this many presence changes per sweep are announced one by one; more are summarised.
const PRESENCE_DETAIL: usize = 5;
/// How often retention runs (it scans every queued message).
const RETENTION_EVERY_MS: u64 = 30_000;

impl Hub {
    /// Authenticate a hello and attach the connection to its peer. On success the
    /// `hello_ack` (and anything queued) has been put on the connection.
    pub async fn hello(&self, h: &Hello, conn: ConnHandle) -> Result<Session, Refusal> {
        if h.v != PROTOCOL_VERSION {
            return refuse(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported (this broker speaks {PROTOCOL_VERSION})",
                    h.v
                ),
            );
        }
        let now = now_ms();
        let window = self.cfg.hello_window.as_millis() as u64;
        hello_crypto::verify_hello(h, now, window).map_err(|e| {
            let code = match e {
                hello_crypto::HelloError::Stale(..) => ErrorCode::StaleHello,
                _ => ErrorCode::BadSignature,
            };
            Refusal {
                code,
                message: e.to_string(),
            }
        })?;
        if !valid_name(&h.name) {
            return refuse(
                ErrorCode::BadRequest,
                format!(
                    "invalid peer name '{}'",
                    h.name.chars().take(64).collect::<String>()
                ),
            );
        }
        if h.session_id.len() > 128 || h.hostname.len() > 256 || h.cwd.len() > 4096 {
            return refuse(
                ErrorCode::BadRequest,
                "session id, hostname or cwd too long",
            );
        }
        // Others see these in peer lists: no line breaks or other control characters.
        if [&h.session_id, &h.hostname, &h.cwd]
            .iter()
            .any(|s| s.chars().any(char::is_control))
        {
            return refuse(
                ErrorCode::BadRequest,
                "session id, hostname or cwd has control characters",
            );
        }

        // Validate, apply to memory, and queue the durable write — all under one lock, so a
        // send that sees this peer is submitted to the store after the peer itself.
        let commit = {
            let mut st = self.lock();
            let st = &mut *st;
            if st.hello_nonces.contains_key(&(h.peer_pk, h.nonce)) {
                return refuse(
                    ErrorCode::ReplayedHello,
                    "this hello was already used (replay)",
                );
            }
            let Some(mesh) = st.meshes.get(&h.mesh_id) else {
                return refuse(ErrorCode::NotMember, "unknown mesh");
            };
            let Some(member) = mesh.members.get(&h.member_pk) else {
                return refuse(ErrorCode::NotMember, "this key is not a member of the mesh");
            };
            if member.revoked {
                return refuse(
                    ErrorCode::NotMember,
                    "this member was removed from the mesh",
                );
            }
            // A one-shot connection (no pushes: a CLI command) may share a name a live
            // session of the same member holds; it does not take the name over.
            // A one-shot connection takes a name only nobody holds yet.
            let mut take_name = h.push || mesh.names.get(&h.name).is_none_or(|o| o.peer.is_none());
            if let Some(owner) = mesh.names.get(&h.name) {
                if owner.member != h.member_pk {
                    return refuse(
                        ErrorCode::NameTaken,
                        format!("the name '{}' belongs to another member", h.name),
                    );
                }
                if let Some(other) = owner.peer.filter(|p| *p != h.peer_pk) {
                    if st.peers.get(&other).is_some_and(|p| p.online()) {
                        if !h.push {
                            take_name = false;
                        } else {
                            return refuse(
                                ErrorCode::NameTaken,
                                format!(
                                    "the name '{}' is in use by another of your sessions",
                                    h.name
                                ),
                            );
                        }
                    }
                }
            }
            match st.peers.get(&h.peer_pk) {
                Some(existing)
                    if existing.rec.mesh_id != h.mesh_id
                        || existing.rec.member_pk != h.member_pk =>
                {
                    return refuse(
                        ErrorCode::BadRequest,
                        "peer key is registered to another member",
                    );
                }
                Some(_) => {}
                None => {
                    let mine = mesh
                        .peers
                        .iter()
                        .filter(|p| {
                            st.peers
                                .get(p)
                                .is_some_and(|p| p.rec.member_pk == h.member_pk)
                        })
                        .count();
                    if mine >= MAX_PEERS_PER_MEMBER {
                        return refuse(
                            ErrorCode::BadRequest,
                            format!("a member may have at most {MAX_PEERS_PER_MEMBER} sessions in a mesh"),
                        );
                    }
                }
            }
            st.hello_nonces
                .insert((h.peer_pk, h.nonce), now + 2 * window);

            let rate_burst = self.cfg.rate_burst;
            let ps = st.peers.entry(h.peer_pk).or_insert_with(|| {
                PeerState::new(
                    PeerRecord {
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
                        profile: Profile::default(),
                        visible: true,
                    },
                    rate_burst,
                )
            });
            let before = ps.rec.clone();
            // One-shot connections (CLI commands, hooks, `status` probes) only fill in a new
            // record; the session's own push connection keeps it current.
            if h.push || before.name.is_empty() {
                ps.rec.name = h.name.clone();
                ps.rec.session_id = h.session_id.clone();
                ps.rec.hostname = h.hostname.clone();
                ps.rec.cwd = h.cwd.clone();
                ps.rec.peer_xpk = h.peer_xpk;
            }
            let changed = ps.rec != before || before.name.is_empty();
            let rec = ps.rec.clone();
            if let Some(mesh) = st.meshes.get_mut(&h.mesh_id) {
                mesh.peers.insert(h.peer_pk);
                // The name now resolves to this session (reserved before the commit, so a
                // concurrent hello of another member sees it taken).
                if take_name {
                    mesh.names.insert(
                        h.name.clone(),
                        NameOwner {
                            member: h.member_pk,
                            peer: Some(h.peer_pk),
                        },
                    );
                }
            }
            changed.then(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.store
                    .submit(Op::PutPeer(rec), Some(Box::new(move |r| drop(tx.send(r)))));
                rx
            })
        };
        if let Some(rx) = commit {
            rx.await
                .unwrap_or(Err(std::sync::Arc::new(StoreError::Closed)))?;
        }

        let mut st = self.lock();
        let st = &mut *st;
        let mesh_name = st
            .meshes
            .get(&h.mesh_id)
            .map(|m| m.rec.name.clone())
            .unwrap_or_default();
        let Some(ps) = st.peers.get_mut(&h.peer_pk) else {
            return refuse(ErrorCode::Internal, "peer vanished");
        };
        let was_online = ps.online();
        ps.away_since = None;
        let seen_before = ps.rec.last_seen_ms > 0;
        let last_seen = ps.rec.last_seen_ms;
        let session = Session {
            peer: h.peer_pk,
            mesh: h.mesh_id,
            conn_id: conn.id,
        };
        if !was_online {
            ps.connected_since_ms = now;
        }
        if h.push {
            ps.rec.last_seen_ms = now;
        }
        let ack = ServerFrame::HelloAck(HelloAck {
            peer_pk: h.peer_pk,
            mesh_id: h.mesh_id,
            mesh_name,
            name: ps.rec.name.clone(),
            server_version: crate::VERSION.to_string(),
            max_message_bytes: self.cfg.max_message_bytes as u32,
            queued: ps.queue.len() as u32,
            caps: CAPS.iter().map(|c| c.to_string()).collect(),
        });
        send_on(&conn, encode_msg(conn.codec, &ack));
        // One-shot connections (CLI commands, hooks) and hidden peers make no presence
        // noise; a reconnect inside the grace window is silent (still announced).
        if h.push && !ps.announced && ps.rec.visible {
            ps.announced = true;
            let name = h.name.clone();
            let (kind, text) = if seen_before {
                (
                    "peer_returned",
                    format!(
                        "{name} is back (last seen {})",
                        crate::util::rfc3339(last_seen)
                    ),
                )
            } else {
                ("peer_joined", format!("{name} joined the mesh"))
            };
            st.presence.push(PresenceNote {
                mesh: h.mesh_id,
                about: h.peer_pk,
                kind,
                name,
                text,
            });
        }
        if h.push {
            if let Some(old) = ps.push_conn.take() {
                // The newest session wins; tell the old connection why it is closed.
                let why = ServerFrame::error(
                    None,
                    ErrorCode::SessionReplaced,
                    "this session connected again elsewhere",
                );
                let _ = old.try_send(encode_msg(old.codec, &why));
                old.kill();
            }
            ps.rec.status = h.status;
            ps.push_conn = Some(conn);
            ps.inflight = 0;
            ps.backlog = false;
            for p in ps.queue.values_mut() {
                p.inflight = false;
            }
            delivery::push_eligible(st, &h.peer_pk);
        } else {
            ps.other_conns.push(conn);
        }
        Ok(session)
    }

    /// A connection ended. When it was the peer's last, the peer stays "away" for the grace
    /// window before others hear it left, so quick reconnects make no noise.
    pub fn disconnect(&self, s: &Session) {
        let mut st = self.lock();
        let Some(ps) = st.peers.get_mut(&s.peer) else {
            return;
        };
        // Whatever was handed to this connection and not acked is queued again (and shown
        // as queued by message_status) until another connection takes it.
        for p in ps.queue.values_mut() {
            if p.pushed_on == s.conn_id {
                p.pushed_on = 0;
            }
        }
        let was_push = ps.push_conn.as_ref().is_some_and(|c| c.id == s.conn_id);
        if was_push {
            ps.push_conn = None;
            ps.inflight = 0;
            ps.backlog = false;
        } else {
            ps.other_conns.retain(|c| c.id != s.conn_id);
        }
        // A one-shot connection leaving changes nothing others see, unless it was the last
        // connection of an announced session.
        if ps.online() || (!was_push && !ps.announced) {
            return;
        }
        let now = now_ms();
        ps.away_since = Some(now);
        ps.rec.last_seen_ms = now;
        // Deliveries handed to this connection but not acked are resent on the next one.
        self.store.submit(Op::PutPeer(ps.rec.clone()), None);
    }

    /// Periodic housekeeping: presence announcements, grace-window expiry, liveness pings,
    /// retention.
    pub fn sweep(&self) {
        let now = now_ms();
        let grace = self.cfg.grace.as_millis() as u64;
        let ping_after = self.cfg.ping_interval.as_millis() as u64;
        let dead_after = self.cfg.dead_after.as_millis() as u64;
        let mut st = self.lock();
        let st = &mut *st;
        st.hello_nonces.retain(|_, exp| *exp > now);
        for (pk, p) in st.peers.iter_mut() {
            if let Some(t) = p.away_since.filter(|t| now.saturating_sub(*t) >= grace) {
                let _ = t;
                p.away_since = None;
                if !std::mem::take(&mut p.announced) {
                    continue;
                }
                let name = p.rec.name.clone();
                let text = format!("{name} left the mesh");
                st.presence.push(PresenceNote {
                    mesh: p.rec.mesh_id,
                    about: *pk,
                    kind: "peer_left",
                    name,
                    text,
                });
            }
            for c in p.push_conn.iter().chain(p.other_conns.iter()) {
                let idle = now.saturating_sub(c.last_rx());
                if idle >= dead_after {
                    tracing::info!(peer = %p.rec.name, idle_ms = idle, "dropping dead connection");
                    c.kill();
                } else if idle >= ping_after {
                    let _ = c.try_send(Message::Ping(Default::default()));
                }
            }
        }
        flush_presence(st);
        if now.saturating_sub(st.last_retention_ms)
            >= RETENTION_EVERY_MS.min(self.cfg.retention.as_millis() as u64)
        {
            st.last_retention_ms = now;
            self.expire(st, now);
        }
    }

    /// Drop messages and dedupe ids past their retention.
    fn expire(&self, st: &mut State, now: u64) {
        let expired: Vec<u64> = st
            .messages
            .iter()
            .filter(|(_, e)| e.msg.expires_at_ms <= now)
            .map(|(s, _)| *s)
            .collect();
        let mut seqs = Vec::with_capacity(expired.len());
        for seq in &expired {
            let Some(e) = st.messages.remove(seq) else {
                continue;
            };
            seqs.push((*seq, e.msg.recipients.len() > 1));
            for r in &e.msg.recipients {
                let Some(p) = st.peers.get_mut(r) else {
                    continue;
                };
                if let Some(pend) = p.queue.remove(seq) {
                    p.by_msg.remove(&e.msg.msg_id);
                    if pend.inflight {
                        p.inflight = p.inflight.saturating_sub(1);
                    }
                }
            }
        }
        let old_ids: Vec<(Key, Id16)> = st
            .sent_ids
            .iter()
            .filter(|(_, v)| v.expires_ms <= now && v.waiting.is_none())
            .map(|(k, _)| *k)
            .collect();
        let mut sent = Vec::with_capacity(old_ids.len());
        for k in &old_ids {
            if let Some(v) = st.sent_ids.remove(k) {
                sent.push(v.sent_seq);
            }
        }
        if !seqs.is_empty() || !old_ids.is_empty() {
            tracing::info!(messages = seqs.len(), "retention expired messages");
            self.store.submit(Op::Expire { seqs, sent }, None);
        }
    }
}

/// Announce queued presence changes: one event each when there are few, one summary per
/// mesh when many (a reconnect storm of 10,000 peers must not become 10⁸ events).
fn flush_presence(st: &mut State) {
    if st.presence.is_empty() {
        return;
    }
    let mut by_mesh: HashMap<Key, Vec<PresenceNote>> = HashMap::new();
    for n in st.presence.drain(..) {
        by_mesh.entry(n.mesh).or_default().push(n);
    }
    let now = now_ms();
    for (mesh, notes) in by_mesh {
        if notes.len() <= PRESENCE_DETAIL {
            for n in notes {
                let ev = ServerFrame::Event(Event {
                    kind: n.kind.into(),
                    peer: n.name,
                    text: n.text,
                    at_ms: now,
                });
                mesh_event(st, &mesh, Some(&n.about), &ev);
            }
        } else {
            let shown: Vec<String> = notes
                .iter()
                .take(PRESENCE_DETAIL)
                .map(|n| format!("{} {}", n.name, verb(n.kind)))
                .collect();
            let text = format!(
                "{} presence changes: {}, and {} more",
                notes.len(),
                shown.join(", "),
                notes.len() - PRESENCE_DETAIL
            );
            let ev = ServerFrame::Event(Event {
                kind: "presence".into(),
                peer: String::new(),
                text,
                at_ms: now,
            });
            mesh_event(st, &mesh, None, &ev);
        }
    }
}

fn verb(kind: &str) -> &'static str {
    match kind {
        "peer_joined" => "joined",
        "peer_left" => "left",
        _ => "returned",
    }
}

/// Send an event to every online peer of a mesh (except `about`).
fn mesh_event(st: &State, mesh: &Key, about: Option<&Key>, ev: &ServerFrame) {
    let Some(m) = st.meshes.get(mesh) else { return };
    send_each(st, m.peers.iter().filter(|pk| Some(*pk) != about), ev);
}
