//! The wire protocol: every frame that crosses a WebSocket, and the two codecs.
//!
//! One serde enum per direction (`ClientFrame`, `ServerFrame`), externally tagged so the same
//! types work in JSON (`{"req": {...}}`) and postcard. A request travels in one envelope,
//! `Req { id, body }`, where `body` is a [`Request`] of one capability (`conn`, `msg`,
//! `peers`: one submodule each, holding that capability's request and response types); its
//! one answer is `Reply { id, body: Response }` or an `Error` with the same id. The codec is
//! chosen per connection by WebSocket subprotocol: [`SUBPROTOCOL_JSON`] (default, text
//! frames) or [`SUBPROTOCOL_BINARY`] (postcard, binary frames). Documented with examples in
//! docs/PROTOCOL.md; `tests/it/wire.rs` pins the postcard bytes of each frame.

pub mod admin;
mod bytes;
pub mod clock;
pub mod codec;
pub mod conn;
pub mod context;
pub mod examples;
pub mod json;
pub mod leases;
pub mod msg;
pub mod peers;
pub mod schedules;
pub mod state;
pub mod streams;
pub mod tasks;

pub use self::bytes::{Blob, Id16, Key, Sig};
pub use codec::{Codec, DecodeError};
pub use json::Json;
pub use msg::{DeliveryState, RecipientStatus};
pub use peers::{GroupRole, PeerInfo, Profile};

use serde::{Deserialize, Serialize};

/// Protocol version carried in `Hello.v`; a broker refuses versions it does not speak.
pub const PROTOCOL_VERSION: u32 = 2;
/// WebSocket subprotocol for JSON text frames (the default when none is requested).
pub const SUBPROTOCOL_JSON: &str = "claudemesh.v2.json";
/// WebSocket subprotocol for postcard binary frames. postcard is positional, so the name
/// changes whenever a wire type changes shape (v2: peers gained `profile` and `visible`;
/// v3: `member_name`, `gets_member_messages`, `terminal`; v4: the request envelope).
pub const SUBPROTOCOL_BINARY: &str = "claudemesh.v4.postcard";

/// Request id chosen by the client; echoed by the reply or error.
pub type ReqId = u64;

/// Recipient status, used to gate `next` deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Idle,
    Working,
    Dnd,
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "idle" => Ok(Status::Idle),
            "working" => Ok(Status::Working),
            "dnd" => Ok(Status::Dnd),
            _ => Err(format!(
                "unknown status '{s}' (expected idle, working or dnd)"
            )),
        }
    }
}

/// Delivery priority: `now` is pushed in any status, `next` when the recipient is idle,
/// `low` is pull-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Now,
    #[default]
    Next,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Now => "now",
            Priority::Next => "next",
            Priority::Low => "low",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "now" => Ok(Priority::Now),
            "next" => Ok(Priority::Next),
            "low" => Ok(Priority::Low),
            _ => Err(format!(
                "unknown priority '{s}' (expected now, next or low)"
            )),
        }
    }
}

/// Whom one sealed envelope is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// One peer, by its ed25519 peer key. The envelope is sealed to that peer.
    Peer(Key),
    /// Every member of a group (and of its sub-groups), sealed with the mesh key.
    Group(String),
    /// Every other peer in the mesh, sealed with the mesh key.
    Broadcast,
}

/// An end-to-end encrypted payload. The broker stores and forwards it, never opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// 24-byte XChaCha20 nonce.
    pub nonce: Blob,
    /// Ciphertext with the 16-byte Poly1305 tag.
    pub ct: Blob,
}

/// One target plus the payload sealed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub to: Target,
    pub sealed: Sealed,
}

/// First frame on every connection: who this peer is, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    pub mesh_id: Key,
    /// The enrolled member's ed25519 key.
    pub member_pk: Key,
    /// This session's ed25519 key (certified by the member).
    pub peer_pk: Key,
    /// This session's X25519 key, for DMs sealed to it.
    pub peer_xpk: Key,
    /// Member's signature over the peer keys (see `crypto::hello::cert_bytes`).
    pub cert: Sig,
    pub name: String,
    pub session_id: String,
    pub hostname: String,
    pub cwd: String,
    /// Whether the broker should push deliveries on this connection (CLI `send` says no).
    pub push: bool,
    pub status: Status,
    /// Milliseconds since the Unix epoch; must be within the broker's window.
    pub ts_ms: u64,
    /// Random; a (peer, nonce) pair is accepted once.
    pub nonce: Id16,
    /// Peer's signature over the hello (see `crypto::hello::hello_bytes`).
    pub sig: Sig,
}

