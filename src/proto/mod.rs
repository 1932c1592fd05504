//! The wire protocol: every frame that crosses a WebSocket, and the two codecs.
//!
//! One serde enum per direction (`ClientFrame`, `ServerFrame`), externally tagged so the same
//! types work in JSON (`{"send": {...}}`) and postcard. The codec is chosen per connection by
//! WebSocket subprotocol: [`SUBPROTOCOL_JSON`] (default, text frames) or [`SUBPROTOCOL_BINARY`]
//! (postcard, binary frames). Documented with examples in docs/PROTOCOL.md.

mod bytes;
pub mod codec;

pub use self::bytes::{Blob, Id16, Key, Sig};
pub use codec::{Codec, DecodeError};

use serde::{Deserialize, Serialize};

/// Protocol version carried in `Hello.v`; a broker refuses versions it does not speak.
pub const PROTOCOL_VERSION: u32 = 1;
/// WebSocket subprotocol for JSON text frames (the default when none is requested).
pub const SUBPROTOCOL_JSON: &str = "claudemesh.v1.json";
/// WebSocket subprotocol for postcard binary frames. postcard is positional, so the name
/// changes whenever a wire type changes shape (v2: peers gained `profile` and `visible`;
/// v3: `member_name`, `gets_member_messages`, `terminal`).
pub const SUBPROTOCOL_BINARY: &str = "claudemesh.v3.postcard";

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

/// Frames a client sends.
// The hello is the big one and is sent once per connection; boxing it would change every
// construction site for nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    /// Send one message (same id) to one or more targets. Reply: `accepted` after commit.
    Send {
        id: ReqId,
        msg_id: Id16,
        priority: Priority,
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
    },
    /// Confirm processed deliveries; they are removed from the queue. No reply.
    Ack {
        ids: Vec<Id16>,
    },
    /// Fetch every queued message, `low` included. Reply: `messages`.
    Pull {
        id: ReqId,
        limit: u32,
    },
    SetStatus {
        id: ReqId,
        status: Status,
    },
    SetSummary {
        id: ReqId,
        summary: String,
    },
    /// Reply: `peers` (online and offline peers of the mesh, hidden ones excluded).
    ListPeers {
        id: ReqId,
    },
    /// Look peers up by name or hex key, offline ones included. Reply: `peers`.
    Resolve {
        id: ReqId,
        names: Vec<String>,
    },
    JoinGroup {
        id: ReqId,
        group: String,
        role: String,
    },
    LeaveGroup {
        id: ReqId,
        group: String,
    },
    Ping {
        id: ReqId,
    },
    /// Replace this peer's profile. Reply: `ok`.
    SetProfile {
        id: ReqId,
        profile: Profile,
    },
    /// Hidden peers are left out of peer lists, broadcasts and presence events; they still
    /// get DMs and group messages. Reply: `ok`.
    SetVisible {
        id: ReqId,
        visible: bool,
    },
    /// How many messages wait for this peer, by priority. Reply: `unread`.
    Unread {
        id: ReqId,
    },
    /// Per-recipient state of a message this peer sent. Reply: `message_status`.
    MessageStatus {
        id: ReqId,
        msg_id: Id16,
    },
}

/// What a peer says about itself beyond its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Profile {
    /// A short avatar: an emoji or a few characters.
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub bio: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Profile {
    pub fn is_empty(&self) -> bool {
        self.avatar.is_empty()
            && self.title.is_empty()
            && self.bio.is_empty()
            && self.capabilities.is_empty()
    }
}

/// Where one copy of a sent message is for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored, waiting for the recipient (offline, busy, or `low`).
    Queued,
    /// Written to one of the recipient's connections, not yet acknowledged.
    Delivered,
    /// Acknowledged by the recipient: shown to its session.
    Read,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
        }
    }
}

/// One recipient of a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub peer_pk: Key,
    pub name: String,
    pub state: DeliveryState,
}

/// A group a peer belongs to, with its free-text role (lead, member, observer, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: String,
    pub role: String,
}

/// What others see of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_pk: Key,
    pub peer_xpk: Key,
    pub member_pk: Key,
    pub name: String,
    pub online: bool,
    pub status: Status,
    pub summary: String,
    pub groups: Vec<GroupRole>,
    pub hostname: String,
    pub cwd: String,
    pub connected_since_ms: u64,
    pub last_seen_ms: u64,
    #[serde(default)]
    pub profile: Profile,
    /// False for a hidden peer (only ever seen in its own lookups and by name).
    #[serde(default = "yes")]
    pub visible: bool,
    /// The name of the member this session belongs to.
    #[serde(default)]
    pub member_name: String,
    /// A message to `member_name` reaches this peer now (see docs/PROTOCOL.md, "Names").
    #[serde(default)]
    pub gets_member_messages: bool,
    /// The member's terminal peer (CLI commands, `claudemesh inbox`): the member inbox.
    #[serde(default)]
    pub terminal: bool,
}

fn yes() -> bool {
    true
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
}

/// Frames the broker sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    HelloAck {
        peer_pk: Key,
        mesh_id: Key,
        mesh_name: String,
        name: String,
        server_version: String,
        max_message_bytes: u32,
        /// Messages waiting for this peer right now.
        queued: u32,
    },
    /// The message was durably stored (after its commit) for `recipients` peers.
    Accepted {
        id: ReqId,
        msg_id: Id16,
        recipients: u32,
        duplicate: bool,
    },
    Deliver(Delivery),
    Messages {
        id: ReqId,
        messages: Vec<Delivery>,
    },
    Peers {
        id: ReqId,
        peers: Vec<PeerInfo>,
    },
    Ok {
        id: ReqId,
    },
    Pong {
        id: ReqId,
        server_time_ms: u64,
    },
    Event(Event),
    /// Messages waiting for this peer (pushed but unacknowledged ones included).
    Unread {
        id: ReqId,
        now: u32,
        next: u32,
        low: u32,
    },
    /// Per-recipient state of a sent message. `read_unnamed` counts recipients known only
    /// as read (their names were not kept across a broker restart).
    MessageStatus {
        id: ReqId,
        msg_id: Id16,
        recipients: Vec<RecipientStatus>,
        read_unnamed: u32,
    },
    Error {
        id: Option<ReqId>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
    pub fn error(id: Option<ReqId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
        }
    }
}

impl ClientFrame {
    /// The request id, for frames that carry one.
    pub fn req_id(&self) -> Option<ReqId> {
        match self {
            ClientFrame::Hello(_) | ClientFrame::Ack { .. } => None,
            ClientFrame::Send { id, .. }
            | ClientFrame::Pull { id, .. }
            | ClientFrame::SetStatus { id, .. }
            | ClientFrame::SetSummary { id, .. }
            | ClientFrame::ListPeers { id }
            | ClientFrame::Resolve { id, .. }
            | ClientFrame::JoinGroup { id, .. }
            | ClientFrame::LeaveGroup { id, .. }
            | ClientFrame::Ping { id }
            | ClientFrame::SetProfile { id, .. }
            | ClientFrame::SetVisible { id, .. }
            | ClientFrame::Unread { id }
            | ClientFrame::MessageStatus { id, .. } => Some(*id),
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
