//! The client library used by every client-side command and `claudemesh mcp`:
//! one connection per mesh, reconnect with backoff and jitter, request/response correlation,
//! end-to-end sealing and opening, acks, and at-least-once receive with dedupe by message id.
//!
//! A delivered message surfaces to the application once — through [`Client::recv`] or
//! [`Client::pull`] — even when the broker redelivers it after a reconnect. The application
//! calls [`Client::ack`] once it has processed it; only then does the broker drop it.

pub mod admin;
pub mod config;
pub mod enroll;
pub mod format;
pub mod http;
mod seen;
pub mod tls;

use crate::crypto::hello::{make_hello, HelloParams};
use crate::crypto::seal::{self, Plain};
use crate::crypto::{CryptoError, Identity};
use crate::proto::*;
use crate::util::now_ms;
pub use config::{Home, MeshConfig};
use futures_util::{SinkExt, StreamExt};
use seen::Seen;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("not connected to the broker ({0}); retrying in the background")]
    NotConnected(String),
    #[error("connection to the broker dropped before the reply")]
    Disconnected,
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the broker: {0}")]
    Unexpected(String),
    #[error("client is shut down")]
    Closed,
}

impl ClientError {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Who this client is and where it connects.
#[derive(Clone)]
pub struct ClientOptions {
    pub ws_url: String,
    pub mesh_id: Key,
    pub mesh_key: [u8; 32],
    pub member: Identity,
    pub peer: Identity,
    pub name: String,
    pub session_id: String,
    pub hostname: String,
    pub cwd: String,
    /// Ask the broker to push deliveries (false for one-shot `send`).
    pub push: bool,
    pub status: Status,
    pub codec: Codec,
    /// Persist seen message ids here so dedupe survives process restarts.
    pub seen_path: Option<PathBuf>,
    pub request_timeout: Duration,
}

impl ClientOptions {
    /// A one-shot connection for a session (CLI command, hook, probe): no pushes, 5 s
    /// request timeout.
    pub fn one_shot(home: &Home, mc: &MeshConfig, session_id: &str, name: &str) -> Self {
        ClientOptions {
            push: false,
            request_timeout: Duration::from_secs(5),
            ..Self::for_session(home, mc, session_id, name)
        }
    }

    /// Options for a joined mesh's session (`"cli"` is the member's default peer).
    pub fn for_session(home: &Home, mc: &MeshConfig, session_id: &str, name: &str) -> Self {
        ClientOptions {
            ws_url: mc.ws_url(),
            mesh_id: mc.mesh_id,
            mesh_key: mc.mesh_key.0,
            member: mc.member(),
            peer: mc.peer(session_id),
            name: name.to_string(),
            session_id: session_id.to_string(),
            hostname: hostname(),
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            push: true,
            status: Status::Idle,
            codec: Codec::Binary,
            seen_path: Some(home.seen_path(&mc.mesh_id, session_id)),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// This machine's host name, best effort.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// A message as the application sees it: opened, attributed, deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboxMessage {
    pub id: String,
    pub from: String,
    pub from_key: String,
    pub to: String,
    pub text: String,
    pub priority: Priority,
    pub sent_at: String,
    pub sent_at_ms: u64,
    pub reply_to: Option<String>,
    /// Set when the payload could not be opened (the text then explains why).
    pub undecryptable: bool,
    /// Set when the broker delivered it later for its sender (`schedules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<Scheduled>,
    #[serde(skip)]
    pub msg_id: Id16,
}

/// How a scheduled message came to be delivered when it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scheduled {
    /// The schedule's id (`cancel_scheduled` takes it).
    pub schedule_id: String,
    /// When it was due, and how much later the broker sent it (0 when on time, and on
    /// mesh time, whose lateness the wall cannot tell).
    pub due_at: String,
    pub due_at_ms: u64,
    pub late_ms: u64,
    pub recurring: bool,
    /// `due_at` is mesh time (the mesh's simulation clock).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mesh_time: bool,
}

/// What arrives without being asked for.
#[derive(Debug, Clone)]
pub enum Inbound {
    Message(InboxMessage),
    Event(Event),
    /// An item of one of this client's subscriptions ([`Client::subscribe`]), each `seq`
    /// once and in order, across reconnects.
    Feed(Feed),
}

/// Connection state, observable by callers.
#[derive(Debug, Clone)]
pub enum ConnState {
    /// Not connected; `failed_attempts` counts consecutive failed tries since the last success.
    Connecting {
        why: String,
        failed_attempts: u32,
    },
    Connected {
        name: String,
        mesh_name: String,
        max_message_bytes: u32,
    },
    /// The broker refused us for a reason retrying will not fix.
    Failed(ClientError),
    Closed,
}

/// How one message was addressed, before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A peer by name or hex peer key.
    Peer(String),
    Group(String),
    Broadcast,
}

impl Dest {
    /// `*`, `@group`, or a peer name/key.
    pub fn parse(s: &str) -> Dest {
        let s = s.trim();
        if s == "*" {
            Dest::Broadcast
        } else if let Some(g) = s.strip_prefix('@') {
            Dest::Group(g.to_string())
        } else {
            Dest::Peer(s.to_string())
        }
    }
    /// A comma-separated list.
    pub fn parse_list(s: &str) -> Vec<Dest> {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(Dest::parse)
            .collect()
    }
}

/// The broker's answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    pub msg_id: Id16,
    pub recipients: u32,
    pub duplicate: bool,
}

