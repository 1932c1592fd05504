//! The MCP tools of `tasks`: create_task, claim_task, unclaim_task, complete_task,
//! get_task, list_tasks, watch_task (group "tasks" of `--tools`).

use super::client::{line, parse_id, NewTask};
use crate::mcp::MeshServer;
use crate::proto::tasks::Task;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateParams {
    /// What is to be done, in a line.
    pub title: String,
    /// Details, acceptance criteria.
    pub body: Option<String>,
    /// Peer or member name the task is meant for (they are told; anyone may claim it), or
    /// "@group": then only the group's members (sub-groups included, observers not) or a
    /// mesh admin claim it, and the group's leads may also complete or unclaim it.
    pub assignee: Option<String>,
    /// low, normal (default), high or urgent.
    pub priority: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Ids of tasks that must be completed before this one can be claimed.
    pub depends_on: Option<Vec<String>>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdParams {
    /// The task id (32 hex digits).
    pub id: String,
    /// claim_task only: the claim lapses after this many seconds unless completed.
    pub lease_s: Option<u64>,
    /// complete_task only: what came of it.
    pub result: Option<String>,
    /// watch_task only: false stops watching (default true).
    pub on: Option<bool>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListParams {
    /// open, claimed or completed.
    pub status: Option<String>,
    /// Tasks for (or claimed by) this peer name.
    pub assignee: Option<String>,
    pub tag: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

fn json(t: &Task) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

fn detail(t: &Task) -> String {
    let mut s = line(t);
    if !t.body.is_empty() {
        s.push_str(&format!("\n{}", t.body));
    }
    if !t.result.is_empty() {
        s.push_str(&format!("\nresult: {}", t.result));
    }
    if !t.depends_on.is_empty() {
        let d: Vec<String> = t.depends_on.iter().map(|d| d.hex()).collect();
        s.push_str(&format!("\ndepends on: {}", d.join(", ")));
    }
    if let Some(l) = t.lease_until_ms {
        s.push_str(&format!("\nclaim lapses at {}", crate::util::rfc3339(l)));
    }
    for h in &t.history {
        s.push_str(&format!(
            "\n  {} {} {}{}",
            crate::util::rfc3339(h.at_ms),
            h.by,
            h.action,
            if h.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", h.note)
            }
        ));
    }
    s
}

#[tool_router(router = tasks_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Create a task on the mesh's shared task board for any session to claim (optionally meant for one peer or for a @group, whose members alone may claim it; with tags and dependencies on other tasks).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_task(
        &self,
        Parameters(p): Parameters<CreateParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let depends_on = p
                .depends_on
                .unwrap_or_default()
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let t = link
                .client
                .task_create(NewTask {
                    title: p.title,
                    body: p.body.unwrap_or_default(),
                    assignee: p.assignee,
                    priority: p.priority,
                    tags: p.tags.unwrap_or_default(),
                    depends_on,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("created task (id {}): {}", t.id.hex(), line(&t)),
                json(&t),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Claim a task so you work on it: exactly one session wins a claim. If another holds it, it is completed, or it waits on open dependencies, the answer says so and nothing changes. lease_s: the claim lapses unless you complete it in time.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claim_task(
        &self,
        Parameters(p): Parameters<IdParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let c = link
                .client
                .task_claim(parse_id(&p.id)?, p.lease_s)
                .await
                .map_err(|e| e.to_string())?;
            let text = if c.claimed {
                format!("claimed: {}", detail(&c.task))
            } else if !c.blocked_by.is_empty() {
                let d: Vec<String> = c.blocked_by.iter().map(|d| d.hex()).collect();
                format!(
                    "not claimed: task {} waits on open task(s) {}",
                    c.task.id.hex(),
                    d.join(", ")
                )
            } else {
                format!("not claimed: {}", line(&c.task))
            };
            let data = serde_json::json!({
                "claimed": c.claimed, "task": json(&c.task),
                "blocked_by": c.blocked_by.iter().map(|d| d.hex()).collect::<Vec<_>>(),
            });
            Ok((text, data))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Give up a task you claimed; it is open for others again.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn unclaim_task(
        &self,
        Parameters(p): Parameters<IdParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let t = link
                .client
                .task_unclaim(parse_id(&p.id)?)
                .await
                .map_err(|e| e.to_string())?;
            Ok((format!("unclaimed: {}", line(&t)), json(&t)))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Mark a task you claimed as completed, with its result (what was done, where to find it). Its creator is told.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn complete_task(
        &self,
        Parameters(p): Parameters<IdParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let t = link
                .client
                .task_complete(parse_id(&p.id)?, p.result.as_deref().unwrap_or_default())
                .await
                .map_err(|e| e.to_string())?;
            Ok((format!("completed: {}", line(&t)), json(&t)))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Show one task: status, who created, claimed or completed it, its result and full history.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_task(
        &self,
        Parameters(p): Parameters<IdParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let t = link
                .client
                .task_get(parse_id(&p.id)?)
                .await
                .map_err(|e| e.to_string())?;
            Ok((detail(&t), json(&t)))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "List the mesh's tasks, newest first, optionally by status (open, claimed, completed), assignee or tag.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tasks(
        &self,
        Parameters(p): Parameters<ListParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let status = match p.status.as_deref() {
                Some(s) => Some(s.parse()?),
                None => None,
            };
            let (tasks, truncated) = link
                .client
                .task_list(status, p.assignee, p.tag)
                .await
                .map_err(|e| e.to_string())?;
            let mut text = if tasks.is_empty() {
                format!("no matching tasks in mesh \"{}\"", link.mesh)
            } else {
                format!("{} task(s):", tasks.len())
            };
            for t in &tasks {
                text.push('\n');
                text.push_str(&line(t));
            }
            if truncated {
                text.push_str("\n(more tasks: filter by status, assignee or tag)");
            }
            let list: Vec<_> = tasks.iter().map(json).collect();
            Ok((
                text,
                serde_json::json!({"tasks": list, "truncated": truncated}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Be told (as claudemesh events) of every change to a task: claims, completion, lapsed leases. on=false stops.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn watch_task(
        &self,
        Parameters(p): Parameters<IdParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let id = parse_id(&p.id)?;
            let on = link
                .client
                .task_watch(id, p.on.unwrap_or(true))
                .await
                .map_err(|e| e.to_string())?;
            let text = if on {
                format!("watching task {}", id.hex())
            } else {
                format!("stopped watching task {}", id.hex())
            };
            Ok((text, serde_json::json!({"id": id.hex(), "watching": on})))
        }
        .await;
        self.done_json(r).await
    }
}
