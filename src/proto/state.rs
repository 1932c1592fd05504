//! Wire types of the `state` capability: a per-mesh key-value store of JSON values with
//! versions (compare-and-set), time-to-live, and watches that resume after a reconnect.

use super::json::Json;
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "state/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Write `value` under `key`. With `if_version`, only if the key's version is that
    /// (0: only if the key does not exist); a lost race answers `applied: false` with the
    /// current entry. `ttl_s`: the key vanishes that many seconds after this write.
    Set {
        key: String,
        value: Json,
        #[serde(default)]
        if_version: Option<u64>,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    Get {
        key: String,
    },
    /// Remove `key` (with `if_version`: only at that version).
    Delete {
        key: String,
        #[serde(default)]
        if_version: Option<u64>,
    },
    /// Keys starting with `prefix` (all when empty), with their values, in key order.
    List {
        #[serde(default)]
        prefix: String,
    },
    /// Push every change of `key` (or of keys starting with `prefix`) to this connection as
    /// `feed` frames tagged `sub` (the client's id for this watch), starting after
    /// version `from_version - 1` (a reconnecting watcher resumes there; absent: from
    /// now on).
    Watch {
        sub: u64,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        from_version: Option<u64>,
    },
    Unwatch {
        sub: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// `applied`: written at `version`. Not applied (compare-and-set lost): `current` is
    /// the key as it is (`None`: absent) and `version` its version (0 when absent).
    Set {
        applied: bool,
        version: u64,
        current: Option<Entry>,
    },
    Get {
        entry: Option<Entry>,
    },
    /// `applied: false` when `if_version` did not match (`version` is then the current
    /// one) or the key did not exist (`existed: false`).
    Delete {
        applied: bool,
        existed: bool,
        version: u64,
    },
    List {
        entries: Vec<Entry>,
        /// More keys matched than one answer holds (see docs/PROTOCOL.md, limits).
        truncated: bool,
    },
    /// The watch is on; changes from `next_version` on follow as feed frames.
    Watch {
        sub: u64,
        next_version: u64,
    },
    Unwatch {
        existed: bool,
    },
}

/// A key as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: Json,
    /// Grows with every write in the mesh; compare-and-set compares it.
    pub version: u64,
    /// Member name of the writer.
    pub updated_by: String,
    pub updated_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

/// One change pushed to a watcher (`feed` body `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub version: u64,
    /// The new value; `None` when the key was deleted or expired.
    pub value: Option<Json>,
    /// The key was removed (deleted, or expired): tells a removal from a JSON `null`.
    pub deleted: bool,
    pub updated_by: String,
    pub at_ms: u64,
    /// Removed because its time-to-live ran out.
    pub expired: bool,
}