type Pending = HashMap<ReqId, oneshot::Sender<Result<ServerFrame, ClientError>>>;

struct Shared {
    opts: ClientOptions,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
    state: watch::Sender<ConnState>,
    seen: Mutex<Seen>,
    /// Cached DM pair keys (one X25519 per peer pair).
    keys: Mutex<seal::PairKeys>,
    inbound_tx: mpsc::UnboundedSender<Inbound>,
    /// The capabilities the broker offered in its last hello ack (`name/version`).
    caps: Mutex<Vec<String>>,
    /// Live subscriptions by sub id, renewed after every reconnect from where they were.
    subs: Mutex<HashMap<u64, Sub>>,
}

/// How to (re)subscribe: the request for (sub id, first sequence wanted), and the next
/// sequence this client expects (anything below it is a repeat and dropped; `None` until
/// the broker said where the subscription starts or an item came).
struct Sub {
    make: Arc<dyn Fn(u64, Option<u64>) -> Request + Send + Sync>,
    next: Option<u64>,
}

/// A live client. Dropping it closes the connection.
pub struct Client {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<ClientFrame>,
    inbound: tokio::sync::Mutex<mpsc::UnboundedReceiver<Inbound>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Start the connection task and wait for the outcome of the first attempt: connected,
    /// refused, or unreachable (an error now rather than silent retrying).
    pub async fn connect(opts: ClientOptions, wait: Duration) -> Result<Client, ClientError> {
        let c = Client::start(opts);
        c.settled(wait, true)
            .await
            .unwrap_or(Err(ClientError::Timeout(wait)))?;
        Ok(c)
    }

