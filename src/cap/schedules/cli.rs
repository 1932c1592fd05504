//! The CLI verbs of `schedules`: `claudemesh schedule add|list|cancel`.

use super::client::line;
use super::mcp::when;
use crate::cli::connect::connect;
use crate::client::Home;
use crate::proto::{Id16, Priority};
use anyhow::{anyhow, Result};
use argh::FromArgs;

/// messages and reminders delivered later, once or on a cron schedule
#[derive(FromArgs)]
#[argh(subcommand, name = "schedule")]
pub struct ScheduleCmd {
    #[argh(subcommand)]
    pub cmd: ScheduleSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum ScheduleSub {
    Add(AddCmd),
    List(ListCmd),
    Cancel(CancelCmd),
}

/// schedule TEXT: --at TIME, --in DURATION, or --cron EXPR [--tz ZONE]
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
pub struct AddCmd {
    #[argh(positional)]
    pub text: String,
    /// recipient(s): peer, @group, *, comma-separated (default: yourself)
    #[argh(option)]
    pub to: Option<String>,
    /// once, at this RFC 3339 time (2026-12-04T17:00:00Z)
    #[argh(option)]
    pub at: Option<String>,
    /// once, after this long (90s, 15m, 2h, 1d)
    #[argh(option, long = "in")]
    pub in_: Option<String>,
    /// repeatedly, at each match of a 5-field cron expression ("0 9 * * 1-5")
    #[argh(option)]
    pub cron: Option<String>,
    /// time zone of --cron (IANA name; default UTC)
    #[argh(option)]
    pub tz: Option<String>,
    /// now, next (default) or low
    #[argh(option, default = "String::from(\"next\")")]
    pub priority: String,
    /// times on the mesh's simulation clock ('claudemesh clock set'), not the wall
    #[argh(switch)]
    pub mesh_time: bool,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list the mesh's pending schedules
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// cancel a schedule by id
#[derive(FromArgs)]
#[argh(subcommand, name = "cancel")]
pub struct CancelCmd {
    #[argh(positional)]
    pub id: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh schedule ...`.
pub async fn run(home: &Home, c: ScheduleCmd) -> Result<()> {
    match c.cmd {
        ScheduleSub::Add(c) => {
            let secs = match c.in_.as_deref() {
                Some(d) => Some(
                    crate::util::parse_duration(d)
                        .ok_or_else(|| anyhow!("--in takes a duration such as 90s, 15m, 2h, 1d"))?
                        .as_secs(),
                ),
                None => None,
            };
            let when =
                when(c.at.as_deref(), secs, c.cron.as_deref(), c.tz.as_deref()).map_err(|e| {
                    anyhow!(
                        "{}",
                        e.replace("deliver_at", "--at")
                            .replace("in_seconds", "--in")
                            .replace("cron", "--cron")
                    )
                })?;
            let priority: Priority = c.priority.parse().map_err(|e: String| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let s = client
                .schedule_on(c.to.as_deref(), &c.text, when, priority, c.mesh_time)
                .await?;
            if c.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("scheduled {}", line(&s));
            }
        }
        ScheduleSub::List(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let all = client.list_scheduled().await?;
            if c.json {
                println!("{}", serde_json::to_string(&all)?);
            } else if all.is_empty() {
                println!("nothing scheduled");
            } else {
                for s in &all {
                    println!("{}", line(s));
                }
            }
        }
        ScheduleSub::Cancel(c) => {
            let id = Id16::parse_hex(&c.id).ok_or_else(|| anyhow!("the id is 32 hex digits"))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let id = client.cancel_scheduled(id).await?;
            if c.json {
                println!("{}", serde_json::json!({ "cancelled": id.hex() }));
            } else {
                println!("cancelled {}", id.hex());
            }
        }
    }
    Ok(())
}
