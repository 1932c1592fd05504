//! The CLI verbs of `leases`: `claudemesh lease reserve|release|list`.

use super::client::{lease_path, line};
use crate::cli::connect::connect;
use crate::client::Home;
use crate::proto::Id16;
use anyhow::{anyhow, Result};
use argh::FromArgs;

/// advisory file leases: who is editing what
#[derive(FromArgs)]
#[argh(subcommand, name = "lease")]
pub struct LeaseCmd {
    #[argh(subcommand)]
    pub cmd: LeaseSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum LeaseSub {
    Reserve(ReserveCmd),
    Release(ReleaseCmd),
    List(ListCmd),
}

/// reserve files or patterns (relative to the project root)
#[derive(FromArgs)]
#[argh(subcommand, name = "reserve")]
pub struct ReserveCmd {
    #[argh(positional)]
    pub paths: Vec<String>,
    /// share with other shared holders instead of holding alone
    #[argh(switch)]
    pub shared: bool,
    /// seconds until the lease lapses (default 3600)
    #[argh(option)]
    pub ttl: Option<u64>,
    /// what you are doing
    #[argh(option, default = "String::new()")]
    pub reason: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// release reserved patterns, or a lease by --id
#[derive(FromArgs)]
#[argh(subcommand, name = "release")]
pub struct ReleaseCmd {
    #[argh(positional)]
    pub paths: Vec<String>,
    /// the lease id
    #[argh(option)]
    pub id: Option<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list leases (covering PATH)
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    #[argh(positional)]
    pub path: Option<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh lease ...`.
pub async fn run(home: &Home, c: LeaseCmd) -> Result<()> {
    let cwd = std::env::current_dir().unwrap_or_default();
    match c.cmd {
        LeaseSub::Reserve(c) => {
            let paths: Vec<String> = c.paths.iter().map(|p| lease_path(&cwd, p)).collect();
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let r = client
                .reserve_files(paths, Some(!c.shared), c.ttl, &c.reason)
                .await?;
            if c.json {
                println!("{}", serde_json::to_string(&r)?);
            } else if let (true, Some(l)) = (r.granted, &r.lease) {
                println!("reserved {}", line(l));
            } else {
                println!("not reserved; held by:");
                for l in &r.conflicts {
                    println!("  {}", line(l));
                }
                std::process::exit(3);
            }
        }
        LeaseSub::Release(c) => {
            let id = match c.id.as_deref() {
                Some(s) => {
                    Some(Id16::parse_hex(s).ok_or_else(|| anyhow!("--id is 32 hex digits"))?)
                }
                None => None,
            };
            let paths: Vec<String> = c.paths.iter().map(|p| lease_path(&cwd, p)).collect();
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let released = client.release_files(paths, id).await?;
            let ids: Vec<String> = released.iter().map(|i| i.hex()).collect();
            if c.json {
                println!("{}", serde_json::json!({ "released": ids }));
            } else if ids.is_empty() {
                println!("nothing released");
            } else {
                println!("released {}", ids.join(", "));
            }
        }
        LeaseSub::List(c) => {
            let path = c.path.as_deref().map(|p| lease_path(&cwd, p));
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let leases = client.list_reservations(path).await?;
            if c.json {
                println!("{}", serde_json::to_string(&leases)?);
            } else {
                for l in &leases {
                    println!("{}", line(l));
                }
            }
        }
    }
    Ok(())
}
