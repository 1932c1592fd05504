//! Wire types of the `msg` capability: sending end-to-end encrypted messages, pulling the
//! queue, unread counts, per-recipient status, and the status that gates `next` pushes.
//! Deliveries themselves arrive as `deliver` frames and are confirmed with `ack`.

use super::{Delivery, Envelope, Id16, Key, Priority, Status};
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "msg/1";

#[allow(clippy::large_enum_variant)] // a send is the common request; boxing buys nothing
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Send one message (one id) to one or more targets. Reply after the commit.
    Send {
        msg_id: Id16,
        #[serde(default)]
        priority: Priority,
        #[serde(default)]
        reply_to: Option<Id16>,
        envelopes: Vec<Envelope>,
    },
    /// Every queued message, `low` included (at most `limit`, 0 or absent = 1000, and about
    /// 1 MiB of ciphertext).
    Pull {
        #[serde(default)]
        limit: u32,
    },
    /// How many messages wait for this peer, by priority.
    Unread {},
    /// Per-recipient state of a message this peer sent.
    MessageStatus { msg_id: Id16 },
    /// This peer's status: `next` deliveries are pushed only while it is idle.
    SetStatus { status: Status },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Durably stored for `recipients` peers; `duplicate` when this id was sent before.
    Send {
        msg_id: Id16,
        recipients: u32,
        duplicate: bool,
    },
    Pull {
        messages: Vec<Delivery>,
    },
    /// Messages waiting (pushed but unacknowledged ones included).
    Unread {
        now: u32,
        next: u32,
        low: u32,
    },
    /// `read_unnamed` counts recipients known only as read (their names were not kept
    /// across a broker restart).
    MessageStatus {
        msg_id: Id16,
        recipients: Vec<RecipientStatus>,
        read_unnamed: u32,
    },
    SetStatus {},
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
