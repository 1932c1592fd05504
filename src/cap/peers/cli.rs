//! The CLI verbs of `peers`: `claudemesh peers` and `claudemesh group join|leave|list`.

use crate::cli::connect::connect;
use crate::client::Home;
use crate::util::rfc3339;
use anyhow::Result;
use argh::FromArgs;

/// list the peers of a mesh
#[derive(FromArgs)]
#[argh(subcommand, name = "peers")]
pub struct PeersCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// join, leave or list groups
#[derive(FromArgs)]
#[argh(subcommand, name = "group")]
pub struct GroupCmd {
    #[argh(subcommand)]
    pub cmd: GroupSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum GroupSub {
    Join(GroupJoinCmd),
    Leave(GroupLeaveCmd),
    List(GroupListCmd),
}

/// list the mesh's groups with their members and roles
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct GroupListCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// join a group (messages to @NAME reach you)
#[derive(FromArgs)]
#[argh(subcommand, name = "join")]
pub struct GroupJoinCmd {
    /// group name (sub-groups with '/': eng/web)
    #[argh(positional)]
    pub name: String,
    /// your role in it: lead, member, observer, or free text (default member)
    #[argh(option, default = "\"member\".into()")]
    pub role: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
}

/// leave a group
#[derive(FromArgs)]
#[argh(subcommand, name = "leave")]
pub struct GroupLeaveCmd {
    /// group name
    #[argh(positional)]
    pub name: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
}

/// Run `claudemesh group join|leave`.
pub async fn group(home: &Home, c: GroupCmd) -> Result<()> {
    match c.cmd {
        GroupSub::Join(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            client.join_group(&c.name, &c.role).await?;
            println!("joined @{} as {}", c.name, c.role);
        }
        GroupSub::Leave(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            client.leave_group(&c.name).await?;
            println!("left @{}", c.name);
        }
        GroupSub::List(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let groups = client.list_groups().await?;
            if c.json {
                println!("{}", serde_json::to_string(&groups)?);
            } else if groups.is_empty() {
                println!("no groups yet: `claudemesh group join NAME` makes one");
            } else {
                print!("{}", crate::client::format::groups(&groups));
            }
        }
    }
    Ok(())
}

/// Run `claudemesh peers`.
pub async fn peers(home: &Home, c: PeersCmd) -> Result<()> {
    let client = connect(home, c.mesh.as_deref(), false).await?;
    let peers = client.list_peers().await?;
    if c.json {
        let v: Vec<_> = peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "peer_key": p.peer_pk.hex(), "online": p.online, "status": p.status,
                    "summary": p.summary, "groups": p.groups, "hostname": p.hostname, "cwd": p.cwd,
                    "connected_since": (p.connected_since_ms > 0).then(|| rfc3339(p.connected_since_ms)),
                    "last_seen": (p.last_seen_ms > 0).then(|| rfc3339(p.last_seen_ms)),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let me = client.peer_key();
    for p in peers {
        let groups: Vec<String> = p
            .groups
            .iter()
            .map(|g| format!("@{}:{}", g.group, g.role))
            .collect();
        println!(
            "{}{:<16} {:<8} {:<8} {:<24} {}{}",
            if p.peer_pk == me { "*" } else { " " },
            p.name,
            if p.online { "online" } else { "offline" },
            format!("{:?}", p.status).to_lowercase(),
            groups.join(","),
            p.hostname,
            if p.summary.is_empty() {
                String::new()
            } else {
                format!("  — {}", p.summary)
            }
        );
    }
    Ok(())
}
