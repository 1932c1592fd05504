//! The CLI verbs of `tasks`: `claudemesh task create|claim|unclaim|complete|get|list`.

use super::client::{line, parse_id, NewTask};
use crate::cli::connect::connect;
use crate::client::Home;
use crate::proto::tasks::Task;
use anyhow::{anyhow, Result};
use argh::FromArgs;

/// the mesh's shared task board
#[derive(FromArgs)]
#[argh(subcommand, name = "task")]
pub struct TaskCmd {
    #[argh(subcommand)]
    pub cmd: TaskSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum TaskSub {
    Create(CreateCmd),
    Claim(ClaimCmd),
    Unclaim(IdCmd),
    Complete(CompleteCmd),
    Get(GetCmd),
    List(ListCmd),
}

/// create a task
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    #[argh(positional)]
    pub title: String,
    /// details
    #[argh(option, default = "String::new()")]
    pub body: String,
    /// peer or member the task is meant for, or @group (only its members claim it)
    #[argh(option)]
    pub assignee: Option<String>,
    /// low, normal, high or urgent
    #[argh(option)]
    pub priority: Option<String>,
    /// a tag (repeatable)
    #[argh(option)]
    pub tag: Vec<String>,
    /// id of a task that must be completed first (repeatable)
    #[argh(option)]
    pub depends_on: Vec<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// claim a task (exactly one claimer wins)
#[derive(FromArgs)]
#[argh(subcommand, name = "claim")]
pub struct ClaimCmd {
    #[argh(positional)]
    pub id: String,
    /// seconds after which the claim lapses unless completed
    #[argh(option)]
    pub lease: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// give up a claimed task
#[derive(FromArgs)]
#[argh(subcommand, name = "unclaim")]
pub struct IdCmd {
    #[argh(positional)]
    pub id: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// complete a claimed task
#[derive(FromArgs)]
#[argh(subcommand, name = "complete")]
pub struct CompleteCmd {
    #[argh(positional)]
    pub id: String,
    /// what came of it
    #[argh(option, default = "String::new()")]
    pub result: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// show a task with its history
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    #[argh(positional)]
    pub id: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list tasks, newest first
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// open, claimed or completed
    #[argh(option)]
    pub status: Option<String>,
    /// for (or claimed by) this peer
    #[argh(option)]
    pub assignee: Option<String>,
    /// with this tag
    #[argh(option)]
    pub tag: Option<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

fn show(t: &Task, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(t)?);
    } else {
        println!("{}", line(t));
    }
    Ok(())
}

/// Run `claudemesh task ...`.
pub async fn run(home: &Home, c: TaskCmd) -> Result<()> {
    match c.cmd {
        TaskSub::Create(c) => {
            let depends_on = c
                .depends_on
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let t = client
                .task_create(NewTask {
                    title: c.title,
                    body: c.body,
                    assignee: c.assignee,
                    priority: c.priority,
                    tags: c.tag,
                    depends_on,
                })
                .await?;
            show(&t, c.json)?;
        }
        TaskSub::Claim(c) => {
            let id = parse_id(&c.id).map_err(|e| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let r = client.task_claim(id, c.lease).await?;
            if c.json {
                println!("{}", serde_json::to_string(&r)?);
            } else if r.claimed {
                println!("claimed {}", line(&r.task));
            } else {
                if r.blocked_by.is_empty() {
                    println!("not claimed: {}", line(&r.task));
                } else {
                    let d: Vec<String> = r.blocked_by.iter().map(|d| d.hex()).collect();
                    println!("not claimed: waits on {}", d.join(", "));
                }
                std::process::exit(3);
            }
        }
        TaskSub::Unclaim(c) => {
            let id = parse_id(&c.id).map_err(|e| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            show(&client.task_unclaim(id).await?, c.json)?;
        }
        TaskSub::Complete(c) => {
            let id = parse_id(&c.id).map_err(|e| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            show(&client.task_complete(id, &c.result).await?, c.json)?;
        }
        TaskSub::Get(c) => {
            let id = parse_id(&c.id).map_err(|e| anyhow!(e))?;
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let t = client.task_get(id).await?;
            if c.json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                println!("{}", line(&t));
                if !t.result.is_empty() {
                    println!("result: {}", t.result);
                }
                for h in &t.history {
                    println!(
                        "  {} {} {} {}",
                        crate::util::rfc3339(h.at_ms),
                        h.by,
                        h.action,
                        h.note
                    );
                }
            }
        }
        TaskSub::List(c) => {
            let status = match c.status.as_deref() {
                Some(s) => Some(s.parse().map_err(|e: String| anyhow!(e))?),
                None => None,
            };
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let (tasks, truncated) = client.task_list(status, c.assignee, c.tag).await?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({"tasks": tasks, "truncated": truncated})
                );
            } else {
                for t in &tasks {
                    println!("{}", line(t));
                }
                if truncated {
                    println!("(more tasks: filter them)");
                }
            }
        }
    }
    Ok(())
}
