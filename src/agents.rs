//! Other coding agents as mesh peers: the claudemesh MCP entry in the config of OpenAI
//! Codex CLI (`~/.codex/config.toml`), Google Gemini CLI (`~/.gemini/settings.json`) and
//! opencode (`~/.config/opencode/opencode.json`), written and removed by
//! `claudemesh install|uninstall --client NAME` and checked by `doctor`.
//!
//! Each entry carries what that client needs to call our tools without a prompt: Codex
//! `default_tools_approval_mode = "approve"` (it would otherwise ask for every tool that is
//! not read-only, and fail them in `codex exec`) plus `env_vars` so the CLAUDEMESH_*
//! variables reach the server (Codex passes only an allow-list); Gemini `"trust": true`
//! (without it headless Gemini offers none of the server's tools). Like the Claude Code
//! install: idempotent, every other key kept, a timestamped backup of a changed file, and a
//! file that does not parse is refused and left alone.

use crate::claude::install::{self, InstallError, Report};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The entry's name in every client's config.
pub const SERVER: &str = "claudemesh";

/// Variables the server reads, passed through by Codex (which filters the environment).
const PASS_ENV: &[&str] = &[
    "CLAUDEMESH_HOME",
    "CLAUDEMESH_NAME",
    "CLAUDEMESH_SESSION_ID",
    "CLAUDEMESH_MESSAGE_MODE",
    "CLAUDEMESH_CA_FILE",
];

/// An MCP client other than Claude Code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    Codex,
    Gemini,
    Opencode,
}

impl std::str::FromStr for Agent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "codex" => Ok(Agent::Codex),
            "gemini" => Ok(Agent::Gemini),
            "opencode" => Ok(Agent::Opencode),
            _ => Err(format!(
                "unknown client '{s}' (expected claude, codex, gemini or opencode)"
            )),
        }
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Agent {
    pub const ALL: [Agent; 3] = [Agent::Codex, Agent::Gemini, Agent::Opencode];

    pub fn name(self) -> &'static str {
        match self {
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Opencode => "opencode",
        }
    }

    /// The client's command, for `doctor`.
    pub fn program(self) -> &'static str {
        self.name()
    }

    /// The config file holding its MCP servers (`$CODEX_HOME`, `$XDG_CONFIG_HOME` honoured).
    pub fn config_path(self) -> PathBuf {
        match self {
            Agent::Codex => env_dir("CODEX_HOME")
                .unwrap_or_else(|| home_dir().join(".codex"))
                .join("config.toml"),
            Agent::Gemini => home_dir().join(".gemini").join("settings.json"),
            Agent::Opencode => env_dir("XDG_CONFIG_HOME")
                .unwrap_or_else(|| home_dir().join(".config"))
                .join("opencode")
                .join("opencode.json"),
        }
    }
}

/// Add (or refresh) the claudemesh entry; `exe` is the claudemesh binary to run.
pub fn install(agent: Agent, exe: &Path) -> Result<Report, InstallError> {
    edit(agent, Some(exe))
}

/// Remove the claudemesh entry (nothing else).
pub fn uninstall(agent: Agent) -> Result<Report, InstallError> {
    edit(agent, None)
}

/// The command our entry runs, if the client's config has one.
pub fn installed_command(agent: Agent) -> Result<Option<String>, InstallError> {
    let path = agent.config_path();
    match agent {
        Agent::Codex => {
            let Some((_, doc)) = read_toml(&path)? else {
                return Ok(None);
            };
            Ok(doc
                .get("mcp_servers")
                .and_then(|s| s.get(SERVER))
                .and_then(|e| e.get("command"))
                .and_then(|c| c.as_str())
                .map(str::to_string))
        }
        Agent::Gemini | Agent::Opencode => {
            let Some((_, m)) = install::read(&path)? else {
                return Ok(None);
            };
            let key = if agent == Agent::Gemini {
                "mcpServers"
            } else {
                "mcp"
            };
            let entry = m.get(key).and_then(|s| s.get(SERVER));
            Ok(entry.and_then(|e| match e.get("command") {
                Some(Value::String(c)) => Some(c.clone()),
                Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
                _ => None,
            }))
        }
    }
}