/// One message handed to its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub msg_id: Id16,
    pub from: Key,
    pub from_xpk: Key,
    pub from_name: String,
    /// How it was addressed: the recipient's name (DM), `@group`, or `*`.
    pub to: String,
    pub target: Target,
    pub priority: Priority,
    pub reply_to: Option<Id16>,
    pub sealed: Sealed,
    pub sent_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A one-line system event (peer joined/left/returned, ...). Not end-to-end encrypted:
/// the broker produces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub peer: String,
    pub text: String,
    pub at_ms: u64,
}

/// Error codes, stable strings in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnsupportedVersion,
    NotAuthenticated,
    BadSignature,
    StaleHello,
    ReplayedHello,
    NotMember,
    NameTaken,
    UnknownTarget,
    TooLarge,
    RateLimited,
    BadRequest,
    InviteInvalid,
    InviteExpired,
    InviteUsedUp,
    UnknownMesh,
    /// This session connected again elsewhere; the older connection is closed.
    SessionReplaced,
    Storage,
    Internal,
    /// Generic outcomes for capabilities: the thing asked about does not exist, a
    /// conflicting change won, the caller's role does not allow it, a quota is used up,
    /// or the capability cannot serve right now.
    NotFound,
    Conflict,
    Forbidden,
    QuotaExceeded,
    Unavailable,
}

/// Frames a client sends.
// The hello is the big one and is sent once per connection; boxing it would change every
// construction site for nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame of every connection. Reply: `hello_ack`, or an `error` and a close.
    Hello(Hello),
    /// Confirm processed deliveries; they are removed from the queue. No reply.
    Ack { ids: Vec<Id16> },
    /// A request. Exactly one reply comes back with the same id: `reply` or `error`.
    Req(Req),
}

/// A request: the client's id, echoed by its one reply, and what is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Req {
    pub id: ReqId,
    pub body: Request,
}

/// Every request, grouped by capability: one line per capability. The reply to a request
/// of kind `<cap>.<kind>` is a [`Response`] of the same capability and kind.
#[allow(clippy::large_enum_variant)] // a send carries its envelopes inline, as it should
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Connection-level requests every broker answers.
    Conn(conn::Request),
    Msg(msg::Request),
    Peers(peers::Request),
    State(state::Request),
    Tasks(tasks::Request),
    Leases(leases::Request),
    Streams(streams::Request),
    Schedules(schedules::Request),
    Context(context::Request),
    Clock(clock::Request),
}

/// A successful answer, same capability and kind as its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Conn(conn::Response),
    Msg(msg::Response),
    Peers(peers::Response),
    State(state::Response),
    Tasks(tasks::Response),
    Leases(leases::Response),
    Streams(streams::Response),
    Schedules(schedules::Response),
    Context(context::Response),
    Clock(clock::Response),
}

impl Request {
    /// `<capability>.<kind>`, for logs and errors.
    pub fn kind(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        let Some((cap, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
            return "unknown".into();
        };
        match inner.as_object().and_then(|o| o.keys().next()) {
            Some(k) => format!("{cap}.{k}"),
            None => cap.clone(),
        }
    }
}

/// What one broker offers: every capability with its version, as `name/version`; sent in
/// `hello_ack.caps` so clients hide what a broker lacks.
pub const CAPS: &[&str] = &[
    conn::CAP,
    msg::CAP,
    peers::CAP,
    state::CAP,
    tasks::CAP,
    leases::CAP,
    streams::CAP,
    schedules::CAP,
    context::CAP,
    clock::CAP,
];

/// Frames the broker sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    HelloAck(HelloAck),
    /// The answer to request `id`.
    Reply {
        id: ReqId,
        body: Response,
    },
    Deliver(Delivery),
    Event(Event),
    /// A refused request (`id` set: that request's one reply) or a connection-level error
    /// (`id` null: hello refused, undecodable frame, session replaced, flooding).
    Error(WireError),
    /// An item of a subscription this connection asked for (a state watch, a stream
    /// subscription, ...).
    Feed(Feed),
}

/// One pushed item of subscription `sub` (the id the client chose when subscribing). `seq`
/// grows per subscription; a client resumes after a reconnect by subscribing again from
/// its last `seq + 1`, and drops any `seq` it has already seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub sub: u64,
    pub seq: u64,
    pub body: Push,
}

/// What a feed carries, by capability: one line per capability that has subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Push {
    State(state::Change),
    Streams(streams::Message),
}

