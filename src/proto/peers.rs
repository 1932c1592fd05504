//! Wire types of the `peers` capability: who is in the mesh (list, resolve) and what a
//! peer says about itself (summary, profile, groups, visibility).

use super::{Key, Status};
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "peers/2";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The mesh's peers as others should see them (see docs/PROTOCOL.md, "peers.list").
    List {},
    /// Look peers up by name or hex key, offline ones included; answered per name.
    Resolve {
        names: Vec<String>,
    },
    SetSummary {
        summary: String,
    },
    /// Replace this peer's profile.
    SetProfile {
        profile: Profile,
    },
    /// Hidden peers are left out of peer lists, broadcasts and presence events; they still
    /// get DMs and group messages.
    SetVisible {
        visible: bool,
    },
    JoinGroup {
        group: String,
        /// Free text (lead, member, observer, ...); empty or absent means `member`.
        #[serde(default)]
        role: String,
    },
    LeaveGroup {
        group: String,
    },
    /// Every group of the mesh's listed peers, with its members and their roles
    /// (`peers/2`).
    ListGroups {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    List {
        peers: Vec<PeerInfo>,
    },
    /// One entry per asked name, in order; `peer` is null for a name nobody holds.
    Resolve {
        results: Vec<Resolved>,
    },
    SetSummary {},
    SetProfile {},
    SetVisible {},
    JoinGroup {},
    LeaveGroup {},
    ListGroups {
        groups: Vec<GroupInfo>,
    },
}

/// One group of `list_groups`: its name (without `@`) and members, by peer name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<GroupMember>,
}

/// A peer in a group, with its role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub peer_name: String,
    pub member_name: String,
    pub role: String,
    pub online: bool,
}

/// One name of a `resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub name: String,
    pub peer: Option<PeerInfo>,
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

/// A group a peer belongs to, with its free-text role (lead, member, observer, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: String,
    pub role: String,
}

impl GroupRole {
    /// In `group` or one of its sub-groups (`eng/web` is in `eng`): what a message or an
    /// event to `@group` reaches.
    pub fn is_in(&self, group: &str) -> bool {
        within(&self.group, group)
    }

    /// In `group` (or a sub-group) with a role other than `observer`: may take on the
    /// group's work.
    pub fn works_in(&self, group: &str) -> bool {
        self.is_in(group) && !self.role.eq_ignore_ascii_case("observer")
    }

    /// Role `lead` in `group` or in a group above it (a lead of `eng` leads `eng/web`).
    pub fn leads(&self, group: &str) -> bool {
        within(group, &self.group) && self.role.eq_ignore_ascii_case("lead")
    }
}

/// `inner` is `outer` or one of its sub-groups.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
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
    pub profile: Profile,
    /// False for a hidden peer (only ever seen in its own lookups and by name).
    pub visible: bool,
    /// The name of the member this session belongs to.
    pub member_name: String,
    /// A message to `member_name` reaches this peer now (see docs/PROTOCOL.md, "Names").
    pub gets_member_messages: bool,
    /// The member's terminal peer (CLI commands, `claudemesh inbox`): the member inbox.
    pub terminal: bool,
}
