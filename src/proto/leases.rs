//! Wire types of the `leases` capability: advisory file reservations ("who is editing
//! what"), by path pattern.

use super::{Id16, Key};
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "leases/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Reserve every pattern of `paths` (all or nothing). `exclusive` (default true):
    /// nobody else may hold an overlapping pattern; shared leases only conflict with
    /// exclusive ones. `ttl_s` (default 3,600): the lease lapses then.
    Reserve {
        paths: Vec<String>,
        #[serde(default)]
        exclusive: Option<bool>,
        #[serde(default)]
        ttl_s: Option<u64>,
        #[serde(default)]
        reason: String,
    },
    /// Release the caller's lease `lease_id`, or the listed patterns from the caller's
    /// leases.
    Release {
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        lease_id: Option<Id16>,
    },
    /// The mesh's leases (with `path`: those covering it).
    List {
        #[serde(default)]
        path: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Granted: `lease` is the new lease. Not granted (a typed answer, nothing reserved):
    /// `conflicts` are the other peers' leases in the way.
    Reserve {
        granted: bool,
        lease: Option<Box<Lease>>,
        conflicts: Vec<Lease>,
    },
    Release {
        released: Vec<Id16>,
    },
    List {
        leases: Vec<Lease>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: Id16,
    pub paths: Vec<String>,
    pub exclusive: bool,
    pub reason: String,
    /// Peer name of the holder, its key and its member's name.
    pub holder: String,
    pub holder_key: Key,
    pub member_name: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}
