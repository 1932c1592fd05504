//! The records stored in redb (postcard-encoded). Changing a field is a schema change.

use crate::proto::{GroupRole, Id16, Key, Priority, Profile, Role, Sealed, Status, Target};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRecord {
    pub mesh_id: Key,
    pub name: String,
    pub owner_pk: Key,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub invite_id: Id16,
    pub mesh_id: Key,
    pub role: Role,
    pub expires_ms: u64,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked: bool,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub mesh_id: Key,
    pub member_pk: Key,
    pub member_xpk: Key,
    pub name: String,
    pub role: Role,
    pub joined_ms: u64,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub peer_pk: Key,
    pub peer_xpk: Key,
    pub mesh_id: Key,
    pub member_pk: Key,
    pub name: String,
    pub session_id: String,
    pub groups: Vec<GroupRole>,
    pub summary: String,
    pub hostname: String,
    pub cwd: String,
    pub status: Status,
    pub last_seen_ms: u64,
    /// Added in schema 2.
    pub profile: Profile,
    /// Added in schema 2.
    pub visible: bool,
}

/// A peer as schema 1 stored it (read once, by the migration to schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PeerRecordV1 {
    pub peer_pk: Key,
    pub peer_xpk: Key,
    pub mesh_id: Key,
    pub member_pk: Key,
    pub name: String,
    pub session_id: String,
    pub groups: Vec<GroupRole>,
    pub summary: String,
    pub hostname: String,
    pub cwd: String,
    pub status: Status,
    pub last_seen_ms: u64,
}

impl From<PeerRecordV1> for PeerRecord {
    fn from(v: PeerRecordV1) -> Self {
        PeerRecord {
            peer_pk: v.peer_pk,
            peer_xpk: v.peer_xpk,
            mesh_id: v.mesh_id,
            member_pk: v.member_pk,
            name: v.name,
            session_id: v.session_id,
            groups: v.groups,
            summary: v.summary,
            hostname: v.hostname,
            cwd: v.cwd,
            status: v.status,
            last_seen_ms: v.last_seen_ms,
            profile: Profile::default(),
            visible: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub msg_id: Id16,
    pub mesh_id: Key,
    pub from: Key,
    pub from_xpk: Key,
    pub from_name: String,
    pub to_label: String,
    pub target: Target,
    pub priority: Priority,
    pub reply_to: Option<Id16>,
    pub sealed: Sealed,
    pub sent_at_ms: u64,
    pub expires_at_ms: u64,
    /// Every peer this copy is queued for (acks are recorded separately).
    pub recipients: Vec<Key>,
}

/// A send's dedupe record: the same (sender, message id) is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgIdRecord {
    pub from: Key,
    pub msg_id: Id16,
    pub expires_ms: u64,
    /// How many recipients the original send reached (repeated in `duplicate` replies).
    pub recipients: u32,
}
