//! Delivery: accepting a send (validate → commit → queue → push → `accepted`), pushing with
//! priority gating and a per-connection in-flight window, acks, and pulls.

use super::{
    refuse, send_on, Few, Hub, MsgEntry, Pending, Refusal, Responder, SentId, Session, State,
    MAX_INFLIGHT,
};
use crate::proto::*;
use crate::store::*;
use crate::util::{now_ms, valid_group};
use std::collections::HashSet;
use std::sync::Arc;

/// Most sealed bytes returned by one `pull` (the rest stays queued for the next pull).
const PULL_BYTES: usize = 1024 * 1024;
/// Sends to at most this many recipients keep their names for `message_status`.
const MAX_NAMED_RECIPIENTS: usize = 8;

enum Prepared {
    /// Answered already (a duplicate), or parked behind the same id's commit: the reply
    /// comes with the original's outcome.
    Done,
    Store(u64, MsgIdRecord, Vec<Arc<StoredMessage>>),
}

/// Who hears a send's outcome: the connection that asked, or the broker itself (a
/// schedule firing on behalf of its creator).
pub(crate) enum SendReply {
    Conn(Responder),
    Call(Box<dyn FnOnce(Result<msg::Response, Refusal>) + Send>),
}

impl SendReply {
    fn ok(self, a: msg::Response) {
        match self {
            SendReply::Conn(r) => r.ok(a),
            SendReply::Call(f) => f(Ok(a)),
        }
    }

    fn err(self, e: Refusal) {
        match self {
            SendReply::Conn(r) => r.err(e),
            SendReply::Call(f) => f(Err(e)),
        }
    }
}

/// The end of a send, run by its commit's completion. Should the completion be dropped
/// without running (the store went away mid-commit), the send is refused all the same, so
/// its retries parked behind it are answered too instead of waiting forever.
struct Finish(Option<SendEnd>);

/// What a send's end needs: the hub, the sender, the message, its stored copies, the reply.
type SendEnd = (Arc<Hub>, Session, Id16, Vec<Arc<StoredMessage>>, SendReply);

impl Finish {
    fn run(mut self, res: Result<(), Arc<StoreError>>) {
        if let Some((hub, s, msg_id, batch, r)) = self.0.take() {
            hub.finish_send(&s, msg_id, batch, res, r);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some((hub, s, msg_id, batch, r)) = self.0.take() {
            hub.finish_send(&s, msg_id, batch, Err(Arc::new(StoreError::Closed)), r);
        }
    }
}

impl Hub {
    /// Every `msg` request; each answers through `r`, now or after its commit.
    pub(crate) fn msg(self: &Arc<Self>, s: &Session, q: msg::Request, r: Responder) {
        match q {
            msg::Request::Send {
                msg_id,
                priority,
                reply_to,
                envelopes,
            } => self.send(s, msg_id, priority, reply_to, envelopes, SendReply::Conn(r)),
            msg::Request::Pull { limit } => r.reply(self.pull(s, limit)),
            msg::Request::Unread {} => r.reply(self.unread(s)),
            msg::Request::MessageStatus { msg_id } => r.reply(self.message_status(s, msg_id)),
            msg::Request::SetStatus { status } => self.set_status(s, status, r),
        }
    }

    /// Send as peer `s.peer` of mesh `s.mesh` (a connection's session, or a creator on
    /// whose behalf the broker sends); `r` hears the outcome once, after the commit.
    pub(crate) fn send(
        self: &Arc<Self>,
        s: &Session,
        msg_id: Id16,
        priority: Priority,
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
        r: SendReply,
    ) {
        let mut slot = Some(r);
        let prepared = self.prepare_send(s, msg_id, priority, reply_to, envelopes, &mut slot);
        let (sent_seq, rec, batch, r) = match (prepared, slot) {
            (Ok(Prepared::Store(seq, rec, batch)), Some(r)) => (seq, rec, batch, r),
            (Err(e), Some(r)) => return r.err(e),
            // Answered (a duplicate) or parked behind the same id's commit.
            _ => return,
        };
        let finish = Finish(Some((self.clone(), *s, msg_id, batch.clone(), r)));
        self.store.submit(
            Op::InsertMessages {
                sent_seq,
                id: rec,
                msgs: batch,
            },
            Some(Box::new(move |res| finish.run(res))),
        );
    }

