//! `claudemesh doctor`: checks the setup on this machine one by one — Claude Code on PATH,
//! the MCP entry and hooks in its config, the claudemesh config's permissions and keys, and
//! each joined mesh's broker — and says how to fix each one that fails.

use crate::claude::install::{self, ClaudePaths, HOOKS};
use crate::claude::launch::claude_program;
use crate::client::config::Home;
use crate::client::{Client, ClientOptions};
use std::path::Path;
use std::time::Duration;

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to do when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Run every check.
pub async fn run(home: &Home, paths: &ClaudePaths) -> Vec<Check> {
    let claude = check_claude().await;
    let agents = check_agents();
    // Someone who only uses other agents does not need Claude Code.
    let other_agents = agents
        .iter()
        .any(|c| c.ok && c.detail.starts_with("MCP server"));
    let mut out = Vec::new();
    if !claude.ok && other_agents {
        out.push(pass(
            "claude",
            format!("not used here ({}); other agents are set up", claude.detail),
        ));
    } else {
        out.push(claude);
        out.extend(check_claude_config(paths));
    }
    out.extend(agents);
    out.extend(check_home(home));
    out.extend(check_brokers(home).await);
    out
}

async fn check_claude() -> Check {
    let program = claude_program();
    let run = tokio::process::Command::new(&program)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Ok(o)) if o.status.success() => {
            pass("claude", format!("{} ({})", String::from_utf8_lossy(&o.stdout).trim(), program.display()))
        }
        Ok(Ok(o)) => fail(
            "claude",
            format!("`{} --version` failed: {}", program.display(), String::from_utf8_lossy(&o.stderr).trim()),
            "reinstall Claude Code: npm install -g @anthropic-ai/claude-code",
        ),
        Ok(Err(e)) => fail(
            "claude",
            format!("cannot run {}: {e}", program.display()),
            "install Claude Code (npm install -g @anthropic-ai/claude-code) or set CLAUDEMESH_CLAUDE_BIN to its path",
        ),
        Err(_) => fail("claude", format!("`{} --version` did not answer in 20 s", program.display()), "check the claude installation"),
    }
}

/// An absolute path that exists, or a bare name found on PATH.
fn runnable(cmd: &str) -> bool {
    let p = Path::new(cmd);
    if p.is_absolute() || cmd.contains('/') {
        return p.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(cmd).is_file()))
}

/// Codex, Gemini CLI, opencode: a check for each one that has our entry or is installed.
fn check_agents() -> Vec<Check> {
    let mut out = Vec::new();
    for a in crate::agents::Agent::ALL {
        let name = format!("{} config", a.name());
        let path = a.config_path();
        match crate::agents::installed_command(a) {
            Err(e) => out.push(fail(name, e.to_string(), format!("fix or move the file, then run `claudemesh install --client {}`", a.name()))),
            Ok(Some(cmd)) if runnable(&cmd) => out.push(pass(name, format!("MCP server '{}' in {} runs {cmd}", crate::agents::SERVER, path.display()))),
            Ok(Some(cmd)) => out.push(fail(
                name,
                format!("the MCP entry in {} runs {cmd}, which does not exist", path.display()),
                format!("run `claudemesh install --client {}` again", a.name()),
            )),
            Ok(None) if runnable(a.program()) => out.push(pass(
                name,
                format!("{} is installed but not in the mesh (add it with `claudemesh install --client {}`)", a.program(), a.name()),
            )),
            Ok(None) => {}
        }
    }
    out
}

fn check_claude_config(paths: &ClaudePaths) -> Vec<Check> {
    let i = match install::inspect(paths) {
        Ok(i) => i,
        Err(e) => {
            return vec![fail(
                "claude config",
                e.to_string(),
                "fix or move the file, then run `claudemesh install`",
            )]
        }
    };
    let mut out = Vec::new();
    let here = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    out.push(match i.mcp_command {
        Some(cmd) if runnable(&cmd) => {
            let note = if !here.is_empty() && cmd != here { format!(" (this binary is {here})") } else { String::new() };
            pass("mcp entry", format!("mcpServers.claudemesh in {} runs {cmd}{note}", paths.claude_json.display()))
        }
        Some(cmd) => fail(
            "mcp entry",
            format!("mcpServers.claudemesh in {} runs {cmd}, which does not exist", paths.claude_json.display()),
            "run `claudemesh install` with the binary you want Claude Code to start",
        ),
        None => fail(
            "mcp entry",
            format!("no mcpServers.claudemesh in {}", paths.claude_json.display()),
            "run `claudemesh install` (or start sessions with `claudemesh launch`, which passes the server itself)",
        ),
    });
    let missing: Vec<&str> = HOOKS
        .iter()
        .map(|(e, _)| *e)
        .filter(|e| !i.hooks.iter().any(|h| h == e))
        .collect();
    out.push(if missing.is_empty() {
        pass(
            "hooks",
            format!("{} in {}", i.hooks.join(", "), paths.settings.display()),
        )
    } else {
        fail(
            "hooks",
            format!(
                "missing in {}: {}",
                paths.settings.display(),
                missing.join(", ")
            ),
            "run `claudemesh install`",
        )
    });
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_: &Path) -> Option<u32> {
    Some(0o600)
}

