//! The peer registry as capabilities see it: a durable change to the caller's own record
//! (applied in memory, written in order, answered after its commit), the mesh's peers as
//! others should see them, lookups by name or key, and where a member's name routes. The
//! rules of what may change (limits, validation) belong to `cap::peers`.

use super::{refuse, send_each, Hub, MeshState, PeerState, Refusal, Responder, Session, State};
use crate::proto::*;
use crate::store::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Who is asking: the caller's peer, its member and the member's role, and its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub mesh: Key,
    pub peer: Key,
    pub peer_name: String,
    pub member: Key,
    pub member_name: String,
    pub role: Role,
    pub groups: Vec<GroupRole>,
}

impl Caller {
    /// The caller's role in `group`, if it is in it.
    pub fn group_role(&self, group: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.group == group)
            .map(|g| g.role.as_str())
    }

    /// Owner or admin of the mesh.
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin)
    }

    /// Works in `group` ([`GroupRole::works_in`]): may take on the group's work.
    pub fn works_in(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.works_in(group))
    }

    /// Leads `group` or a group above it ([`GroupRole::leads`]).
    pub fn leads(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.leads(group))
    }
}

/// Who an event goes to.
#[derive(Debug, Clone)]
pub enum Audience {
    /// Every online peer of the caller's mesh except the caller.
    Mesh,
    /// Every online peer of the mesh in this group (without `@`), except the caller.
    Group(String),
    /// These peers of the caller's mesh (the caller included if listed).
    Peers(Vec<Key>),
}

/// Offline peers last seen longer ago than this are left out of peer lists.
const OFFLINE_LISTED_MS: u64 = 24 * 3600 * 1000;

impl Hub {
    /// The caller's peer, member and groups as they are now.
    pub(crate) fn caller(&self, s: &Session) -> Option<Caller> {
        let st = self.lock();
        let p = st.peers.get(&s.peer)?;
        let m = st.meshes.get(&s.mesh)?.members.get(&p.rec.member_pk)?;
        if m.revoked {
            return None;
        }
        Some(Caller {
            mesh: s.mesh,
            peer: s.peer,
            peer_name: p.rec.name.clone(),
            member: m.member_pk,
            member_name: m.name.clone(),
            role: m.role,
            groups: p.rec.groups.clone(),
        })
    }

