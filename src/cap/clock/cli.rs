//! The CLI verbs of `clock`: `claudemesh clock set|pause|resume|show`.

use super::client::line;
use crate::cli::connect::connect;
use crate::client::Home;
use anyhow::{anyhow, Result};
use argh::FromArgs;

/// the mesh's simulation clock
#[derive(FromArgs)]
#[argh(subcommand, name = "clock")]
pub struct ClockCmd {
    #[argh(subcommand)]
    pub cmd: ClockSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum ClockSub {
    Set(SetCmd),
    Pause(PauseCmd),
    Resume(ResumeCmd),
    Show(ShowCmd),
}

/// run the clock at SPEED (1..100 mesh minutes per wall minute)
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
pub struct SetCmd {
    #[argh(positional)]
    pub speed: u32,
    /// mesh time to start at, RFC 3339 (default now; only forward on an existing clock)
    #[argh(option)]
    pub start: Option<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// pause the clock (mesh time stands still)
#[derive(FromArgs)]
#[argh(subcommand, name = "pause")]
pub struct PauseCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// resume a paused clock
#[derive(FromArgs)]
#[argh(subcommand, name = "resume")]
pub struct ResumeCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// show mesh time, tick, speed and state
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
pub struct ShowCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh clock ...`.
pub async fn run(home: &Home, c: ClockCmd) -> Result<()> {
    let (clock, json, verb) = match c.cmd {
        ClockSub::Set(c) => {
            let start = match c.start.as_deref() {
                None => None,
                Some(s) => Some(crate::util::parse_rfc3339(s).ok_or_else(|| {
                    anyhow!("--start takes an RFC 3339 time such as 2027-01-04T09:00:00Z")
                })?),
            };
            let client = connect(home, c.mesh.as_deref(), false).await?;
            (
                Some(client.set_clock(c.speed, start).await?),
                c.json,
                "set: ",
            )
        }
        ClockSub::Pause(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            (Some(client.pause_clock().await?), c.json, "paused: ")
        }
        ClockSub::Resume(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            (Some(client.resume_clock().await?), c.json, "resumed: ")
        }
        ClockSub::Show(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            (client.get_clock().await?, c.json, "")
        }
    };
    match (clock, json) {
        (c, true) => println!("{}", serde_json::to_string(&c)?),
        (Some(c), false) => println!("{verb}{}", line(&c)),
        (None, false) => {
            println!("this mesh has no clock ('claudemesh clock set SPEED' starts one)")
        }
    }
    Ok(())
}