/// Sent after a successful hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    pub peer_pk: Key,
    pub mesh_id: Key,
    pub mesh_name: String,
    pub name: String,
    pub server_version: String,
    pub max_message_bytes: u32,
    /// Messages waiting for this peer right now.
    pub queued: u32,
    /// The capabilities this broker offers, `name/version` (see [`CAPS`]).
    pub caps: Vec<String>,
}

/// An error: a stable code, a sentence for humans, and for `rate_limited` when to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    #[serde(default)]
    pub id: Option<ReqId>,
    pub code: ErrorCode,
    pub message: String,
    /// Milliseconds after which a retry can succeed (`rate_limited` only).
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl ServerFrame {
    pub fn error(id: Option<ReqId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(WireError {
            id,
            code,
            message: message.into(),
            retry_after_ms: None,
        })
    }

    /// The request this frame answers, if it is a reply.
    pub fn reply_id(&self) -> Option<ReqId> {
        match self {
            ServerFrame::Reply { id, .. } => Some(*id),
            ServerFrame::Error(e) => e.id,
            _ => None,
        }
    }
}

/// A member's role in a mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    #[default]
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(format!("unknown role '{s}' (expected member or admin)")),
        }
    }
}

/// Body of `POST /join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The signed part of the invite (`<payload>.<signature>`); never the secret part.
    pub invite: String,
    pub name: String,
    pub member_pk: Key,
    pub member_xpk: Key,
    /// The member's default peer (its CLI identity), so it can be addressed before it connects.
    pub peer_pk: Key,
    pub peer_xpk: Key,
    pub peer_cert: Sig,
    pub ts_ms: u64,
    /// Member's signature over the request (see `crypto::invite::join_bytes`).
    pub sig: Sig,
}

/// Successful `POST /join` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    pub mesh_id: Key,
    pub mesh_name: String,
    pub name: String,
    pub role: Role,
    /// True when this member key was already enrolled (joining twice is idempotent).
    pub already_member: bool,
}

/// Error body of any HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub error: String,
    pub message: String,
}

impl From<conn::Response> for Response {
    fn from(r: conn::Response) -> Self {
        Response::Conn(r)
    }
}
impl From<msg::Response> for Response {
    fn from(r: msg::Response) -> Self {
        Response::Msg(r)
    }
}
impl From<peers::Response> for Response {
    fn from(r: peers::Response) -> Self {
        Response::Peers(r)
    }
}
impl From<streams::Response> for Response {
    fn from(r: streams::Response) -> Self {
        Response::Streams(r)
    }
}
impl From<streams::Request> for Request {
    fn from(r: streams::Request) -> Self {
        Request::Streams(r)
    }
}
impl From<leases::Response> for Response {
    fn from(r: leases::Response) -> Self {
        Response::Leases(r)
    }
}
impl From<schedules::Response> for Response {
    fn from(r: schedules::Response) -> Self {
        Response::Schedules(r)
    }
}
impl From<clock::Response> for Response {
    fn from(r: clock::Response) -> Self {
        Response::Clock(r)
    }
}
impl From<clock::Request> for Request {
    fn from(r: clock::Request) -> Self {
        Request::Clock(r)
    }
}
impl From<context::Response> for Response {
    fn from(r: context::Response) -> Self {
        Response::Context(r)
    }
}
impl From<context::Request> for Request {
    fn from(r: context::Request) -> Self {
        Request::Context(r)
    }
}
impl From<schedules::Request> for Request {
    fn from(r: schedules::Request) -> Self {
        Request::Schedules(r)
    }
}
impl From<leases::Request> for Request {
    fn from(r: leases::Request) -> Self {
        Request::Leases(r)
    }
}
impl From<tasks::Response> for Response {
    fn from(r: tasks::Response) -> Self {
        Response::Tasks(r)
    }
}
impl From<tasks::Request> for Request {
    fn from(r: tasks::Request) -> Self {
        Request::Tasks(r)
    }
}
impl From<state::Response> for Response {
    fn from(r: state::Response) -> Self {
        Response::State(r)
    }
}
impl From<state::Request> for Request {
    fn from(r: state::Request) -> Self {
        Request::State(r)
    }
}
impl From<conn::Request> for Request {
    fn from(r: conn::Request) -> Self {
        Request::Conn(r)
    }
}
impl From<msg::Request> for Request {
    fn from(r: msg::Request) -> Self {
        Request::Msg(r)
    }
}
impl From<peers::Request> for Request {
    fn from(r: peers::Request) -> Self {
        Request::Peers(r)
    }
}
