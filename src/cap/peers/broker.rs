//! The broker side of `peers`: validation and limits of each request, on top of the hub's
//! peer registry.

use crate::broker::ctx::Ctx;
use crate::broker::outbox::{refuse, Refusal, Responder};
use crate::proto::peers::{
    GroupInfo, GroupMember, GroupRole, PeerInfo, Profile, Request as Q, Response as A,
};
use crate::proto::ErrorCode;
use crate::util::valid_group;

pub const MAX_SUMMARY: usize = 2048;
pub const MAX_RESOLVE: usize = 256;
pub const MAX_GROUPS: usize = 64;
pub const MAX_ROLE: usize = 64;
const MAX_AVATAR: usize = 32;
const MAX_TITLE: usize = 128;
const MAX_BIO: usize = 2048;
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY: usize = 64;

/// Every `peers` request; each answers through `r`, now or after its commit.
pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    match q {
        Q::List {} => r.ok(A::List {
            peers: ctx.list_peers(),
        }),
        Q::Resolve { names } => {
            if names.len() > MAX_RESOLVE {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("resolve takes at most {MAX_RESOLVE} names"),
                ));
            }
            r.reply(ctx.resolve(&names).map(|results| A::Resolve { results }))
        }
        Q::SetSummary { summary } => ctx.update_own_peer(r, A::SetSummary {}, move |p| {
            if summary.len() > MAX_SUMMARY {
                return refuse(
                    ErrorCode::BadRequest,
                    format!("summary is longer than {MAX_SUMMARY} bytes"),
                );
            }
            p.summary = summary;
            Ok(())
        }),
        Q::SetProfile { profile } => ctx.update_own_peer(r, A::SetProfile {}, move |p| {
            check_profile(&profile)?;
            p.profile = profile;
            Ok(())
        }),
        Q::SetVisible { visible } => {
            if !visible {
                ctx.stop_announcing();
            }
            ctx.update_own_peer(r, A::SetVisible {}, move |p| {
                p.visible = visible;
                Ok(())
            })
        }
        Q::JoinGroup { group, role } => ctx.update_own_peer(r, A::JoinGroup {}, move |p| {
            let role = check_group(&group, role)?;
            let full = p.groups.len() >= MAX_GROUPS;
            match p.groups.iter_mut().find(|g| g.group == group) {
                Some(g) => g.role = role,
                None if full => {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!("a peer can be in at most {MAX_GROUPS} groups"),
                    )
                }
                None => p.groups.push(GroupRole { group, role }),
            }
            Ok(())
        }),
        Q::LeaveGroup { group } => ctx.update_own_peer(r, A::LeaveGroup {}, move |p| {
            p.groups.retain(|g| g.group != group);
            Ok(())
        }),
        Q::ListGroups {} => r.ok(A::ListGroups {
            groups: groups_of(&ctx.list_peers()),
        }),
    }
}

/// The groups of the peers the caller sees (hidden peers stay hidden), by name, each with
/// its members by peer name.
fn groups_of(peers: &[PeerInfo]) -> Vec<GroupInfo> {
    let mut by: std::collections::BTreeMap<&str, Vec<GroupMember>> = Default::default();
    for p in peers {
        for g in &p.groups {
            by.entry(g.group.as_str()).or_default().push(GroupMember {
                peer_name: p.name.clone(),
                member_name: p.member_name.clone(),
                role: g.role.clone(),
                online: p.online,
            });
        }
    }
    by.into_iter()
        .map(|(name, mut members)| {
            members.sort_by(|a, b| a.peer_name.cmp(&b.peer_name));
            GroupInfo {
                name: name.to_string(),
                members,
            }
        })
        .collect()
}

/// A valid group name and role; the role as stored (empty means `member`).
fn check_group(group: &str, role: String) -> Result<String, Refusal> {
    if !valid_group(group) {
        return refuse(
            ErrorCode::BadRequest,
            "invalid group name: use segments of A-Z a-z 0-9 . _ - joined by '/'",
        );
    }
    if role.chars().any(char::is_control) {
        return refuse(ErrorCode::BadRequest, "group role has control characters");
    }
    if role.len() > MAX_ROLE {
        return refuse(
            ErrorCode::BadRequest,
            format!("group role is longer than {MAX_ROLE} bytes"),
        );
    }
    Ok(if role.is_empty() {
        "member".to_string()
    } else {
        role
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_roles_default_to_member_and_bad_names_or_roles_are_refused() {
        assert_eq!(check_group("eng/web", String::new()).unwrap(), "member");
        assert_eq!(check_group("eng", "lead".into()).unwrap(), "lead");
        assert!(check_group("../x", "lead".into()).is_err());
        assert!(check_group("eng", "a\u{7}".into()).is_err());
        assert!(check_group("eng", "r".repeat(MAX_ROLE + 1)).is_err());
    }

    #[test]
    fn profile_fields_are_capped_and_free_of_control_characters() {
        let ok = Profile {
            bio: "line one\nline two".into(),
            ..Default::default()
        };
        assert!(check_profile(&ok).is_ok());
        let long = Profile {
            title: "t".repeat(MAX_TITLE + 1),
            ..Default::default()
        };
        assert!(check_profile(&long).is_err());
        let many = Profile {
            capabilities: vec!["x".into(); MAX_CAPABILITIES + 1],
            ..Default::default()
        };
        assert!(check_profile(&many).is_err());
    }
}