fn edit(agent: Agent, exe: Option<&Path>) -> Result<Report, InstallError> {
    let path = agent.config_path();
    let mut report = Report::default();
    let backup = match agent {
        Agent::Codex => edit_codex(&path, exe)?,
        Agent::Gemini | Agent::Opencode => {
            let (old, mut m) = install::read(&path)?
                .map(|(b, m)| (Some(b), m))
                .unwrap_or((None, Map::new()));
            if old.is_none() && exe.is_none() {
                return Ok(report);
            }
            let key = if agent == Agent::Gemini {
                "mcpServers"
            } else {
                "mcp"
            };
            match exe {
                Some(exe) => {
                    let exe = exe.display().to_string();
                    let entry = if agent == Agent::Gemini {
                        json!({"command": exe, "args": ["mcp"], "timeout": 30000, "trust": true})
                    } else {
                        json!({"type": "local", "command": [exe, "mcp"], "enabled": true})
                    };
                    let servers = m.entry(key).or_insert_with(|| json!({}));
                    if !servers.is_object() {
                        *servers = json!({});
                    }
                    if let Some(s) = servers.as_object_mut() {
                        s.insert(SERVER.into(), entry);
                    }
                }
                None => {
                    if let Some(s) = m.get_mut(key).and_then(Value::as_object_mut) {
                        s.remove(SERVER);
                    }
                }
            }
            install::write(&path, old.as_deref(), &m)?
        }
    };
    report.changed.push(path);
    report.backups.extend(backup);
    Ok(report)
}

fn read_toml(path: &Path) -> Result<Option<(Vec<u8>, toml_edit::DocumentMut)>, InstallError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::Read(path.display().to_string(), e)),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match text.parse::<toml_edit::DocumentMut>() {
        Ok(doc) => Ok(Some((bytes, doc))),
        Err(e) => Err(InstallError::CorruptToml(
            path.display().to_string(),
            e.to_string().trim().to_string(),
        )),
    }
}

fn edit_codex(path: &Path, exe: Option<&Path>) -> Result<Option<PathBuf>, InstallError> {
    use toml_edit::{value, Array, Item, Table};
    let (old, mut doc) = match read_toml(path)? {
        Some((b, d)) => (Some(b), d),
        None if exe.is_none() => return Ok(None),
        None => (None, toml_edit::DocumentMut::new()),
    };
    match exe {
        Some(exe) => {
            if !doc.get("mcp_servers").is_some_and(Item::is_table_like) {
                let mut t = Table::new();
                t.set_implicit(true);
                doc["mcp_servers"] = Item::Table(t);
            }
            let mut e = Table::new();
            e["command"] = value(exe.display().to_string());
            e["args"] = value(Array::from_iter(["mcp"]));
            e["env_vars"] = value(Array::from_iter(PASS_ENV.iter().copied()));
            e["startup_timeout_sec"] = value(20);
            e["tool_timeout_sec"] = value(60);
            e["default_tools_approval_mode"] = value("approve");
            doc["mcp_servers"][SERVER] = Item::Table(e);
        }
        None => {
            if let Some(t) = doc.get_mut("mcp_servers").and_then(Item::as_table_like_mut) {
                t.remove(SERVER);
            }
        }
    }
    let new = doc.to_string();
    if old.as_deref() == Some(new.as_bytes()) {
        return Ok(None);
    }
    install::replace(path, old.as_deref(), new.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_toml_keeps_comments_and_other_servers_and_uninstall_reverts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        let before =
            "# my settings\nmodel = \"o4\"\n\n[mcp_servers.other]\ncommand = \"other\" # keep me\n";
        std::fs::write(&p, before).unwrap();
        let (_, mut doc) = read_toml(&p).unwrap().unwrap();
        assert!(doc.get("mcp_servers").is_some());
        edit_codex(&p, Some(Path::new("/usr/local/bin/claudemesh"))).unwrap();
        let after = std::fs::read_to_string(&p).unwrap();
        assert!(after.starts_with(before), "{after}");
        doc = after.parse().unwrap();
        let e = &doc["mcp_servers"]["claudemesh"];
        assert_eq!(e["command"].as_str(), Some("/usr/local/bin/claudemesh"));
        assert_eq!(e["default_tools_approval_mode"].as_str(), Some("approve"));
        // Idempotent: a second install writes nothing (and makes no backup).
        assert_eq!(
            edit_codex(&p, Some(Path::new("/usr/local/bin/claudemesh"))).unwrap(),
            None
        );
        edit_codex(&p, None).unwrap();
        let reverted = std::fs::read_to_string(&p).unwrap();
        assert!(
            reverted.contains("command = \"other\" # keep me") && !reverted.contains("claudemesh"),
            "{reverted}"
        );
    }

    #[test]
    fn a_corrupt_codex_config_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        std::fs::write(&p, "model = \n[[[").unwrap();
        let e = edit_codex(&p, Some(Path::new("/x"))).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "model = \n[[[");
    }

    #[test]
    fn an_empty_codex_config_gets_a_table_for_our_server() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("config.toml");
        edit_codex(&p, Some(Path::new("/bin/claudemesh"))).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("[mcp_servers.claudemesh]") && text.contains("args = [\"mcp\"]"),
            "{text}"
        );
    }
}