    /// What every send's envelopes must be, whatever their targets: present, few enough,
    /// each within the size limit and with a well-formed nonce.
    pub(crate) fn check_envelopes(&self, envelopes: &[Envelope]) -> Result<(), Refusal> {
        if envelopes.is_empty() {
            return refuse(ErrorCode::BadRequest, "send has no envelopes");
        }
        if envelopes.len() > self.cfg.max_envelopes {
            return refuse(
                ErrorCode::BadRequest,
                format!("send has more than {} envelopes", self.cfg.max_envelopes),
            );
        }
        let limit = self.cfg.max_message_bytes;
        for e in envelopes {
            // The limit applies to the sealed plaintext: ciphertext minus the 16-byte tag.
            let size = e.sealed.ct.0.len().saturating_sub(16);
            if size > limit {
                return refuse(
                    ErrorCode::TooLarge,
                    format!("message is {size} bytes; the limit is {limit} bytes"),
                );
            }
            if e.sealed.nonce.0.len() != 24 {
                return refuse(ErrorCode::BadRequest, "sealed nonce must be 24 bytes");
            }
        }
        Ok(())
    }

    /// Whether a later send of `envelopes` by a peer of `mesh` could be accepted as far as
    /// is known now: [`check_envelopes`](Self::check_envelopes), every peer target in
    /// the mesh, every group name valid (a group may have no members yet).
    pub(crate) fn check_send(&self, mesh: &Key, envelopes: &[Envelope]) -> Result<(), Refusal> {
        self.check_envelopes(envelopes)?;
        let st = self.lock();
        for e in envelopes {
            match &e.to {
                Target::Peer(pk) if st.peers.get(pk).is_none_or(|p| p.rec.mesh_id != *mesh) => {
                    return refuse(
                        ErrorCode::UnknownTarget,
                        format!("no peer with key {} in this mesh", pk.short()),
                    );
                }
                Target::Group(g) if !valid_group(g) => {
                    return refuse(ErrorCode::BadRequest, "invalid group name")
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn prepare_send(
        &self,
        s: &Session,
        msg_id: Id16,
        priority: Priority,
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
        r: &mut Option<SendReply>,
    ) -> Result<Prepared, Refusal> {
        self.check_envelopes(&envelopes)?;
        let now = now_ms();
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(prev) = st.sent_ids.get_mut(&(s.peer, msg_id)) {
            match (&mut prev.waiting, r.take()) {
                (Some(w), Some(r)) => w.push(r),
                (None, Some(r)) => r.ok(msg::Response::Send {
                    msg_id,
                    recipients: prev.recipients,
                    duplicate: true,
                }),
                (_, None) => {}
            }
            return Ok(Prepared::Done);
        }
        let Some(me) = st.peers.get(&s.peer) else {
            return refuse(ErrorCode::NotAuthenticated, "unknown session");
        };
        let (from_xpk, from_name, my_member) =
            (me.rec.peer_xpk, me.rec.name.clone(), me.rec.member_pk);
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return refuse(ErrorCode::NotMember, "mesh is gone");
        };
        // A peer gets one copy even when several envelopes reach it (the first wins).
        let mut seen: HashSet<Key> = HashSet::new();
        let mut claimed = 0u32;
        let mut plan: Vec<(Envelope, String, Vec<Key>)> = Vec::new();
        for env in envelopes {
            let (label, recipients): (String, Vec<Key>) = match &env.to {
                Target::Peer(pk) => {
                    let Some(p) = st.peers.get(pk).filter(|p| p.rec.mesh_id == s.mesh) else {
                        return refuse(
                            ErrorCode::UnknownTarget,
                            format!("no peer with key {} in this mesh", pk.short()),
                        );
                    };
                    (p.rec.name.clone(), vec![*pk])
                }
                Target::Group(g) => {
                    if !valid_group(g) {
                        return refuse(ErrorCode::BadRequest, "invalid group name");
                    }
                    let r: Vec<Key> = mesh
                        .peers
                        .iter()
                        .filter(|pk| **pk != s.peer)
                        .filter(|pk| {
                            st.peers
                                .get(pk)
                                .is_some_and(|p| p.rec.groups.iter().any(|x| x.is_in(g)))
                        })
                        .copied()
                        .collect();
                    if r.is_empty() {
                        return refuse(
                            ErrorCode::UnknownTarget,
                            format!("no other peer is in @{g}"),
                        );
                    }
                    (format!("@{g}"), r)
                }
                Target::Broadcast => {
                    // Every visible session of every other member; never back to the
                    // sender's own.
                    let r: Vec<Key> = mesh
                        .peers
                        .iter()
                        .filter(|pk| {
                            st.peers
                                .get(pk)
                                .is_some_and(|p| p.rec.member_pk != my_member && p.rec.visible)
                        })
                        .copied()
                        .collect();
                    ("*".to_string(), r)
                }
            };
            let recipients: Vec<Key> = recipients.into_iter().filter(|r| seen.insert(*r)).collect();
            claimed += recipients.len() as u32;
            // Another sender's message with the same id is already queued there: that copy
            // is dropped, and still counted, so the reply does not reveal whether the other
            // message was read.
            let recipients: Vec<Key> = recipients
                .into_iter()
                .filter(|r| {
                    st.peers
                        .get(r)
                        .is_some_and(|p| !p.by_msg.contains_key(&msg_id))
                })
                .collect();
            plan.push((env, label, recipients));
        }
        let expires = now + self.cfg.retention.as_millis() as u64;
        let sent_seq = st.next_seq;
        st.next_seq += 1;
        let mut batch = Vec::with_capacity(plan.len());
        let mut total = 0u32;
        let (mut seqs, mut recipient_keys) = (Vec::new(), Vec::new());
        for (env, label, recipients) in plan {
            if recipients.is_empty() {
                continue; // nothing to store for it
            }
            total += recipients.len() as u32;
            let seq = st.next_seq;
            st.next_seq += 1;
            seqs.push(seq);
            recipient_keys.extend_from_slice(&recipients);
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
                recipients,
            };
            batch.push(Arc::new(msg));
        }
        // Names for message_status are kept for small sends only (DMs, small groups): a
        // large fan-out would hold 32 bytes per recipient for the whole retention period.
        // Larger sends are reported by name while copies are stored, then as counts.
        if recipient_keys.len() > MAX_NAMED_RECIPIENTS {
            recipient_keys = Vec::new();
        }
        let total = total.max(claimed);
        let sent = SentId {
            sent_seq,
            expires_ms: expires,
            recipients: total,
            waiting: Some(Vec::new()),
            seqs: Few::from_vec(seqs),
            recipient_keys: Few::from_vec(recipient_keys),
        };
        st.sent_ids.insert((s.peer, msg_id), sent);
        let rec = MsgIdRecord {
            from: s.peer,
            msg_id,
            expires_ms: expires,
            recipients: total,
        };
        Ok(Prepared::Store(sent_seq, rec, batch))
    }

    /// Runs on the store writer after the commit: queue, push, acknowledge.
    fn finish_send(
        &self,
        s: &Session,
        msg_id: Id16,
        batch: Vec<Arc<StoredMessage>>,
        res: Result<(), Arc<StoreError>>,
        r: SendReply,
    ) {
        let mut st = self.lock();
        let st = &mut *st;
        let key = (s.peer, msg_id);
        if let Err(e) = res {
            let waiting = st
                .sent_ids
                .remove(&key)
                .and_then(|x| x.waiting)
                .unwrap_or_default();
            let e: Refusal = e.into();
            for r in std::iter::once(r).chain(waiting) {
                r.err(e.clone());
            }
            return;
        }
        let (waiting, total) = match st.sent_ids.get_mut(&key) {
            Some(x) => (x.waiting.take().unwrap_or_default(), x.recipients),
            None => (Vec::new(), 0),
        };
        let mut touched = Vec::new();
        for msg in batch {
            let seq = msg.seq;
            let mut remaining = 0;
            for r in &msg.recipients {
                if let Some(p) = st.peers.get_mut(r) {
                    p.queue.insert(seq, Pending::default());
                    p.by_msg.insert(msg_id, seq);
                    remaining += 1;
                    touched.push((*r, seq));
                }
            }
            st.messages.insert(seq, MsgEntry::new(msg, remaining));
        }
        // Answer before pushing, so a sender that sent to itself sees `send` first.
        r.ok(msg::Response::Send {
            msg_id,
            recipients: total,
            duplicate: false,
        });
        for r in waiting {
            r.ok(msg::Response::Send {
                msg_id,
                recipients: total,
                duplicate: true,
            });
        }
        for (peer, seq) in touched {
            try_push(st, &peer, seq);
        }
    }

    pub(crate) fn ack(&self, s: &Session, ids: &[Id16]) {
        let mut st = self.lock();
        let st = &mut *st;
        for id in ids {
            let Some(p) = st.peers.get_mut(&s.peer) else {
                return;
            };
            let Some(seq) = p.by_msg.remove(id) else {
                continue;
            }; // unknown or already acked
            if p.queue.remove(&seq).is_some_and(|pend| pend.inflight) {
                p.inflight = p.inflight.saturating_sub(1);
            }
            let (delete_message, multi) = match st.messages.get_mut(&seq) {
                Some(e) => {
                    e.remaining = e.remaining.saturating_sub(1);
                    (e.remaining == 0, e.msg.recipients.len() > 1)
                }
                None => (false, false),
            };
            if delete_message {
                st.messages.remove(&seq);
            }
            self.store.submit(
                Op::Ack {
                    seq,
                    peer: s.peer,
                    delete_message,
                    multi,
                },
                None,
            );
        }
        // Refill the in-flight window once it has drained by half.
        if st
            .peers
            .get(&s.peer)
            .is_some_and(|p| p.backlog && p.inflight < MAX_INFLIGHT / 2)
        {
            push_eligible(st, &s.peer);
        }
    }

    fn pull(&self, s: &Session, limit: u32) -> Result<msg::Response, Refusal> {
        let mut st = self.lock();
        let State {
            peers, messages, ..
        } = &mut *st;
        let Some(p) = peers.get_mut(&s.peer) else {
            return refuse(ErrorCode::NotAuthenticated, "unknown session");
        };
        let limit = if limit == 0 { 1000 } else { limit.min(1000) } as usize;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (seq, pend) in p.queue.iter_mut() {
            if out.len() >= limit || (bytes >= PULL_BYTES && !out.is_empty()) {
                break;
            }
            if let Some(e) = messages.get(seq) {
                bytes += e.msg.sealed.ct.0.len();
                pend.pushed_on = s.conn_id;
                out.push(e.delivery());
            }
        }
        Ok(msg::Response::Pull { messages: out })
    }

    /// Messages waiting for this peer, by priority (pushed but unacknowledged included).
    fn unread(&self, s: &Session) -> Result<msg::Response, Refusal> {
        let st = self.lock();
        let Some(p) = st.peers.get(&s.peer) else {
            return refuse(ErrorCode::NotAuthenticated, "unknown session");
        };
        let (mut now, mut next, mut low) = (0u32, 0u32, 0u32);
        for seq in p.queue.keys() {
            match st.messages.get(seq).map(|e| e.msg.priority) {
                Some(Priority::Now) => now += 1,
                Some(Priority::Next) => next += 1,
                Some(Priority::Low) => low += 1,
                None => {}
            }
        }
        Ok(msg::Response::Unread { now, next, low })
    }

    /// Where each copy of a message this peer sent is: queued, delivered (written to a
    /// connection) or read (acknowledged).
    fn message_status(&self, s: &Session, msg_id: Id16) -> Result<msg::Response, Refusal> {
        let st = self.lock();
        let Some(sent) = st.sent_ids.get(&(s.peer, msg_id)) else {
            return refuse(
                ErrorCode::UnknownTarget,
                format!(
                    "no message {} sent by this session (or it is past retention)",
                    msg_id.hex()
                ),
            );
        };
        // Recipients by name: all of them when known, else those of copies still stored.
        let mut keys = sent.recipient_keys.as_slice().to_vec();
        if keys.is_empty() {
            for seq in sent.seqs.as_slice() {
                if let Some(e) = st.messages.get(seq) {
                    keys.extend_from_slice(&e.msg.recipients);
                }
            }
        }
        let mut recipients = Vec::with_capacity(keys.len());
        for pk in &keys {
            let p = st.peers.get(pk);
            let pending = p.and_then(|p| {
                p.by_msg
                    .get(&msg_id)
                    .filter(|seq| sent.seqs.as_slice().contains(seq))
                    .and_then(|seq| p.queue.get(seq))
            });
            let state = match pending {
                Some(pend) if pend.pushed_on != 0 => DeliveryState::Delivered,
                Some(_) => DeliveryState::Queued,
                None => DeliveryState::Read,
            };
            // A hidden recipient is not named to the sender (it is still counted).
            let (peer_pk, name) = match p {
                Some(p) if p.rec.visible => (*pk, p.rec.name.clone()),
                _ => (Key([0; 32]), "(hidden peer)".to_string()),
            };
            recipients.push(RecipientStatus {
                peer_pk,
                name,
                state,
            });
        }
        let read_unnamed = sent.recipients.saturating_sub(recipients.len() as u32);
        Ok(msg::Response::MessageStatus {
            msg_id,
            recipients,
            read_unnamed,
        })
    }

    fn set_status(&self, s: &Session, status: Status, r: Responder) {
        let mut st = self.lock();
        let Some(p) = st.peers.get_mut(&s.peer) else {
            return r.err(Refusal::new(ErrorCode::NotAuthenticated, "unknown session"));
        };
        p.rec.status = status;
        // Reply first so the client sees the answer before the deliveries it unlocked.
        r.ok(msg::Response::SetStatus {});
        push_eligible(&mut st, &s.peer);
    }
}

fn gate_allows(status: Status, pr: Priority) -> bool {
    match pr {
        Priority::Now => true,
        Priority::Next => status == Status::Idle,
        Priority::Low => false,
    }
}

/// Push one queued message if the peer has a push connection, its status allows it, and its
/// in-flight window has room.
pub(super) fn try_push(st: &mut State, peer: &Key, seq: u64) {
    let State {
        peers, messages, ..
    } = st;
    let Some(p) = peers.get_mut(peer) else { return };
    let Some(c) = p.push_conn.as_ref() else {
        return;
    };
    let Some(pend) = p.queue.get_mut(&seq) else {
        return;
    };
    let Some(e) = messages.get(&seq) else { return };
    if pend.pushed_on == c.id || !gate_allows(p.rec.status, e.msg.priority) {
        return;
    }
    if p.inflight >= MAX_INFLIGHT {
        p.backlog = true;
        return;
    }
    if send_on(c, e.frame(c.codec)) {
        pend.pushed_on = c.id;
        if !pend.inflight {
            pend.inflight = true;
            p.inflight += 1;
        }
    }
}

/// Push everything eligible, in order, until the in-flight window is full.
pub(super) fn push_eligible(st: &mut State, peer: &Key) {
    let State {
        peers, messages, ..
    } = st;
    let Some(p) = peers.get_mut(peer) else { return };
    let Some(c) = p.push_conn.clone() else { return };
    p.backlog = false;
    for (seq, pend) in p.queue.iter_mut() {
        if pend.pushed_on == c.id {
            continue;
        }
        let Some(e) = messages.get(seq) else { continue };
        if !gate_allows(p.rec.status, e.msg.priority) {
            continue;
        }
        if p.inflight >= MAX_INFLIGHT {
            p.backlog = true;
            return;
        }
        if !send_on(&c, e.frame(c.codec)) {
            return;
        }
        pend.pushed_on = c.id;
        if !pend.inflight {
            pend.inflight = true;
            p.inflight += 1;
        }
    }
}
