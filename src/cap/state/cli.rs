//! The CLI verbs of `state`: `claudemesh state set|get|delete|list|watch`.

use crate::cli::connect::connect;
use crate::client::{Home, Inbound};
use crate::proto::state::Entry;
use crate::proto::{Json, Push};
use crate::util::rfc3339;
use anyhow::{Context, Result};
use argh::FromArgs;

/// read and write the mesh's shared state
#[derive(FromArgs)]
#[argh(subcommand, name = "state")]
pub struct StateCmd {
    #[argh(subcommand)]
    pub cmd: StateSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum StateSub {
    Set(SetCmd),
    Get(GetCmd),
    Delete(DeleteCmd),
    List(ListCmd),
    Watch(WatchCmd),
}

/// set KEY to VALUE (JSON; text that is not JSON is stored as a string)
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
pub struct SetCmd {
    #[argh(positional)]
    pub key: String,
    #[argh(positional)]
    pub value: String,
    /// write only if KEY is at this version (0: only if absent)
    #[argh(option)]
    pub if_version: Option<u64>,
    /// seconds until KEY vanishes
    #[argh(option)]
    pub ttl: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// print KEY's value, version, writer and time
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    #[argh(positional)]
    pub key: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// delete KEY
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
pub struct DeleteCmd {
    #[argh(positional)]
    pub key: String,
    /// delete only if KEY is at this version
    #[argh(option)]
    pub if_version: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list keys (under PREFIX) with their values
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    #[argh(positional, default = "String::new()")]
    pub prefix: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// print changes of KEY (or of keys under --prefix) until interrupted
#[derive(FromArgs)]
#[argh(subcommand, name = "watch")]
pub struct WatchCmd {
    #[argh(positional)]
    pub key: Option<String>,
    /// watch every key starting with this instead
    #[argh(option)]
    pub prefix: Option<String>,
    /// start at this version (changes since then first)
    #[argh(option)]
    pub from_version: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print one JSON object per change
    #[argh(switch)]
    pub json: bool,
}

fn line(e: &Entry) -> String {
    format!(
        "{} = {}  (version {}, {} at {}{})",
        e.key,
        e.value.as_str(),
        e.version,
        e.updated_by,
        rfc3339(e.updated_at_ms),
        e.expires_at_ms
            .map(|t| format!(", expires {}", rfc3339(t)))
            .unwrap_or_default()
    )
}

/// Run `claudemesh state ...`.
pub async fn run(home: &Home, c: StateCmd) -> Result<()> {
    match c.cmd {
        StateSub::Set(c) => {
            let value = Json::parse(&c.value)
                .unwrap_or_else(|_| Json::from_value(&serde_json::Value::String(c.value.clone())));
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let w = client.state_set(&c.key, value, c.if_version, c.ttl).await?;
            if c.json {
                println!("{}", serde_json::to_string(&w)?);
            } else if w.applied {
                println!("set {} (version {})", c.key, w.version);
            } else {
                match &w.current {
                    Some(e) => println!(
                        "not set: {} is at version {}: {}",
                        c.key,
                        w.version,
                        line(e)
                    ),
                    None => println!("not set: {} does not exist", c.key),
                }
                std::process::exit(3);
            }
        }
        StateSub::Get(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let e = client.state_get(&c.key).await?;
            match (e, c.json) {
                (e, true) => println!("{}", serde_json::to_string(&e)?),
                (Some(e), false) => println!("{}", line(&e)),
                (None, false) => {
                    eprintln!("{} is not set", c.key);
                    std::process::exit(3);
                }
            }
        }
        StateSub::Delete(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let (applied, existed, version) = client.state_delete(&c.key, c.if_version).await?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({"applied": applied, "existed": existed, "version": version})
                );
            } else if applied {
                println!("deleted {} (version {version})", c.key);
            } else if !existed {
                println!("{} was not set", c.key);
            } else {
                println!("not deleted: {} is at version {version}", c.key);
                std::process::exit(3);
            }
        }
        StateSub::List(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let (entries, truncated) = client.state_list(&c.prefix).await?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({"entries": entries, "truncated": truncated})
                );
            } else {
                for e in &entries {
                    println!("{}", line(e));
                }
                if truncated {
                    println!("(more keys: narrow the prefix)");
                }
            }
        }
        StateSub::Watch(c) => {
            if c.key.is_some() == c.prefix.is_some() {
                anyhow::bail!("give a KEY or --prefix PREFIX (\"\" for every key)");
            }
            let client = connect(home, c.mesh.as_deref(), true).await?;
            let (_, next) = client
                .state_watch(c.key.as_deref(), c.prefix.as_deref(), c.from_version)
                .await
                .context("watch")?;
            if !c.json {
                eprintln!("watching from version {next} (Ctrl-C stops)");
            }
            while let Some(x) = client.recv().await {
                let Inbound::Feed(f) = x else { continue };
                let Push::State(ch) = &f.body else { continue };
                if c.json {
                    println!("{}", serde_json::to_string(ch)?);
                } else {
                    println!("{}", crate::cap::state::client::change_event(ch).text);
                }
            }
        }
    }
    Ok(())
}
