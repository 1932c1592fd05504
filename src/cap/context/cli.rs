//! The CLI verbs of `context`: `claudemesh context share|get|list`.

use super::client::{detail, line};
use crate::cap::leases::client::lease_path;
use crate::cli::connect::connect;
use crate::client::Home;
use anyhow::Result;
use argh::FromArgs;

/// what sessions have learned: share yours, search others'
#[derive(FromArgs)]
#[argh(subcommand, name = "context")]
pub struct ContextCmd {
    #[argh(subcommand)]
    pub cmd: ContextSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum ContextSub {
    Share(ShareCmd),
    Get(GetCmd),
    List(ListCmd),
}

/// share (or replace) this session's context
#[derive(FromArgs)]
#[argh(subcommand, name = "share")]
pub struct ShareCmd {
    #[argh(positional)]
    pub summary: String,
    /// a file read (repeatable; relative to the project root)
    #[argh(option, long = "file")]
    pub files: Vec<String>,
    /// a key finding (repeatable)
    #[argh(option, long = "finding")]
    pub findings: Vec<String>,
    /// a tag (repeatable)
    #[argh(option, long = "tag")]
    pub tags: Vec<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// search shared contexts, best match first
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    #[argh(positional)]
    pub query: String,
    /// at most this many (default 10)
    #[argh(option)]
    pub limit: Option<u32>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list shared contexts, most recent first
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// at most this many (default 50)
    #[argh(option)]
    pub limit: Option<u32>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh context ...`.
pub async fn run(home: &Home, c: ContextCmd) -> Result<()> {
    match c.cmd {
        ContextSub::Share(c) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            let files = c.files.iter().map(|f| lease_path(&cwd, f)).collect();
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let ctx = client
                .share_context(&c.summary, files, c.findings, c.tags)
                .await?;
            if c.json {
                println!("{}", serde_json::to_string(&ctx)?);
            } else {
                println!("shared {}", line(&ctx));
            }
        }
        ContextSub::Get(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let hits = client.get_context(&c.query, c.limit).await?;
            if c.json {
                println!("{}", serde_json::to_string(&hits)?);
            } else if hits.is_empty() {
                println!("no context matches");
            } else {
                for h in &hits {
                    println!("[{:.2}] {}", h.score, detail(&h.context));
                }
            }
        }
        ContextSub::List(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let (all, total) = client.list_contexts(c.limit).await?;
            if c.json {
                println!("{}", serde_json::json!({ "contexts": all, "total": total }));
            } else {
                for ctx in &all {
                    println!("{}", line(ctx));
                }
                if (all.len() as u32) < total {
                    println!("({} of {total}; --limit for more)", all.len());
                }
            }
        }
    }
    Ok(())
}
