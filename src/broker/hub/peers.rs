//! Peer profile changes (summary, groups, profile, visibility) and lookups (list, resolve).

use super::{refuse, reply_conn, Hub, Refusal, Session};
use crate::proto::*;
use crate::store::*;
use crate::util::valid_group;
use std::sync::Arc;

const MAX_SUMMARY: usize = 2048;
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
    pub(super) fn set_summary(self: &Arc<Self>, s: &Session, id: ReqId, summary: String) {
        self.update_peer(s, id, move |r| {
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

    pub(super) fn join_group(
        self: &Arc<Self>,
        s: &Session,
        id: ReqId,
        group: String,
        role: String,
    ) {
        self.update_peer(s, id, move |r| {
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

    pub(super) fn set_profile(self: &Arc<Self>, s: &Session, id: ReqId, profile: Profile) {
        self.update_peer(s, id, move |r| {
            check_profile(&profile)?;
            r.profile = profile;
            Ok(())
        })
    }

    pub(super) fn set_visible(self: &Arc<Self>, s: &Session, id: ReqId, visible: bool) {
        if !visible {
            // Hiding also means no "left" event later.
            if let Some(p) = self.lock().peers.get_mut(&s.peer) {
                p.announced = false;
            }
        }
        self.update_peer(s, id, move |r| {
            r.visible = visible;
            Ok(())
        })
    }

    pub(super) fn leave_group(self: &Arc<Self>, s: &Session, id: ReqId, group: String) {
        self.update_peer(s, id, move |r| {
            r.groups.retain(|g| g.group != group);
            Ok(())
        })
    }

    /// Change a durable peer field: apply it in memory and queue the write under the lock
    /// (so concurrent changes compose and are written in order), reply after the commit.
    fn update_peer<F>(self: &Arc<Self>, s: &Session, id: ReqId, f: F)
    where
        F: FnOnce(&mut PeerRecord) -> Result<(), Refusal>,
    {
        let mut st = self.lock();
        let Some(p) = st.peers.get_mut(&s.peer) else {
            return;
        };
        if let Err(e) = f(&mut p.rec) {
            return reply_conn(&mut st, s, &ServerFrame::error(Some(id), e.code, e.message));
        }
        let hub = self.clone();
        let sess = *s;
        self.store.submit(
            Op::PutPeer(p.rec.clone()),
            Some(Box::new(move |res| {
                let out = match res {
                    Ok(()) => ServerFrame::Ok { id },
                    Err(e) => {
                        let r: Refusal = e.into();
                        ServerFrame::error(Some(id), r.code, r.message)
                    }
                };
                hub.reply(&sess, &out);
            })),
        );
    }

    /// The mesh's peers as others should see them: every online visible peer, and an
    /// offline one seen in the last day while its name still points at it (an ended
    /// session whose name a newer session took is not listed again). Hidden peers only see
    /// themselves. Unlisted peers can still be reached by name or key.
    pub(super) fn list_peers(&self, s: &Session) -> Vec<PeerInfo> {
        let now = crate::util::now_ms();
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return vec![];
        };
        let online_names: std::collections::HashSet<&str> = mesh
            .peers
            .iter()
            .filter_map(|pk| st.peers.get(pk))
            .filter(|p| p.online())
            .map(|p| p.rec.name.as_str())
            .collect();
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
                            .is_some_and(|o| o.peer == Some(p.rec.peer_pk)))
            })
            .map(|p| p.info())
            .collect();
        v.sort_by(|a, b| b.online.cmp(&a.online).then(a.name.cmp(&b.name)));
        v
    }

    pub(super) fn resolve(&self, s: &Session, names: &[String]) -> Result<Vec<PeerInfo>, Refusal> {
        if names.len() > 256 {
            return refuse(ErrorCode::BadRequest, "too many names");
        }
        let st = self.lock();
        let Some(mesh) = st.meshes.get(&s.mesh) else {
            return refuse(ErrorCode::NotMember, "mesh is gone");
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let by_key = Key::parse_hex(n).filter(|k| mesh.peers.contains(k));
            let pk = by_key.or_else(|| {
                let owner = mesh.names.get(n)?;
                // The newest session holding the name, unless it is gone and another
                // live session (with a push connection, not a one-shot command) of the same
                // member uses that name.
                let holder = owner
                    .peer
                    .filter(|k| st.peers.get(k).is_some_and(|p| p.push_conn.is_some()));
                holder
                    .or_else(|| {
                        mesh.peers.iter().copied().find(|k| {
                            st.peers.get(k).is_some_and(|p| {
                                p.push_conn.is_some()
                                    && p.rec.name == *n
                                    && p.rec.member_pk == owner.member
                            })
                        })
                    })
                    .or(owner.peer)
            });
            match pk.and_then(|k| st.peers.get(&k)) {
                Some(p) => out.push(p.info()),
                None => {
                    let shown: String = n.chars().take(64).collect();
                    return refuse(
                        ErrorCode::UnknownTarget,
                        format!("unknown peer '{shown}' in mesh '{}'", mesh.rec.name),
                    );
                }
            }
        }
        Ok(out)
    }
}