    /// Push an event to online peers of the caller's mesh (see [`Audience`]).
    pub(crate) fn notify(&self, s: &Session, to: &Audience, kind: &str, text: &str) {
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return;
        };
        // Attributed to the member (a hidden session's own name is not revealed); a member
        // removed meanwhile sends nothing.
        // A session that is no one (`Ctx::for_mesh`: a capability's sweeper) speaks as the
        // broker.
        let broker = s.peer == Key([0; 32]);
        let Some(from) = st
            .peers
            .get(&s.peer)
            .and_then(|p| mesh.members.get(&p.rec.member_pk))
            .filter(|m| !m.revoked)
            .map(|m| m.name.clone())
            .or_else(|| broker.then(|| "claudemesh".to_string()))
        else {
            return;
        };
        let ev = ServerFrame::Event(Event {
            kind: kind.into(),
            peer: from,
            text: text.into(),
            at_ms: crate::util::now_ms(),
        });
        let to: Vec<&Key> = match to {
            Audience::Mesh => mesh.peers.iter().filter(|pk| **pk != s.peer).collect(),
            Audience::Group(g) => mesh
                .peers
                .iter()
                .filter(|pk| **pk != s.peer)
                .filter(|pk| {
                    st.peers
                        .get(pk)
                        .is_some_and(|p| p.rec.groups.iter().any(|x| x.is_in(g)))
                })
                .collect(),
            Audience::Peers(v) => v.iter().filter(|pk| mesh.peers.contains(pk)).collect(),
        };
        send_each(&st, to, &ev);
    }

    /// Whether a peer of `mesh` is online, and when it was last seen.
    pub(crate) fn presence(&self, mesh: &Key, peer: &Key) -> Option<(bool, u64)> {
        let st = self.lock();
        let p = st.peers.get(peer).filter(|p| p.rec.mesh_id == *mesh)?;
        let seen = if p.online() {
            crate::util::now_ms()
        } else {
            p.rec.last_seen_ms
        };
        Some((p.online(), seen))
    }

    /// How many peers of `mesh` are online now.
    pub(crate) fn online_count(&self, mesh: &Key) -> usize {
        let st = self.lock();
        st.meshes.get(mesh).map_or(0, |m| {
            m.peers
                .iter()
                .filter(|pk| st.peers.get(*pk).is_some_and(|p| p.online()))
                .count()
        })
    }

    /// Stop announcing this peer's comings and goings (it is hiding): no "left" event later.
    pub(crate) fn stop_announcing(&self, s: &Session) {
        if let Some(p) = self.lock().peers.get_mut(&s.peer) {
            p.announced = false;
        }
    }

    /// Change a durable peer field: apply it in memory and queue the write under the lock
    /// (so concurrent changes compose and are written in order), reply after the commit.
    pub(crate) fn update_peer<F>(
        self: &Arc<Self>,
        s: &Session,
        r: Responder,
        done: peers::Response,
        f: F,
    ) where
        F: FnOnce(&mut PeerRecord) -> Result<(), Refusal>,
    {
        let mut st = self.lock();
        let Some(p) = st.peers.get_mut(&s.peer) else {
            return r.err(Refusal::new(ErrorCode::NotAuthenticated, "unknown session"));
        };
        if let Err(e) = f(&mut p.rec) {
            return r.err(e);
        }
        self.store.submit(
            Op::PutPeer(p.rec.clone()),
            Some(Box::new(move |res| match res {
                Ok(()) => r.ok(done),
                Err(e) => r.err(e.into()),
            })),
        );
    }

    /// The mesh's peers as others should see them: every online visible peer, and an
    /// offline one seen in the last day while its name still points at it (an ended
    /// session whose name a newer session took is not listed again) and no online session
    /// of the same member runs in the same directory on the same host (it was replaced).
    /// Hidden peers only see themselves. Unlisted peers can still be reached by name or key.
    /// Each entry says whose member it is and whether a message to the member's name
    /// reaches it now.
    pub(crate) fn list_peers(&self, s: &Session) -> Vec<PeerInfo> {
        let now = crate::util::now_ms();
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return vec![];
        };
        let online: Vec<&PeerState> = mesh
            .peers
            .iter()
            .filter_map(|pk| st.peers.get(pk))
            .filter(|p| p.online())
            .collect();
        let online_names: HashSet<&str> = online.iter().map(|p| p.rec.name.as_str()).collect();
        // Where online sessions run: (member, host, directory).
        let running: HashSet<(Key, &str, &str)> = online
            .iter()
            .filter(|q| q.rec.session_id != TERMINAL_SESSION)
            .map(|q| (q.rec.member_pk, q.rec.hostname.as_str(), q.rec.cwd.as_str()))
            .collect();
        let replaced = |p: &PeerState| {
            running.contains(&(p.rec.member_pk, p.rec.hostname.as_str(), p.rec.cwd.as_str()))
        };
        let mut routes = HashMap::new();
        let mut v: Vec<PeerInfo> = mesh
            .peers
            .iter()
            .filter_map(|pk| st.peers.get(pk))
            .filter(|p| p.rec.visible || p.rec.peer_pk == s.peer)
            .filter(|p| {
                p.online()
                    || p.rec.peer_pk == s.peer
                    || (now.saturating_sub(p.rec.last_seen_ms) < OFFLINE_LISTED_MS
                        && !online_names.contains(p.rec.name.as_str())
                        && mesh
                            .names
                            .get(&p.rec.name)
                            .is_some_and(|o| o.peer == Some(p.rec.peer_pk))
                        && !replaced(p))
            })
            .map(|p| described(&st, mesh, p, &mut routes))
            .collect();
        v.sort_by(|a, b| b.online.cmp(&a.online).then(a.name.cmp(&b.name)));
        v
    }

    /// Each name (or hex peer key) with the peer it reaches now, or none.
    pub(crate) fn resolve(
        &self,
        s: &Session,
        names: &[String],
    ) -> Result<Vec<peers::Resolved>, Refusal> {
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return refuse(ErrorCode::NotMember, "mesh is gone");
        };
        let mut results = Vec::with_capacity(names.len());
        let mut routes = HashMap::new();
        for n in names {
            let by_key = Key::parse_hex(n).filter(|k| mesh.peers.contains(k));
            let pk = by_key.or_else(|| route_name(&st, mesh, n));
            let peer = pk
                .and_then(|k| st.peers.get(&k))
                .map(|p| described(&st, mesh, p, &mut routes));
            results.push(peers::Resolved {
                name: n.clone(),
                peer,
            });
        }
        Ok(results)
    }
}

