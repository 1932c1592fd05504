//! Peer profile changes (summary, groups, profile, visibility) and lookups (list, resolve).

use super::{refuse, Hub, MeshState, PeerState, Refusal, Responder, Session, State};
use crate::proto::*;
use crate::store::*;
use crate::util::valid_group;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const MAX_SUMMARY: usize = 2048;
const MAX_RESOLVE: usize = 256;
/// Offline peers last seen longer ago than this are left out of peer lists.
const OFFLINE_LISTED_MS: u64 = 24 * 3600 * 1000;
const MAX_GROUPS: usize = 64;
const MAX_AVATAR: usize = 32;
const MAX_TITLE: usize = 128;
const MAX_BIO: usize = 2048;
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY: usize = 64;

fn check_profile(p: &Profile) -> Result<(), Refusal> {
    let field = |name: &str, v: &str, max: usize| {
        if v.len() > max {
            return refuse(
                ErrorCode::BadRequest,
                format!("profile {name} is longer than {max} bytes"),
            );
        }
        if v.chars().any(|c| c.is_control() && c != '\n') {
            return refuse(
                ErrorCode::BadRequest,
                format!("profile {name} has control characters"),
            );
        }
        Ok(())
    };
    field("avatar", &p.avatar, MAX_AVATAR)?;
    field("title", &p.title, MAX_TITLE)?;
    field("bio", &p.bio, MAX_BIO)?;
    if p.capabilities.len() > MAX_CAPABILITIES {
        return refuse(
            ErrorCode::BadRequest,
            format!("a profile lists at most {MAX_CAPABILITIES} capabilities"),
        );
    }
    for c in &p.capabilities {
        field("capability", c, MAX_CAPABILITY)?;
    }
    Ok(())
}

impl Hub {
    /// Every `peers` request; each answers through `r`, now or after its commit.
    pub(crate) fn peers(self: &Arc<Self>, s: &Session, q: peers::Request, r: Responder) {
        use peers::{Request as Q, Response as A};
        match q {
            Q::List {} => r.ok(A::List {
                peers: self.list_peers(s),
            }),
            Q::Resolve { names } => r.reply(self.resolve(s, &names)),
            Q::SetSummary { summary } => self.set_summary(s, summary, r),
            Q::SetProfile { profile } => self.set_profile(s, profile, r),
            Q::SetVisible { visible } => self.set_visible(s, visible, r),
            Q::JoinGroup { group, role } => self.join_group(s, group, role, r),
            Q::LeaveGroup { group } => self.leave_group(s, group, r),
        }
    }

    fn set_summary(self: &Arc<Self>, s: &Session, summary: String, r: Responder) {
        self.update_peer(s, r, peers::Response::SetSummary {}, move |r| {
            if summary.len() > MAX_SUMMARY {
                return refuse(
                    ErrorCode::BadRequest,
                    format!("summary is longer than {MAX_SUMMARY} bytes"),
                );
            }
            r.summary = summary;
            Ok(())
        })
    }

    fn join_group(self: &Arc<Self>, s: &Session, group: String, role: String, r: Responder) {
        self.update_peer(s, r, peers::Response::JoinGroup {}, move |r| {
            if !valid_group(&group) {
                return refuse(
                    ErrorCode::BadRequest,
                    "invalid group name: use segments of A-Z a-z 0-9 . _ - joined by '/'",
                );
            }
            if role.chars().any(char::is_control) {
                return refuse(ErrorCode::BadRequest, "group role has control characters");
            }
            if role.len() > 64 {
                return refuse(ErrorCode::BadRequest, "group role is longer than 64 bytes");
            }
            let role = if role.is_empty() {
                "member".to_string()
            } else {
                role
            };
            let full = r.groups.len() >= MAX_GROUPS;
            match r.groups.iter_mut().find(|g| g.group == group) {
                Some(g) => g.role = role,
                None if full => {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!("a peer can be in at most {MAX_GROUPS} groups"),
                    )
                }
                None => r.groups.push(GroupRole { group, role }),
            }
            Ok(())
        })
    }

    fn set_profile(self: &Arc<Self>, s: &Session, profile: Profile, r: Responder) {
        self.update_peer(s, r, peers::Response::SetProfile {}, move |r| {
            check_profile(&profile)?;
            r.profile = profile;
            Ok(())
        })
    }

    fn set_visible(self: &Arc<Self>, s: &Session, visible: bool, r: Responder) {
        if !visible {
            // Hiding also means no "left" event later.
            if let Some(p) = self.lock().peers.get_mut(&s.peer) {
                p.announced = false;
            }
        }
        self.update_peer(s, r, peers::Response::SetVisible {}, move |r| {
            r.visible = visible;
            Ok(())
        })
    }

    fn leave_group(self: &Arc<Self>, s: &Session, group: String, r: Responder) {
        self.update_peer(s, r, peers::Response::LeaveGroup {}, move |r| {
            r.groups.retain(|g| g.group != group);
            Ok(())
        })
    }

    /// Change a durable peer field: apply it in memory and queue the write under the lock
    /// (so concurrent changes compose and are written in order), reply after the commit.
    fn update_peer<F>(self: &Arc<Self>, s: &Session, r: Responder, done: peers::Response, f: F)
    where
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
    fn list_peers(&self, s: &Session) -> Vec<PeerInfo> {
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
    fn resolve(&self, s: &Session, names: &[String]) -> Result<peers::Response, Refusal> {
        if names.len() > MAX_RESOLVE {
            return refuse(
                ErrorCode::BadRequest,
                format!("resolve takes at most {MAX_RESOLVE} names"),
            );
        }
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
        Ok(peers::Response::Resolve { results })
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
                    (
                        p.rec.status == Status::Working,
                        p.connected_since_ms,
                        p.rec.peer_pk.0,
                    )
                })
                .map(|p| p.rec.peer_pk)
        })
        .or(owner.peer)
}
