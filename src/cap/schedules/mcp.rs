//! The MCP tools of `schedules`: schedule_reminder, list_scheduled, cancel_scheduled
//! (group "schedules" of `--tools`).

use super::client::{line, When};
use crate::mcp::MeshServer;
use crate::proto::{Id16, Priority};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScheduleParams {
    /// The text to deliver.
    pub message: String,
    /// When, once: an RFC 3339 time such as "2026-12-04T17:00:00+01:00"...
    pub deliver_at: Option<String>,
    /// ...or once, this many seconds from now...
    pub in_seconds: Option<u64>,
    /// ...or repeatedly: a 5-field cron expression, e.g. "0 9 * * 1-5" (09:00 on weekdays).
    pub cron: Option<String>,
    /// Time zone of `cron` (IANA name such as "Europe/Berlin"; UTC when omitted).
    pub tz: Option<String>,
    /// Recipient(s): a peer name, "@group", "*", several separated by commas; omitted or
    /// "me" for a reminder to yourself.
    pub to: Option<String>,
    /// "now" interrupts, "next" (default) waits until the recipient is idle, "low" waits
    /// until it checks its messages.
    pub priority: Option<String>,
    /// true: the times are on the mesh's simulation clock (mesh_set_clock), not the wall.
    pub mesh_time: Option<bool>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CancelParams {
    /// The schedule's id (32 hex digits, as schedule_reminder or list_scheduled gave it).
    pub id: String,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

/// The one `When` that `p` names, or a sentence saying what to give.
pub fn when(
    deliver_at: Option<&str>,
    in_seconds: Option<u64>,
    cron: Option<&str>,
    tz: Option<&str>,
) -> Result<When, String> {
    match (deliver_at, in_seconds, cron) {
        (Some(at), None, None) => crate::util::parse_rfc3339(at).map(When::At).ok_or_else(|| {
            format!("deliver_at '{at}' is not an RFC 3339 time such as 2026-12-04T17:00:00Z")
        }),
        (None, Some(s), None) => Ok(When::In(s)),
        (None, None, Some(c)) => Ok(When::Cron {
            expr: c.to_string(),
            tz: tz.map(str::to_string),
        }),
        _ => Err("give exactly one of deliver_at, in_seconds or cron".into()),
    }
}

#[tool_router(router = schedules_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Schedule a message for later: a reminder to yourself (no 'to') or a message to peers, '@group' or '*', once (deliver_at or in_seconds) or on a cron schedule with a time zone. End-to-end encrypted like send_message; delivered even if the broker restarts, and to an offline peer when it returns. Returns the schedule id.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn schedule_reminder(
        &self,
        Parameters(p): Parameters<ScheduleParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let when = when(
                p.deliver_at.as_deref(),
                p.in_seconds,
                p.cron.as_deref(),
                p.tz.as_deref(),
            )?;
            let priority: Priority = p.priority.as_deref().unwrap_or("next").parse()?;
            let s = link
                .client
                .schedule_on(
                    p.to.as_deref(),
                    &p.message,
                    when,
                    priority,
                    p.mesh_time.unwrap_or(false),
                )
                .await
                .map_err(|e| e.to_string())?;
            let text = format!("scheduled (id {}): {}", s.id, line(&s));
            Ok((text, serde_json::to_value(&s).unwrap_or_default()))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "List the mesh's pending scheduled messages and reminders, soonest first (the text only of those you made).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_scheduled(
        &self,
        Parameters(p): Parameters<crate::mcp::MeshParam>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let all = link
                .client
                .list_scheduled()
                .await
                .map_err(|e| e.to_string())?;
            let mut text = if all.is_empty() {
                "nothing scheduled".to_string()
            } else {
                format!("{} schedule(s):", all.len())
            };
            for s in &all {
                text.push('\n');
                text.push_str(&line(s));
            }
            Ok((text, serde_json::json!({ "schedules": all })))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Cancel a scheduled message or reminder by id (its creator or a mesh admin).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn cancel_scheduled(
        &self,
        Parameters(p): Parameters<CancelParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let id = Id16::parse_hex(&p.id).ok_or("id is 32 hex digits (see list_scheduled)")?;
            let id = link
                .client
                .cancel_scheduled(id)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("cancelled schedule {}", id.hex()),
                serde_json::json!({ "cancelled": id.hex() }),
            ))
        }
        .await;
        self.done_json(r).await
    }
}
