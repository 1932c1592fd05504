//! Wire types of the `streams` capability: named per-mesh message streams with bounded
//! history, replay from an offset and subscriptions that resume after a reconnect.

use super::json::Json;
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "streams/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Create a stream, or change an existing one's limits (absent: no limit).
    Create {
        name: String,
        #[serde(default)]
        max_msgs: Option<u64>,
        #[serde(default)]
        max_bytes: Option<u64>,
        #[serde(default)]
        max_age_s: Option<u64>,
    },
    Publish {
        stream: String,
        data: Json,
    },
    /// Push the stream's messages to this connection as `feed` frames tagged `sub`: from
    /// `from_seq`, or the `last` n, or (neither) from now on.
    Subscribe {
        sub: u64,
        stream: String,
        #[serde(default)]
        from_seq: Option<u64>,
        #[serde(default)]
        last: Option<u64>,
    },
    Unsubscribe {
        sub: u64,
    },
    /// Up to `limit` (at most 1,000) messages from `from_seq` on.
    Read {
        stream: String,
        from_seq: u64,
        limit: u32,
    },
    List {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Create {
        stream: StreamInfo,
    },
    Publish {
        seq: u64,
    },
    /// Messages from `next_seq` on follow as feed frames; `first_seq` is the oldest kept.
    Subscribe {
        sub: u64,
        next_seq: u64,
        first_seq: u64,
    },
    Unsubscribe {
        existed: bool,
    },
    Read {
        messages: Vec<Message>,
        first_seq: u64,
        last_seq: u64,
    },
    List {
        streams: Vec<StreamInfo>,
    },
}

/// A stream and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub name: String,
    /// Oldest kept sequence (0 when empty) and newest ever written.
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    pub bytes: u64,
    pub max_msgs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_s: Option<u64>,
}

/// One published message (also a `feed` body `streams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub stream: String,
    pub seq: u64,
    pub data: Json,
    /// Member name of the publisher.
    pub by: String,
    pub at_ms: u64,
}
