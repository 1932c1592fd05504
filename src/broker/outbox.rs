//! The way out to a connection: its bounded queue of pre-encoded WebSocket messages
//! ([`ConnHandle`]), and the [`Responder`] that answers one request exactly once.
//!
//! Both the hub and the connection task use this module; neither imports the other for it.

use crate::proto::{Codec, ErrorCode, ReqId, Response, ServerFrame, WireError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;

/// The hub's handle on a live connection.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub codec: Codec,
    pub push: bool,
    tx: mpsc::Sender<Message>,
    kill: Arc<Notify>,
    last_rx: Arc<AtomicU64>,
}

impl ConnHandle {
    pub fn new(
        id: u64,
        codec: Codec,
        push: bool,
        tx: mpsc::Sender<Message>,
        kill: Arc<Notify>,
        last_rx: Arc<AtomicU64>,
    ) -> Self {
        ConnHandle {
            id,
            codec,
            push,
            tx,
            kill,
            last_rx,
        }
    }
    /// Queue a message without waiting; false when the queue is full or the socket is gone.
    pub fn try_send(&self, m: Message) -> bool {
        self.tx.try_send(m).is_ok()
    }
    /// Queue a message, waiting while the queue is full (subscription feeds: a slow reader
    /// slows its feed down instead of being disconnected); false when the socket is gone.
    pub async fn send_wait(&self, m: Message) -> bool {
        self.tx.send(m).await.is_ok()
    }
    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
    /// Ask the connection to close.
    pub fn kill(&self) {
        self.kill.notify_one();
    }
    /// When the last frame (of any kind) arrived, in ms since the epoch.
    pub fn last_rx(&self) -> u64 {
        self.last_rx.load(Ordering::Relaxed)
    }
}

/// Encode a frame as a WebSocket message for a connection's codec.
pub fn encode_msg(codec: Codec, f: &ServerFrame) -> Message {
    match codec {
        Codec::Json => Message::Text(serde_json::to_string(f).unwrap_or_default().into()),
        Codec::Binary => Message::Binary(codec.encode(f)),
    }
}

/// Queue a message on a connection. A full queue means a reader too slow to keep up: it is
/// disconnected (its messages stay queued durably for its next connection).
pub fn send_on(c: &ConnHandle, m: Message) -> bool {
    if c.try_send(m) {
        true
    } else if c.tx.is_closed() {
        false // the connection is gone; nothing to tell
    } else {
        tracing::warn!(
            conn = c.id,
            "outbound queue full or closed; disconnecting slow reader"
        );
        c.kill();
        false
    }
}

/// A refusal with a stable code (sent to clients as an error frame or HTTP error body).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// `Err(Refusal)` in one call.
pub fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(code, message))
}

/// The one answer to one request. Every handler receives one and consumes it with
/// [`ok`](Responder::ok), [`err`](Responder::err) or [`reply`](Responder::reply), now or
/// later (moved into a commit callback, parked behind another request). A responder
/// dropped unanswered — a handler bug — still answers, with `internal`, and logs it: no
/// request leaves its client waiting for a timeout.
pub struct Responder {
    conn: ConnHandle,
    id: ReqId,
    answered: bool,
}

impl Responder {
    pub fn new(conn: ConnHandle, id: ReqId) -> Self {
        Responder {
            conn,
            id,
            answered: false,
        }
    }

    /// The request id this responder answers.
    pub fn id(&self) -> ReqId {
        self.id
    }

    /// The connection the request came on.
    pub fn conn_id(&self) -> u64 {
        self.conn.id
    }

    /// The connection the request came on, for pushes outside this answer (a
    /// subscription's feed).
    pub fn conn(&self) -> ConnHandle {
        self.conn.clone()
    }

    pub fn ok(mut self, body: impl Into<Response>) {
        let f = ServerFrame::Reply {
            id: self.id,
            body: body.into(),
        };
        self.send(&f);
    }

    pub fn err(mut self, r: Refusal) {
        let f = ServerFrame::Error(WireError {
            id: Some(self.id),
            code: r.code,
            message: r.message,
            retry_after_ms: None,
        });
        self.send(&f);
    }

    /// Refused with a time after which a retry can succeed (rate limits).
    pub fn retry_after(mut self, code: ErrorCode, message: String, retry_after_ms: u64) {
        let f = ServerFrame::Error(WireError {
            id: Some(self.id),
            code,
            message,
            retry_after_ms: Some(retry_after_ms),
        });
        self.send(&f);
    }

    pub fn reply<T: Into<Response>>(self, r: Result<T, Refusal>) {
        match r {
            Ok(body) => self.ok(body),
            Err(e) => self.err(e),
        }
    }

    fn send(&mut self, f: &ServerFrame) {
        self.answered = true;
        send_on(&self.conn, encode_msg(self.conn.codec, f));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            tracing::error!(
                conn = self.conn.id,
                id = self.id,
                "a request was dropped without a reply (a broker bug); answering 'internal'"
            );
            let f = ServerFrame::error(
                Some(self.id),
                ErrorCode::Internal,
                "the broker failed to answer this request; retry, and report it if it repeats",
            );
            self.send(&f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (ConnHandle, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(8);
        let h = ConnHandle::new(
            1,
            Codec::Json,
            true,
            tx,
            Arc::new(Notify::new()),
            Arc::new(AtomicU64::new(0)),
        );
        (h, rx)
    }

    fn frame(m: Message) -> ServerFrame {
        Codec::Json.decode(m.into_data().as_ref()).unwrap()
    }

    #[test]
    fn a_responder_dropped_unanswered_still_sends_one_internal_error() {
        let (h, mut rx) = conn();
        drop(Responder::new(h, 9));
        match frame(rx.try_recv().unwrap()) {
            ServerFrame::Error(e) => {
                assert_eq!((e.id, e.code), (Some(9), ErrorCode::Internal));
            }
            f => panic!("{f:?}"),
        }
        assert!(rx.try_recv().is_err(), "exactly one reply");
    }

    #[test]
    fn an_answered_responder_sends_exactly_its_answer() {
        let (h, mut rx) = conn();
        Responder::new(h, 3).ok(crate::proto::conn::Response::Ping { server_time_ms: 5 });
        assert_eq!(frame(rx.try_recv().unwrap()).reply_id(), Some(3));
        assert!(rx.try_recv().is_err(), "exactly one reply");
    }
}