    /// Wait until the connection is up or can no longer come up (refused, closed, or — with
    /// `stop_on_failure` — one failed attempt). `None` when `wait` ran out first.
    async fn settled(
        &self,
        wait: Duration,
        stop_on_failure: bool,
    ) -> Option<Result<(), ClientError>> {
        let mut rx = self.shared.state.subscribe();
        tokio::time::timeout(wait, async {
            loop {
                match &*rx.borrow_and_update() {
                    ConnState::Connected { .. } => return Ok(()),
                    ConnState::Failed(e) => return Err(e.clone()),
                    ConnState::Closed => return Err(ClientError::Closed),
                    ConnState::Connecting {
                        why,
                        failed_attempts,
                    } if stop_on_failure && *failed_attempts > 0 => {
                        return Err(ClientError::NotConnected(why.clone()))
                    }
                    ConnState::Connecting { .. } => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        })
        .await
        .ok()
    }

    /// Start the connection task without waiting; it connects and reconnects in the background.
    pub fn start(opts: ClientOptions) -> Client {
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let seen = Seen::load(opts.seen_path.clone());
        let (state, _) = watch::channel(ConnState::Connecting {
            why: "starting".into(),
            failed_attempts: 0,
        });
        let keys = Mutex::new(seal::PairKeys::new(opts.peer.clone()));
        let shared = Arc::new(Shared {
            keys,
            opts,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            state,
            seen: Mutex::new(seen),
            inbound_tx,
            caps: Mutex::new(Vec::new()),
            subs: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(run(shared.clone(), out_rx));
        Client {
            shared,
            out: out_tx,
            inbound: tokio::sync::Mutex::new(inbound_rx),
            task,
        }
    }

    pub fn state(&self) -> ConnState {
        self.shared.state.borrow().clone()
    }

    /// The capabilities the broker offered when this client last connected
    /// (`name/version`, e.g. `peers/2`); empty before the first connection.
    pub fn caps(&self) -> Vec<String> {
        lock(&self.shared.caps).clone()
    }

    pub fn peer_key(&self) -> Key {
        self.shared.opts.peer.public()
    }

    pub async fn wait_connected(&self, wait: Duration) -> Result<(), ClientError> {
        match self.settled(wait, false).await {
            Some(r) => r,
            None => match &*self.shared.state.borrow() {
                ConnState::Connecting { why, .. } => Err(ClientError::NotConnected(why.clone())),
                _ => Err(ClientError::Timeout(wait)),
            },
        }
    }

    fn ensure_connected(&self) -> Result<(), ClientError> {
        match &*self.shared.state.borrow() {
            ConnState::Connected { .. } => Ok(()),
            ConnState::Connecting { why, .. } => Err(ClientError::NotConnected(why.clone())),
            ConnState::Failed(e) => Err(e.clone()),
            ConnState::Closed => Err(ClientError::Closed),
        }
    }

    /// Send a request and wait for its one reply; `pick` takes the expected response out of
    /// it (anything else is `Unexpected`, handled here once for every call).
    ///
    /// Fails fast with `NotConnected` when the broker is unreachable right now. When the
    /// connection drops mid-request, the request is retried (with a fresh id) after the
    /// reconnect until `request_timeout`; every request is idempotent (sends carry their
    /// message id, which the broker dedupes). A `rate_limited` answer is retried after the
    /// broker's retry-after, inside the same deadline.
    pub async fn call<T>(
        &self,
        req: impl Into<Request>,
        pick: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, ClientError> {
        let body = self.request(req.into()).await?;
        pick(body).map_err(|other| ClientError::Unexpected(format!("{other:?}")))
    }

    async fn request(&self, req: Request) -> Result<Response, ClientError> {
        self.ensure_connected()?;
        let t = self.shared.opts.request_timeout;
        let deadline = tokio::time::Instant::now() + t;
        let mut delay = Duration::from_millis(50);
        loop {
            let r = self.request_once(&req, deadline).await;
            let now = tokio::time::Instant::now();
            match r {
                Err(ClientError::Disconnected | ClientError::NotConnected(_)) if now < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    let _ = self
                        .wait_connected(deadline.saturating_duration_since(now))
                        .await;
                }
                Err(ClientError::Disconnected | ClientError::NotConnected(_)) => {
                    return Err(ClientError::Timeout(t))
                }
                Ok(ServerFrame::Reply { body, .. }) => return Ok(body),
                Ok(ServerFrame::Error(e)) => {
                    let wait = e.retry_after_ms.map(Duration::from_millis);
                    match wait {
                        Some(w) if e.code == ErrorCode::RateLimited && now + w < deadline => {
                            tokio::time::sleep(w).await
                        }
                        _ => {
                            return Err(ClientError::Refused {
                                code: e.code,
                                message: e.message,
                            })
                        }
                    }
                }
                Ok(f) => return Err(ClientError::Unexpected(format!("{f:?}"))),
                Err(e) => return Err(e),
            }
        }
    }

    async fn request_once(
        &self,
        req: &Request,
        deadline: tokio::time::Instant,
    ) -> Result<ServerFrame, ClientError> {
        self.ensure_connected()?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        let frame = ClientFrame::Req(Req {
            id,
            body: req.clone(),
        });
        if self.out.send(frame).is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(ClientError::Closed);
        }
        let r = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => Err(ClientError::Timeout(self.shared.opts.request_timeout)),
        };
        lock(&self.shared.pending).remove(&id);
        r
    }

    pub async fn set_status(&self, status: Status) -> Result<(), ClientError> {
        self.call(msg::Request::SetStatus { status }, |r| match r {
            Response::Msg(msg::Response::SetStatus {}) => Ok(()),
            r => Err(r),
        })
        .await
    }

    /// Messages waiting for this peer at the broker: `(now, next, low)`.
    pub async fn unread(&self) -> Result<(u32, u32, u32), ClientError> {
        self.call(msg::Request::Unread {}, |r| match r {
            Response::Msg(msg::Response::Unread { now, next, low }) => Ok((now, next, low)),
            r => Err(r),
        })
        .await
    }

    /// Per-recipient state of a message this peer sent: `(recipients, read_unnamed)`.
    pub async fn message_status(
        &self,
        msg_id: Id16,
    ) -> Result<(Vec<RecipientStatus>, u32), ClientError> {
        self.call(msg::Request::MessageStatus { msg_id }, |r| match r {
            Response::Msg(msg::Response::MessageStatus {
                recipients,
                read_unnamed,
                ..
            }) => Ok((recipients, read_unnamed)),
            r => Err(r),
        })
        .await
    }

    /// Round-trip time of a ping.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let t = std::time::Instant::now();
        self.call(conn::Request::Ping {}, |r| match r {
            Response::Conn(conn::Response::Ping { .. }) => Ok(()),
            r => Err(r),
        })
        .await?;
        Ok(t.elapsed())
    }

    /// Queued deliveries, as the broker has them.
    async fn pull_raw(&self) -> Result<Vec<Delivery>, ClientError> {
        self.call(msg::Request::Pull { limit: 1000 }, |r| match r {
            Response::Msg(msg::Response::Pull { messages }) => Ok(messages),
            r => Err(r),
        })
        .await
    }

    /// Resolve, seal and send one message to one or more destinations.
    pub async fn send(
        &self,
        dests: &[Dest],
        text: &str,
        priority: Priority,
        reply_to: Option<Id16>,
    ) -> Result<SendReceipt, ClientError> {
        if dests.is_empty() {
            return Err(ClientError::Refused {
                code: ErrorCode::BadRequest,
                message: "no target given".into(),
            });
        }
        self.ensure_connected()?;
        let names: Vec<String> = dests
            .iter()
            .filter_map(|d| match d {
                Dest::Peer(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let peers = if names.is_empty() {
            vec![]
        } else {
            self.resolve(&names).await?
        };
        self.send_resolved(dests, &peers, text, priority, reply_to)
            .await
    }

    /// Seal and send to destinations whose peers were already resolved (`peers` holds the
    /// `PeerInfo` for each `Dest::Peer`, in order). Retries on disconnect with the same
    /// message id, so a send is stored once even when an ack is lost.
    pub async fn send_resolved(
        &self,
        dests: &[Dest],
        peers: &[PeerInfo],
        text: &str,
        priority: Priority,
        reply_to: Option<Id16>,
    ) -> Result<SendReceipt, ClientError> {
        let msg_id = Id16::random();
        let plain = Plain {
            text: text.to_string(),
            sent_at_ms: now_ms(),
            schedule: None,
        };
        if let ConnState::Connected {
            max_message_bytes, ..
        } = &*self.shared.state.borrow()
        {
            let size = seal::plain_len(&plain);
            if size > *max_message_bytes as usize {
                return Err(ClientError::Refused {
                    code: ErrorCode::TooLarge,
                    message: format!(
                        "message is {size} bytes; the limit is {max_message_bytes} bytes"
                    ),
                });
            }
        }
        let envelopes = self.seal_for(dests, peers, &msg_id, &plain)?;
        let send = msg::Request::Send {
            msg_id,
            priority,
            reply_to,
            envelopes,
        };
        self.call(send, |r| match r {
            Response::Msg(msg::Response::Send {
                msg_id,
                recipients,
                duplicate,
            }) => Ok(SendReceipt {
                msg_id,
                recipients,
                duplicate,
            }),
            r => Err(r),
        })
        .await
    }

    /// Seal `plain` under `msg_id` once per destination: a DM per peer (`peers` holds the
    /// `PeerInfo` of each `Dest::Peer`, in order), the mesh key for groups and broadcast.
    pub fn seal_for(
        &self,
        dests: &[Dest],
        peers: &[PeerInfo],
        msg_id: &Id16,
        plain: &Plain,
    ) -> Result<Vec<Envelope>, ClientError> {
        let me = self.shared.opts.peer.public();
        let mut peer_iter = peers.iter();
        let mut envelopes = Vec::with_capacity(dests.len());
        for d in dests {
            let (to, sealed) = match d {
                Dest::Peer(_) => {
                    let p = peer_iter
                        .next()
                        .ok_or_else(|| ClientError::Unexpected("peer not resolved".into()))?;
                    (
                        Target::Peer(p.peer_pk),
                        lock(&self.shared.keys).seal_dm(&p.peer_pk, &p.peer_xpk, msg_id, plain),
                    )
                }
                Dest::Group(g) => {
                    let t = Target::Group(g.clone());
                    let s = seal::seal_group(&self.shared.opts.mesh_key, &me, &t, msg_id, plain);
                    (t, s)
                }
                Dest::Broadcast => {
                    let t = Target::Broadcast;
                    let s = seal::seal_group(&self.shared.opts.mesh_key, &me, &t, msg_id, plain);
                    (t, s)
                }
            };
            envelopes.push(Envelope { to, sealed });
        }
        Ok(envelopes)
    }

    /// Seal `plain` under `msg_id` as a DM from this session to itself.
    pub fn seal_to_self(&self, msg_id: &Id16, plain: &Plain) -> Sealed {
        let me = &self.shared.opts.peer;
        lock(&self.shared.keys).seal_dm(&me.public(), &me.x_public(), msg_id, plain)
    }

    /// Open what [`seal_to_self`](Self::seal_to_self) sealed.
    pub fn open_from_self(&self, msg_id: &Id16, sealed: &Sealed) -> Result<Plain, CryptoError> {
        let me = &self.shared.opts.peer;
        lock(&self.shared.keys).open_dm(&me.public(), &me.x_public(), msg_id, sealed)
    }

    /// Fetch every queued message (`low` included) not yet handed to the application.
    pub async fn pull(&self) -> Result<Vec<InboxMessage>, ClientError> {
        let msgs = self.pull_raw().await?;
        let mut out = Vec::new();
        let mut reack = Vec::new();
        for d in msgs {
            match accept_delivery(&self.shared, d) {
                Accept::New(m) => out.push(*m),
                Accept::Reack(id) => reack.push(id),
                Accept::Skip => {}
            }
        }
        if !reack.is_empty() {
            let _ = self.out.send(ClientFrame::Ack { ids: reack });
        }
        Ok(out)
    }

    /// Every queued message not yet acknowledged by this client, including ones already
    /// pushed to it but not acked (the broker is the judge of what is still unread: a
    /// message another process showed and acked is not returned).
    pub async fn pull_all(&self) -> Result<Vec<InboxMessage>, ClientError> {
        let msgs = self.pull_raw().await?;
        let mut out = Vec::new();
        for d in msgs {
            if lock(&self.shared.seen).state(&d.msg_id) == Some(true) {
                let _ = self.out.send(ClientFrame::Ack {
                    ids: vec![d.msg_id],
                });
                continue;
            }
            lock(&self.shared.seen).forget(&d.msg_id);
            if let Accept::New(m) = accept_delivery(&self.shared, d) {
                out.push(*m);
            }
        }
        Ok(out)
    }

    /// Wait for the next pushed message or event (`None` once the client is closed).
    pub async fn recv(&self) -> Option<Inbound> {
        self.inbound.lock().await.recv().await
    }

    /// Take whatever pushed messages and events are already waiting.
    pub async fn drain(&self) -> Vec<Inbound> {
        let mut rx = self.inbound.lock().await;
        let mut v = Vec::new();
        while let Ok(x) = rx.try_recv() {
            v.push(x);
        }
        v
    }

    /// Mark messages processed: the broker drops them and they are never surfaced again.
    pub fn ack(&self, ids: &[Id16]) {
        if ids.is_empty() {
            return;
        }
        lock(&self.shared.seen).mark_acked(ids);
        let _ = self.out.send(ClientFrame::Ack { ids: ids.to_vec() });
    }

    /// Subscribe: `make(sub, from)` is the capability's subscribe request for sub id `sub`
    /// starting at sequence `from` (`None`: from now on); `pick` takes the answer apart
    /// into what the caller wants and the first sequence the broker will push. The
    /// subscription is renewed after each reconnect from the sequence after the last one
    /// received, and its items arrive as [`Inbound::Feed`]. Returns the sub id.
    pub async fn subscribe<T>(
        &self,
        make: impl Fn(u64, Option<u64>) -> Request + Send + Sync + 'static,
        from: Option<u64>,
        pick: impl FnOnce(Response) -> Result<(T, u64), Response>,
    ) -> Result<(u64, T), ClientError> {
        let sub = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let make: Arc<dyn Fn(u64, Option<u64>) -> Request + Send + Sync> = Arc::new(make);
        let req = make(sub, from);
        lock(&self.shared.subs).insert(sub, Sub { make, next: from });
        match self.call(req, pick).await {
            Ok((t, next)) => {
                if let Some(s) = lock(&self.shared.subs).get_mut(&sub) {
                    s.next = Some(s.next.map_or(next, |n| n.max(next)));
                }
                Ok((sub, t))
            }
            Err(e) => {
                lock(&self.shared.subs).remove(&sub);
                Err(e)
            }
        }
    }

    /// Forget subscription `sub` here (nothing more of it is passed on, it is not renewed);
    /// the caller tells the broker with its capability's unsubscribe request. False when
    /// there was none.
    pub fn forget_subscription(&self, sub: u64) -> bool {
        lock(&self.shared.subs).remove(&sub).is_some()
    }

    /// The next sequence expected on subscription `sub`.
    pub fn subscription_next(&self, sub: u64) -> Option<u64> {
        lock(&self.shared.subs).get(&sub).and_then(|s| s.next)
    }

    /// Close the connection and stop reconnecting.
    pub async fn close(self) {
        self.shared.state.send_replace(ConnState::Closed);
        self.task.abort();
    }
}

/// What to do with one delivery.
enum Accept {
    New(Box<InboxMessage>),
    /// Already processed: its ack was lost; repeat the ack.
    Reack(Id16),
    /// Already handed to the application and not yet acked.
    Skip,
}

/// Dedupe, open and attribute one delivery.
fn accept_delivery(sh: &Shared, d: Delivery) -> Accept {
    {
        let mut seen = lock(&sh.seen);
        match seen.state(&d.msg_id) {
            Some(true) => return Accept::Reack(d.msg_id),
            Some(false) => return Accept::Skip,
            None => seen.mark_surfaced(d.msg_id),
        }
    }
    let open = |id: &Id16| match &d.target {
        Target::Peer(_) => lock(&sh.keys).open_dm(&d.from, &d.from_xpk, id, &d.sealed),
        t => seal::open_group(&sh.opts.mesh_key, &d.from, t, id, &d.sealed),
    };
    let mut opened = open(&d.msg_id);
    // A recurring schedule's firing comes under `id[..12] ‖ due minute`, sealed once under
    // the schedule's id (last four bytes zero); accepted only when the sealed payload
    // itself says it recurs, under that id.
    let base = schedule_base(&d.msg_id);
    if opened.is_err() && base != d.msg_id {
        if let Ok(p) = open(&base) {
            if p.schedule
                .as_ref()
                .is_some_and(|x| x.recurring && x.id == base)
            {
                opened = Ok(p);
            }
        }
    }
    // The timestamp inside the sealed payload is the sender's own, not the broker's.
    let (text, undecryptable, sent_at_ms, scheduled) = match opened {
        Ok(p) => {
            let scheduled = p.schedule.as_ref().map(|x| {
                let due = match x.due_at_ms {
                    Some(t) if !x.recurring => t,
                    _ => u64::from(u32::from_be_bytes(minute_of(&d.msg_id))) * 60_000,
                };
                Scheduled {
                    schedule_id: x.id.hex(),
                    due_at: crate::util::rfc3339(due),
                    due_at_ms: due,
                    late_ms: if x.mesh_time {
                        0
                    } else {
                        d.sent_at_ms.saturating_sub(due)
                    },
                    recurring: x.recurring,
                    mesh_time: x.mesh_time,
                }
            });
            // A scheduled message was "sent" when the broker sent it, not when it was made.
            let at = if scheduled.is_some() {
                d.sent_at_ms
            } else {
                p.sent_at_ms
            };
            (p.text, false, at, scheduled)
        }
        Err(e) => (
            format!("[could not open this message: {e}]"),
            true,
            d.sent_at_ms,
            None,
        ),
    };
    Accept::New(Box::new(InboxMessage {
        id: d.msg_id.hex(),
        from: d.from_name,
        from_key: d.from.hex(),
        to: d.to,
        text,
        priority: d.priority,
        sent_at: crate::util::rfc3339(sent_at_ms),
        sent_at_ms,
        reply_to: d.reply_to.map(|r| r.hex()),
        undecryptable,
        scheduled,
        msg_id: d.msg_id,
    }))
}

/// The last four bytes of a message id: a recurring firing's due minute.
fn minute_of(id: &Id16) -> [u8; 4] {
    [id.0[12], id.0[13], id.0[14], id.0[15]]
}

/// The id a recurring firing's payload is sealed under: its own with the minute zeroed.
fn schedule_base(id: &Id16) -> Id16 {
    let mut b = id.0;
    b[12..].copy_from_slice(&[0; 4]);
    Id16(b)
}

fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    // Full jitter in [base/2, base].
    let j = crate::util::random_u64() % (base / 2 + 1);
    Duration::from_millis(base / 2 + j)
}

fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotMember
            | ErrorCode::NameTaken
            | ErrorCode::UnsupportedVersion
            | ErrorCode::BadSignature
            | ErrorCode::BadRequest
            | ErrorCode::SessionReplaced
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect and say hello. Returns the socket, the hello ack and the encoding the broker
/// picked (binary is offered with JSON as the fallback, so a broker of another release that
/// does not know this binary encoding still talks JSON with us).
async fn connect_once(sh: &Shared) -> Result<(Ws, HelloAck, Codec), ClientError> {
    let o = &sh.opts;
    let mut req = o
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::Refused {
            code: ErrorCode::BadRequest,
            message: format!("bad broker URL: {e}"),
        })?;
    let offer = match o.codec {
        Codec::Binary => OFFER_BINARY,
        Codec::Json => SUBPROTOCOL_JSON,
    };
    req.headers_mut()
        .insert("sec-websocket-protocol", http_header(offer));
    // The broker is trusted to size its replies sensibly (a large `peers` or `messages` reply).
    let cfg = crate::util::ws_config(64 * 1024 * 1024);
    let connector = if o.ws_url.starts_with("wss://") {
        let tls = tls::client_config().map_err(|e| ClientError::NotConnected(e.to_string()))?;
        Some(tokio_tungstenite::Connector::Rustls(tls))
    } else {
        None
    };
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(req, Some(cfg), true, connector);
    let (mut ws, resp) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| ClientError::NotConnected(format!("timed out connecting to {}", o.ws_url)))?
        .map_err(|e| ClientError::NotConnected(format!("cannot reach {}: {e}", o.ws_url)))?;
    let picked = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let codec = if picked == SUBPROTOCOL_BINARY {
        Codec::Binary
    } else {
        Codec::Json
    };
    let hello = make_hello(
        &o.member,
        &o.peer,
        &HelloParams {
            mesh_id: o.mesh_id,
            name: &o.name,
            session_id: &o.session_id,
            hostname: &o.hostname,
            cwd: &o.cwd,
            push: o.push,
            status: o.status,
        },
        now_ms(),
    );
    ws.send(encode(codec, &ClientFrame::Hello(hello)))
        .await
        .map_err(|e| ClientError::NotConnected(e.to_string()))?;
    let first = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .map_err(|_| ClientError::NotConnected("broker did not answer the hello".into()))?;
    let frame = match first {
        Some(Ok(WsMessage::Text(t))) => decode(codec, t.as_bytes()),
        Some(Ok(WsMessage::Binary(b))) => decode(codec, &b),
        Some(Ok(other)) => {
            return Err(ClientError::NotConnected(format!(
                "unexpected {other:?} before hello ack"
            )))
        }
        Some(Err(e)) => return Err(ClientError::NotConnected(e.to_string())),
        None => {
            return Err(ClientError::NotConnected(
                "broker closed the connection during hello".into(),
            ))
        }
    }?;
    match frame {
        ServerFrame::Error(e) => Err(ClientError::Refused {
            code: e.code,
            message: e.message,
        }),
        ServerFrame::HelloAck(ack) => Ok((ws, ack, codec)),
        f => Err(ClientError::Unexpected(format!(
            "expected hello_ack, got {f:?}"
        ))),
    }
}

/// What a binary client offers: this release's binary encoding (`SUBPROTOCOL_BINARY`),
/// else JSON.
const OFFER_BINARY: &str = "claudemesh.v4.postcard, claudemesh.v2.json";

fn http_header(s: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(s)
}

fn encode(codec: Codec, f: &ClientFrame) -> WsMessage {
    match codec {
        Codec::Json => WsMessage::Text(serde_json::to_string(f).unwrap_or_default().into()),
        Codec::Binary => WsMessage::Binary(codec.encode(f)),
    }
}

fn decode(codec: Codec, b: &[u8]) -> Result<ServerFrame, ClientError> {
    codec
        .decode(b)
        .map_err(|e| ClientError::Unexpected(format!("undecodable frame from broker: {e}")))
}

/// The connection task: connect, hello, pump frames, reconnect.
async fn run(sh: Arc<Shared>, mut out_rx: mpsc::UnboundedReceiver<ClientFrame>) {
    let mut attempt = 0u32;
    loop {
        if matches!(&*sh.state.borrow(), ConnState::Closed) {
            return;
        }
        let (mut ws, ack, codec) = match connect_once(&sh).await {
            Ok(x) => x,
            Err(ClientError::Refused { code, message }) if is_fatal(code) => {
                sh.state
                    .send_replace(ConnState::Failed(ClientError::Refused { code, message }));
                fail_pending(&sh, None);
                return;
            }
            Err(e) => {
                let why = e.to_string();
                tracing::debug!(error = %why, attempt, "connect failed");
                sh.state.send_replace(ConnState::Connecting {
                    why,
                    failed_attempts: attempt + 1,
                });
                fail_pending(&sh, None);
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        attempt = 0;
        *lock(&sh.caps) = ack.caps;
        sh.state.send_replace(ConnState::Connected {
            name: ack.name,
            mesh_name: ack.mesh_name,
            max_message_bytes: ack.max_message_bytes,
        });
        let mut written: HashSet<ReqId> = HashSet::new();
        // Subscriptions resume where they were, before anything else is sent (their
        // replies have no waiter; a refusal is logged). One whose first answer has not come yet is left to its
        // own request, which is retried after the reconnect.
        let renew: Vec<ClientFrame> = lock(&sh.subs)
            .iter()
            .filter_map(|(sub, s)| {
                let next = s.next?;
                Some(ClientFrame::Req(Req {
                    id: sh.next_id.fetch_add(1, Ordering::Relaxed),
                    body: (s.make)(*sub, Some(next)),
                }))
            })
            .collect();
        let mut renewed = true;
        for f in renew {
            if ws.feed(encode(codec, &f)).await.is_err() {
                renewed = false;
                break;
            }
        }
        if renewed && ws.flush().await.is_err() {
            renewed = false;
        }
        if !renewed {
            sh.state.send_replace(ConnState::Connecting {
                why: "write failed".into(),
                failed_attempts: 0,
            });
            tokio::time::sleep(backoff(0)).await;
            continue;
        }
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        ping.tick().await;
        let mut last_rx = tokio::time::Instant::now();
        let mut redelivery_acks: Vec<Id16> = Vec::new();
        let why = loop {
            if !redelivery_acks.is_empty() {
                let ids = std::mem::take(&mut redelivery_acks);
                if ws
                    .send(encode(codec, &ClientFrame::Ack { ids }))
                    .await
                    .is_err()
                {
                    break "write failed".to_string();
                }
            }
            tokio::select! {
                m = ws.next() => {
                    last_rx = tokio::time::Instant::now();
                    let data = match m {
                        Some(Ok(WsMessage::Text(t))) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                        Some(Ok(WsMessage::Binary(b))) => b,
                        Some(Ok(WsMessage::Close(c))) => break format!("broker closed the connection ({c:?})"),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => break e.to_string(),
                        None => break "connection closed".to_string(),
                    };
                    let f = match decode(codec, &data) {
                        Ok(f) => f,
                        Err(e) => { tracing::warn!(error = %e, "ignoring frame"); continue; }
                    };
                    on_frame(&sh, f, &mut redelivery_acks, &mut written);
                }
                f = out_rx.recv() => {
                    let Some(f) = f else { return };
                    // Write everything already queued, then flush once.
                    let mut next = Some(f);
                    let mut failed = None;
                    while let Some(f) = next.take() {
                        if let ClientFrame::Req(Req { id, .. }) = &f {
                            let id = *id;
                            // A request failed over (and retried under a new id) while its
                            // frame waited here must not go out too.
                            if !lock(&sh.pending).contains_key(&id) {
                                next = out_rx.try_recv().ok();
                                continue;
                            }
                            written.insert(id);
                        }
                        if let Err(e) = ws.feed(encode(codec, &f)).await {
                            failed = Some(e.to_string());
                            break;
                        }
                        next = out_rx.try_recv().ok();
                    }
                    if let Some(e) = failed {
                        break e;
                    }
                    if let Err(e) = ws.flush().await {
                        break e.to_string();
                    }
                }
                _ = ping.tick() => {
                    if last_rx.elapsed() > Duration::from_secs(60) {
                        break "broker stopped answering".to_string();
                    }
                    if ws.send(WsMessage::Ping(Default::default())).await.is_err() {
                        break "write failed".to_string();
                    }
                }
            }
        };
        if matches!(
            &*sh.state.borrow(),
            ConnState::Failed(_) | ConnState::Closed
        ) {
            fail_pending(&sh, None);
            return;
        }
        tracing::debug!(reason = %why, "disconnected; reconnecting");
        sh.state.send_replace(ConnState::Connecting {
            why,
            failed_attempts: 0,
        });
        fail_pending(&sh, Some(&written));
        tokio::time::sleep(backoff(0)).await;
    }
}

/// Fail requests whose frames were written to a connection that died (all, when `written`
/// is `None`), so callers can retry.
fn fail_pending(sh: &Shared, written: Option<&HashSet<ReqId>>) {
    let mut p = lock(&sh.pending);
    let ids: Vec<ReqId> = match written {
        Some(w) => p.keys().filter(|k| w.contains(k)).copied().collect(),
        None => p.keys().copied().collect(),
    };
    for id in ids {
        if let Some(tx) = p.remove(&id) {
            let _ = tx.send(Err(ClientError::Disconnected));
        }
    }
}

fn on_frame(sh: &Shared, f: ServerFrame, acks: &mut Vec<Id16>, written: &mut HashSet<ReqId>) {
    if let Some(id) = f.reply_id() {
        written.remove(&id);
        let waiter = lock(&sh.pending).remove(&id);
        match (waiter, f) {
            (Some(tx), f) => {
                let _ = tx.send(Ok(f));
            }
            // A renewed subscription refused (nobody waits for its answer).
            (None, ServerFrame::Error(e)) => {
                tracing::warn!(code = ?e.code, message = %e.message, "a request nobody waits for any more (a renewed subscription, a timed-out call) was refused");
            }
            (None, _) => {}
        }
        return;
    }
    match f {
        ServerFrame::Deliver(d) => match accept_delivery(sh, d) {
            Accept::New(m) => {
                let _ = sh.inbound_tx.send(Inbound::Message(*m));
            }
            Accept::Reack(id) => acks.push(id),
            Accept::Skip => {}
        },
        ServerFrame::Event(e) => {
            let _ = sh.inbound_tx.send(Inbound::Event(e));
        }
        ServerFrame::Feed(f) => {
            let fresh = match lock(&sh.subs).get_mut(&f.sub) {
                Some(s) if s.next.is_none_or(|n| f.seq >= n) => {
                    s.next = Some(f.seq + 1);
                    true
                }
                _ => false,
            };
            if fresh {
                let _ = sh.inbound_tx.send(Inbound::Feed(f));
            }
        }
        ServerFrame::Error(e) if e.code == ErrorCode::SessionReplaced => {
            // Another process took over this session: stop instead of fighting over it.
            sh.state
                .send_replace(ConnState::Failed(ClientError::Refused {
                    code: e.code,
                    message: e.message,
                }));
        }
        ServerFrame::Error(e) => {
            tracing::warn!(code = ?e.code, message = %e.message, "broker error");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_client_offers_this_releases_encoding_then_json() {
        let offers: Vec<&str> = OFFER_BINARY.split(',').map(str::trim).collect();
        assert_eq!(offers, [SUBPROTOCOL_BINARY, SUBPROTOCOL_JSON]);
    }
}
