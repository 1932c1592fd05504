//! `claudemesh hook working|idle|post-tool`: Claude Code hooks for UserPromptSubmit, Stop
//! and PostToolUse. Each sets the session's status in every mesh and (working: `now` and
//! `next`; post-tool: only `now`) hands waiting messages to the model as additional
//! context, acknowledging them so no other path shows them again. Messages the MCP server
//! pushed as channel notifications and that the session's transcript shows arrived are
//! acknowledged without being shown again. A hook never blocks the session: when the
//! broker is unreachable it prints nothing and exits 0.

use super::{session, transcript};
use crate::client::config::Home;
use crate::client::format;
use crate::client::{Client, ClientOptions, InboxMessage};
use crate::proto::{Priority, Status};
use serde::Deserialize;
use std::time::Duration;

/// Which hook is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// UserPromptSubmit: status working, deliver unread `now` and `next` messages (`low`
    /// ones wait for check_messages; the context mentions them).
    Working,
    /// Stop: status idle (nothing printed: a Stop hook's context would make Claude continue).
    Idle,
    /// PostToolUse: deliver `now` messages.
    PostTool,
    /// PreToolUse on Edit/Write (opt-in, `install --lease-hook`): warn when another peer
    /// holds a file lease on the file about to change. Never blocks.
    PreEdit,
}

impl std::str::FromStr for HookKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "working" => Ok(HookKind::Working),
            "idle" => Ok(HookKind::Idle),
            "post-tool" => Ok(HookKind::PostTool),
            "pre-edit" => Ok(HookKind::PreEdit),
            _ => Err(format!(
                "unknown hook '{s}' (expected working, idle, post-tool or pre-edit)"
            )),
        }
    }
}

/// The part of Claude Code's hook input we use.
#[derive(Debug, Default, Deserialize)]
pub struct HookInput {
    pub session_id: Option<String>,
    pub hook_event_name: Option<String>,
    pub transcript_path: Option<String>,
    /// PreToolUse: the tool's arguments (`file_path` / `notebook_path`) and the session's
    /// directory.
    pub tool_input: Option<serde_json::Value>,
    pub cwd: Option<String>,
}