/// A peer's info with its member's name and whether that name routes to it (`routes`
/// remembers each member's route for one lookup).
fn described(
    st: &State,
    mesh: &MeshState,
    p: &PeerState,
    routes: &mut HashMap<Key, Option<Key>>,
) -> PeerInfo {
    let mut info = p.info();
    if let Some(m) = mesh.members.get(&p.rec.member_pk) {
        info.member_name = m.name.clone();
        let route = *routes
            .entry(p.rec.member_pk)
            .or_insert_with(|| route_name(st, mesh, &m.name));
        info.gets_member_messages = route == Some(p.rec.peer_pk);
    }
    info.terminal = p.rec.session_id == TERMINAL_SESSION;
    info
}

/// The session id of a member's terminal peer (CLI commands, `claudemesh inbox`): the
/// member inbox.
pub(super) const TERMINAL_SESSION: &str = "cli";

/// Where a message to a name goes:
/// 1. the newest session holding the name, while it is live (has a push connection);
/// 2. else another live session of the same member using that name;
/// 3. else, when the name is the member's own name: that member's most recently active
///    live, visible session (working before idle, then the newest connection) — so a
///    message to a person reaches the session they are working in;
/// 4. else the name's newest holder, live or not (for a member name with no live session:
///    the member inbox, read by `claudemesh inbox`).
fn route_name(st: &State, mesh: &MeshState, n: &str) -> Option<Key> {
    let owner = mesh.names.get(n)?;
    let live = |k: &Key| st.peers.get(k).is_some_and(|p| p.push_conn.is_some());
    owner
        .peer
        .filter(live)
        .or_else(|| {
            mesh.peers.iter().copied().find(|k| {
                st.peers.get(k).is_some_and(|p| {
                    p.push_conn.is_some() && p.rec.name == n && p.rec.member_pk == owner.member
                })
            })
        })
        .or_else(|| {
            let is_member_name = mesh.members.get(&owner.member).is_some_and(|m| m.name == n);
            if !is_member_name {
                return None;
            }
            mesh.peers
                .iter()
                .filter_map(|k| st.peers.get(k))
                .filter(|p| {
                    p.push_conn.is_some()
                        && p.rec.member_pk == owner.member
                        && p.rec.visible
                        && p.rec.session_id != TERMINAL_SESSION
                })
                .max_by_key(|p| {
                    // Connection ids grow with each connection: the newest one wins even
                    // when two connected within the same millisecond.
                    (
                        p.rec.status == Status::Working,
                        p.connected_since_ms,
                        p.push_conn.as_ref().map_or(0, |c| c.id),
                    )
                })
                .map(|p| p.rec.peer_pk)
        })
        .or(owner.peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::peers::GroupRole;

    fn caller(groups: &[(&str, &str)]) -> Caller {
        Caller {
            mesh: Key([0; 32]),
            peer: Key([1; 32]),
            peer_name: "p".into(),
            member: Key([2; 32]),
            member_name: "m".into(),
            role: Role::Member,
            groups: groups
                .iter()
                .map(|(g, r)| GroupRole {
                    group: g.to_string(),
                    role: r.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn sub_group_members_work_in_the_group_observers_do_not_and_leads_lead_downward() {
        let web = caller(&[("eng/web", "member")]);
        assert!(web.works_in("eng") && web.works_in("eng/web"));
        assert!(!web.works_in("engineering") && !web.works_in("eng/webapp"));
        assert!(!caller(&[("eng", "Observer")]).works_in("eng"));
        assert!(
            caller(&[("eng", "reviewer")]).works_in("eng"),
            "free-text roles work"
        );
        let lead = caller(&[("eng", "lead")]);
        assert!(lead.leads("eng") && lead.leads("eng/web"));
        assert!(!lead.leads("ops") && !lead.leads("engineering"));
        assert!(
            !web.leads("eng"),
            "a sub-group member does not lead its parent"
        );
        assert!(!caller(&[("eng/web", "lead")]).leads("eng"));
    }
}
