//! `claudemesh launch`: run Claude Code as a mesh peer. Picks (or resumes) the session id,
//! enrolls first with `--join`, and starts `claude` with the session id, the claudemesh MCP
//! server, the channel flag and the environment the MCP server and hooks read. Claude's
//! exit code is passed through.

use std::path::PathBuf;

/// What to launch.
#[derive(Debug, Default, Clone)]
pub struct LaunchPlan {
    /// `--resume ID`.
    pub resume: Option<String>,
    /// `--continue`.
    pub continue_last: bool,
    pub name: Option<String>,
    /// `a,b:lead` → [("a", default role), ("b", "lead")].
    pub groups: String,
    pub role: Option<String>,
    pub message_mode: String,
    pub skip_permissions: bool,
    pub claude_args: Vec<String>,
    /// `--tools msg,peers`: the MCP tool groups to offer (`CLAUDEMESH_TOOLS`).
    pub tools: Option<String>,
}

/// The command line and environment for `claude`.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub session_id: String,
}

/// `CLAUDEMESH_CLAUDE_BIN`, else `claude` on PATH.
pub fn claude_program() -> PathBuf {
    std::env::var_os("CLAUDEMESH_CLAUDE_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("claude"))
}

/// `-p`/`--print` among Claude's arguments: a non-interactive run.
pub fn is_print_mode(claude_args: &[String]) -> bool {
    claude_args.iter().any(|a| a == "-p" || a == "--print")
}

/// Build the `claude` invocation. `exe` is this claudemesh binary.
pub fn prepare(plan: &LaunchPlan, exe: &std::path::Path, session_id: String) -> Prepared {
    let mut plan = plan.clone();
    if plan.message_mode == "push" && is_print_mode(&plan.claude_args) {
        // Claude Code drops development channels in print mode, so pushed messages would
        // be acknowledged and never shown: fall back to the inbox (hooks, check_messages).
        plan.message_mode = "inbox".into();
    }
    let plan = &plan;
    let mut args = Vec::new();
    if let Some(id) = &plan.resume {
        args.extend(["--resume".to_string(), id.clone()]);
    } else if plan.continue_last {
        args.push("--continue".into());
    } else {
        args.extend(["--session-id".to_string(), session_id.clone()]);
    }
    let mcp_args = vec![
        "mcp".to_string(),
        "--message-mode".to_string(),
        plan.message_mode.clone(),
    ];
    let server = serde_json::json!({"mcpServers": {"claudemesh": {"type": "stdio", "command": exe.display().to_string(), "args": mcp_args}}});
    args.extend(["--mcp-config".to_string(), server.to_string()]);
    if plan.message_mode == "push" {
        args.extend([
            "--dangerously-load-development-channels".to_string(),
            "server:claudemesh".to_string(),
        ]);
    }
    if plan.skip_permissions {
        args.push("--dangerously-skip-permissions".into());
    }
    args.extend(plan.claude_args.iter().cloned());
    let mut env = vec![
        ("CLAUDEMESH_SESSION_ID".to_string(), session_id.clone()),
        (
            "CLAUDEMESH_MESSAGE_MODE".to_string(),
            plan.message_mode.clone(),
        ),
        ("MCP_TIMEOUT".to_string(), "30000".to_string()),
        ("MAX_MCP_OUTPUT_TOKENS".to_string(), "50000".to_string()),
        // Claude Code only delivers channel notifications on the handshake protocol era.
        ("MCP_PROTOCOL_NEGOTIATION".to_string(), "legacy".to_string()),
    ];
    if let Some(n) = &plan.name {
        env.push(("CLAUDEMESH_NAME".into(), n.clone()));
    }
    if let Some(t) = &plan.tools {
        env.push(("CLAUDEMESH_TOOLS".into(), t.clone()));
    }
    if !plan.groups.is_empty() {
        env.push((
            "CLAUDEMESH_GROUPS".into(),
            with_default_role(&plan.groups, plan.role.as_deref()),
        ));
    }
    Prepared {
        program: claude_program(),
        args,
        env,
        session_id,
    }
}

/// `a,b:lead` with a default role → `a:<role>,b:lead`.
fn with_default_role(groups: &str, role: Option<&str>) -> String {
    groups
        .split(',')
        .filter(|g| !g.trim().is_empty())
        .map(|g| match (g.split_once(':'), role) {
            (Some(_), _) | (None, None) => g.trim().to_string(),
            (None, Some(r)) => format!("{}:{r}", g.trim()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse `CLAUDEMESH_GROUPS` (`a,b:lead`) into (group, role) pairs.
pub fn parse_groups(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter(|g| !g.trim().is_empty())
        .map(|g| match g.split_once(':') {
            Some((g, r)) => (g.trim().to_string(), r.trim().to_string()),
            None => (g.trim().to_string(), "member".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_launch_gets_a_session_id_the_server_and_the_channel() {
        let plan = LaunchPlan {
            message_mode: "push".into(),
            skip_permissions: true,
            claude_args: vec!["--model".into(), "x".into()],
            ..Default::default()
        };
        let p = prepare(
            &plan,
            std::path::Path::new("/bin/claudemesh"),
            "sid-1".into(),
        );
        let a = p.args.join(" ");
        assert!(a.starts_with("--session-id sid-1 --mcp-config "));
        assert!(a.contains("--dangerously-load-development-channels server:claudemesh"));
        assert!(a.ends_with("--dangerously-skip-permissions --model x"));
        assert!(p.env.contains(&("MCP_TIMEOUT".into(), "30000".into())));
        assert!(p
            .env
            .contains(&("CLAUDEMESH_SESSION_ID".into(), "sid-1".into())));
    }

    #[test]
    fn resuming_keeps_the_session_id_and_inbox_mode_has_no_channel_flag() {
        let plan = LaunchPlan {
            resume: Some("abc".into()),
            message_mode: "inbox".into(),
            ..Default::default()
        };
        let p = prepare(&plan, std::path::Path::new("/bin/claudemesh"), "abc".into());
        assert_eq!(&p.args[..2], &["--resume".to_string(), "abc".to_string()]);
        assert!(!p
            .args
            .iter()
            .any(|a| a == "--session-id" || a.contains("development-channels")));
    }

    #[test]
    fn print_mode_uses_the_inbox_because_claude_drops_channels_there() {
        let plan = LaunchPlan {
            message_mode: "push".into(),
            claude_args: vec!["-p".into(), "hi".into()],
            ..Default::default()
        };
        let p = prepare(&plan, std::path::Path::new("/bin/claudemesh"), "s".into());
        assert!(!p.args.iter().any(|a| a.contains("development-channels")));
        assert!(p
            .env
            .contains(&("CLAUDEMESH_MESSAGE_MODE".into(), "inbox".into())));
    }

    #[test]
    fn groups_take_the_default_role() {
        assert_eq!(
            with_default_role("a, b:lead", Some("observer")),
            "a:observer,b:lead"
        );
        assert_eq!(
            parse_groups("a,b:lead"),
            vec![("a".into(), "member".into()), ("b".into(), "lead".into())]
        );
    }
}