/// Run a hook; returns what to print on stdout (nothing when there is nothing to say).
pub async fn run(home: &Home, kind: HookKind, input: &str) -> Option<String> {
    let input: HookInput = serde_json::from_str(input).unwrap_or_default();
    let session_id = input
        .session_id
        .clone()
        .filter(|s| session::valid_session_id(s))
        .or_else(|| {
            std::env::var("CLAUDEMESH_SESSION_ID")
                .ok()
                .filter(|s| session::valid_session_id(s))
        })?;
    let cfg = home.load().ok()?;
    if kind == HookKind::PreEdit {
        return lease_warning(home, &cfg.meshes, &session_id, &input).await;
    }
    let mut shown: Vec<(String, InboxMessage)> = Vec::new();
    let mut low_waiting = 0usize;
    for mc in &cfg.meshes {
        let name = session::peer_name(&mc.name, &session_id);
        let o = ClientOptions::one_shot(home, mc, &session_id, &name);
        let Ok(c) = Client::connect(o, Duration::from_secs(5)).await else {
            tracing::warn!(mesh = %mc.mesh_name, "hook: broker unreachable");
            continue;
        };
        let status = if kind == HookKind::Idle {
            Status::Idle
        } else {
            Status::Working
        };
        let _ = c.set_status(status).await;
        if kind != HookKind::Idle {
            if let Ok(mut msgs) = c.pull_all().await {
                // Channel pushes that reached the model: acknowledged, not shown again.
                if let Some(t) = &input.transcript_path {
                    let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
                    let seen = transcript::confirmed(std::path::Path::new(t), &ids);
                    let (arrived, rest): (Vec<_>, Vec<_>) =
                        msgs.into_iter().partition(|m| seen.contains(&m.id));
                    c.ack(&arrived.iter().map(|m| m.msg_id).collect::<Vec<_>>());
                    msgs = rest;
                }
                // `low` waits for check_messages: a prompt does not pull it in.
                low_waiting += msgs.iter().filter(|m| m.priority == Priority::Low).count();
                let take: Vec<InboxMessage> = msgs
                    .into_iter()
                    .filter(|m| match kind {
                        HookKind::Working => m.priority != Priority::Low,
                        _ => m.priority == Priority::Now,
                    })
                    .collect();
                c.ack(&take.iter().map(|m| m.msg_id).collect::<Vec<_>>());
                let _ = c.ping().await; // the acks are processed before we exit
                shown.extend(take.into_iter().map(|m| (mc.mesh_name.clone(), m)));
            }
        }
        c.close().await;
    }
    if shown.is_empty() && (low_waiting == 0 || kind != HookKind::Working) {
        return None;
    }
    let event = input.hook_event_name.unwrap_or_else(|| match kind {
        HookKind::Working => "UserPromptSubmit".into(),
        HookKind::PostTool => "PostToolUse".into(),
        HookKind::Idle => "Stop".into(),
        HookKind::PreEdit => "PreToolUse".into(),
    });
    let low_note =
        format!("({low_waiting} low-priority message(s) wait: check_messages when convenient.)\n");
    let text = match (
        shown.is_empty(),
        low_waiting > 0 && kind == HookKind::Working,
    ) {
        (true, _) => format!("[claudemesh] {low_note}"),
        (false, true) => format!(
            "{}\n{low_note}",
            format::messages(&shown, cfg.meshes.len() > 1, &[])
        ),
        (false, false) => format::messages(&shown, cfg.meshes.len() > 1, &[]),
    };
    Some(serde_json::json!({"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}).to_string())
}

/// The PreToolUse lease check: the leases of other peers covering the file, as context
/// for the model and a message for the user; nothing when the file is free, the input has
/// no file, or no broker answers within a few seconds.
async fn lease_warning(
    home: &Home,
    meshes: &[crate::client::config::MeshConfig],
    session_id: &str,
    input: &HookInput,
) -> Option<String> {
    let tool = input.tool_input.as_ref()?;
    let file = tool
        .get("file_path")
        .or_else(|| tool.get("notebook_path"))
        .and_then(|v| v.as_str())?;
    let cwd = input
        .cwd
        .as_deref()
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    let path = crate::cap::leases::client::lease_path(&cwd, file);
    let mut held = Vec::new();
    for mc in meshes {
        let name = session::peer_name(&mc.name, session_id);
        let o = ClientOptions::one_shot(home, mc, session_id, &name);
        let Ok(c) = Client::connect(o, Duration::from_secs(3)).await else {
            continue;
        };
        let me = c.peer_key();
        if let Ok(Ok(leases)) = tokio::time::timeout(
            Duration::from_secs(3),
            c.list_reservations(Some(path.clone())),
        )
        .await
        {
            held.extend(leases.into_iter().filter(|l| l.holder_key != me));
        }
        c.close().await;
    }
    if held.is_empty() {
        return None;
    }
    let who: Vec<String> = held
        .iter()
        .map(|l| {
            format!(
                "{} ({}){}, until {}",
                l.holder,
                l.paths.join(", "),
                if l.reason.is_empty() {
                    String::new()
                } else {
                    format!(": \"{}\"", l.reason)
                },
                crate::util::rfc3339(l.expires_at_ms)
            )
        })
        .collect();
    let text = format!(
        "[claudemesh] {path} is leased by another session: {}. Coordinate with them (send_message) before changing it, or pick other work.",
        who.join("; ")
    );
    Some(
        serde_json::json!({
            "systemMessage": text,
            "hookSpecificOutput": {"hookEventName": "PreToolUse", "additionalContext": text},
        })
        .to_string(),
    )
}