fn check_home(home: &Home) -> Vec<Check> {
    let cfg_path = home.config_path();
    if !cfg_path.exists() {
        return vec![fail(
            "config",
            format!("{} does not exist", cfg_path.display()),
            "join a mesh: `claudemesh join <invite>`",
        )];
    }
    let mut out = Vec::new();
    let (fm, dm) = (mode(&cfg_path), mode(&home.dir));
    let loose = |m: Option<u32>| m.is_some_and(|m| m & 0o077 != 0);
    out.push(if loose(fm) || loose(dm) {
        fail(
            "permissions",
            format!(
                "{} is {:o} and {} is {:o}: other users can read your keys",
                cfg_path.display(),
                fm.unwrap_or(0),
                home.dir.display(),
                dm.unwrap_or(0)
            ),
            format!(
                "chmod 600 {} && chmod 700 {}",
                cfg_path.display(),
                home.dir.display()
            ),
        )
    } else {
        pass(
            "permissions",
            format!(
                "{} is private (0600 in a 0700 directory)",
                cfg_path.display()
            ),
        )
    });
    out.push(match home.load() {
        Ok(c) if c.meshes.is_empty() => fail(
            "keys",
            "no mesh joined yet",
            "join a mesh: `claudemesh join <invite>`",
        ),
        Ok(c) => {
            let bad: Vec<String> = c
                .meshes
                .iter()
                .filter(|m| {
                    m.member_secret.0 == [0; 32]
                        || m.member_xsecret.0 == [0; 32]
                        || m.mesh_key.0 == [0; 32]
                })
                .map(|m| m.mesh_name.clone())
                .collect();
            if bad.is_empty() {
                let names: Vec<String> = c
                    .meshes
                    .iter()
                    .map(|m| format!("{} as {}", m.mesh_name, m.name))
                    .collect();
                pass(
                    "keys",
                    format!("{} mesh(es): {}", c.meshes.len(), names.join(", ")),
                )
            } else {
                fail(
                    "keys",
                    format!("empty keys for: {}", bad.join(", ")),
                    "join those meshes again with a new invite",
                )
            }
        }
        Err(e) => fail(
            "keys",
            e.to_string(),
            "restore the file from a backup, or move it away and join again",
        ),
    });
    out
}

async fn check_brokers(home: &Home) -> Vec<Check> {
    let Ok(cfg) = home.load() else { return vec![] };
    let mut out = Vec::new();
    for m in &cfg.meshes {
        let name = format!("broker {}", m.mesh_name);
        let t = std::time::Instant::now();
        let health = tokio::time::timeout(
            Duration::from_secs(10),
            crate::client::http::request(&m.broker, "GET", "/health", None),
        )
        .await;
        match health {
            Ok(Ok((200, _))) => {}
            Ok(Ok((code, _))) => {
                out.push(fail(
                    &name,
                    format!("{}/health answered HTTP {code}", m.broker),
                    "is this URL a claudemesh broker? check the invite's broker URL",
                ));
                continue;
            }
            Ok(Err(e)) => {
                out.push(fail(
                    &name,
                    format!("cannot reach {}: {e}", m.broker),
                    "is `claudemesh serve` running there, and is the port open?",
                ));
                continue;
            }
            Err(_) => {
                out.push(fail(
                    &name,
                    format!("{} did not answer in 10 s", m.broker),
                    "check the network path to the broker",
                ));
                continue;
            }
        }
        let http_ms = t.elapsed().as_secs_f64() * 1000.0;
        let o = ClientOptions::one_shot(home, m, "cli", &m.name);
        match Client::connect(o, Duration::from_secs(10)).await {
            Ok(c) => {
                let rtt = c
                    .ping()
                    .await
                    .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_else(|_| "?".into());
                c.close().await;
                out.push(pass(
                    &name,
                    format!(
                        "{} reachable (HTTP {http_ms:.1} ms), signed in as {} (ping {rtt})",
                        m.broker, m.name
                    ),
                ));
            }
            Err(e) => out.push(fail(
                &name,
                format!("{} refused the session: {e}", m.broker),
                "if you were removed from the mesh, ask for a new invite",
            )),
        }
    }
    out
}

/// Human output: one line per check, the fix indented under a failure.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{} {}: {}\n",
            if c.ok { "✓" } else { "✗" },
            c.name,
            c.detail
        ));
        if let Some(f) = &c.fix {
            s.push_str(&format!("    fix: {f}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    s.push_str(&if failed == 0 {
        "all checks passed\n".to_string()
    } else {
        format!("{failed} check(s) failed\n")
    });
    s
}
