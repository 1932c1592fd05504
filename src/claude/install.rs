//! `claudemesh install` / `uninstall`: the `mcpServers.claudemesh` entry in `~/.claude.json`
//! and the hooks in `~/.claude/settings.json` (or under `$CLAUDE_CONFIG_DIR`). Idempotent,
//! with a timestamped backup of every file it changes; every other key is kept as it was.
//! A file that is not valid JSON is refused and left untouched.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0} is not valid JSON ({1}); fix or move it — nothing was changed")]
    Corrupt(String, serde_json::Error),
    #[error("{0} is not a JSON object; nothing was changed")]
    NotObject(String),
    #[error("{0} is not valid TOML ({1}); fix or move it — nothing was changed")]
    CorruptToml(String, String),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
}

/// Where Claude Code keeps its files.
#[derive(Debug, Clone)]
pub struct ClaudePaths {
    /// `~/.claude.json` (user-scope MCP servers).
    pub claude_json: PathBuf,
    /// `~/.claude/settings.json` (hooks).
    pub settings: PathBuf,
}

impl ClaudePaths {
    /// `$CLAUDE_CONFIG_DIR/{.claude.json,settings.json}`, else `~/.claude.json` and
    /// `~/.claude/settings.json`.
    pub fn from_env() -> ClaudePaths {
        if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            return ClaudePaths {
                claude_json: d.join(".claude.json"),
                settings: d.join("settings.json"),
            };
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        ClaudePaths {
            claude_json: home.join(".claude.json"),
            settings: home.join(".claude").join("settings.json"),
        }
    }
}

/// The hook events we register, with the `claudemesh hook` argument for each.
pub const HOOKS: &[(&str, &str)] = &[
    ("UserPromptSubmit", "working"),
    ("Stop", "idle"),
    ("PostToolUse", "post-tool"),
];

/// The opt-in PreToolUse hook (`install --lease-hook`): before an edit, warn when another
/// peer holds a file lease on the file.
pub const LEASE_HOOK: (&str, &str) = ("PreToolUse", "pre-edit");
const LEASE_MATCHER: &str = "Edit|Write|MultiEdit|NotebookEdit";

/// Every event a claudemesh hook may be registered for.
fn all_hooks() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    HOOKS.iter().chain(std::iter::once(&LEASE_HOOK))
}

/// A file's bytes and its JSON object.
pub(crate) type Loaded = (Vec<u8>, Map<String, Value>);

pub(crate) fn read(p: &Path) -> Result<Option<Loaded>, InstallError> {
    let bytes = match std::fs::read(p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::Read(p.display().to_string(), e)),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Some((bytes, Map::new())));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some((bytes, m))),
        Ok(_) => Err(InstallError::NotObject(p.display().to_string())),
        Err(e) => Err(InstallError::Corrupt(p.display().to_string(), e)),
    }
}

/// Write `v` if it differs from what was there; back the old file up first. Returns the
/// backup path when a file was changed.
pub(crate) fn write(
    p: &Path,
    old: Option<&[u8]>,
    v: &Map<String, Value>,
) -> Result<Option<PathBuf>, InstallError> {
    let mut new = serde_json::to_vec_pretty(&Value::Object(v.clone())).unwrap_or_default();
    new.push(b'\n');
    if let Some(old) = old {
        if serde_json::from_slice::<Value>(old).ok() == Some(Value::Object(v.clone())) {
            return Ok(None); // same meaning: leave the file alone
        }
    }
    replace(p, old, &new)
}

/// Replace the file at `p` with `new` (atomically, keeping its permissions), backing up
/// `old` first as `<name>.bak-<time>`. Returns the backup path.
pub(crate) fn replace(
    p: &Path,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<Option<PathBuf>, InstallError> {
    let err = |e| InstallError::Write(p.display().to_string(), e);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut backup = None;
    if let Some(old) = old {
        let b = p.with_file_name(format!(
            "{}.bak-{}",
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            crate::util::rfc3339(crate::util::now_ms()).replace(':', "")
        ));
        std::fs::write(&b, old).map_err(err)?;
        backup = Some(b);
    }
    let mode = std::fs::metadata(p).ok().map(|m| m.permissions());
    let tmp = p.with_extension(format!("claudemesh-tmp{}", std::process::id()));
    std::fs::write(&tmp, new).map_err(err)?;
    if let Some(mode) = mode {
        let _ = std::fs::set_permissions(&tmp, mode);
    }
    std::fs::rename(&tmp, p).map_err(err)?;
    Ok(backup)
}

fn is_ours(cmd: &Value) -> bool {
    cmd.get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| c.contains("claudemesh") && c.contains(" hook "))
}

/// What install/uninstall did.
#[derive(Debug, Default)]
pub struct Report {
    pub changed: Vec<PathBuf>,
    pub backups: Vec<PathBuf>,
}

/// Add the MCP server entry and the hooks (with `lease_hook`, also the PreToolUse lease
/// warning; without, an earlier one is removed). `exe` is the claudemesh binary to run.
pub fn install(paths: &ClaudePaths, exe: &Path, lease_hook: bool) -> Result<Report, InstallError> {
    // Read and check both files before changing either.
    let cj = read(&paths.claude_json)?;
    let st = read(&paths.settings)?;
    let exe_s = exe.display().to_string();
    let mut report = Report::default();

    let (old, mut m) = cj.map(|(b, m)| (Some(b), m)).unwrap_or((None, Map::new()));
    let servers = m.entry("mcpServers").or_insert_with(|| json!({}));
    if !servers.is_object() {
        *servers = json!({});
    }
    if let Some(s) = servers.as_object_mut() {
        s.insert(
            "claudemesh".into(),
            json!({"type": "stdio", "command": exe_s, "args": ["mcp"], "env": {}}),
        );
    }
    if let Some(b) = write(&paths.claude_json, old.as_deref(), &m)? {
        report.backups.push(b);
    }
    report.changed.push(paths.claude_json.clone());

    let (old, mut m) = st.map(|(b, m)| (Some(b), m)).unwrap_or((None, Map::new()));
    let hooks = m.entry("hooks").or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    if let Some(h) = hooks.as_object_mut() {
        for (event, arg) in all_hooks() {
            let wanted = lease_hook || (*event, *arg) != LEASE_HOOK;
            let matcher = if (*event, *arg) == LEASE_HOOK {
                LEASE_MATCHER
            } else {
                ""
            };
            if !wanted && !h.contains_key(*event) {
                continue;
            }
            let list = h.entry(event.to_string()).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            let Some(groups) = list.as_array_mut() else {
                continue;
            };
            // Drop our old entries (another path or version), then add the current one.
            for g in groups.iter_mut() {
                if let Some(hs) = g.get_mut("hooks").and_then(Value::as_array_mut) {
                    hs.retain(|c| !is_ours(c));
                }
            }
            groups.retain(|g| {
                g.get("hooks")
                    .and_then(Value::as_array)
                    .is_none_or(|hs| !hs.is_empty())
            });
            if wanted {
                groups.push(json!({"matcher": matcher, "hooks": [{"type": "command", "command": format!("{exe_s} hook {arg}"), "timeout": 30}]}));
            }
        }
        // An opted-out lease hook leaves no empty event behind.
        if !lease_hook
            && h.get(LEASE_HOOK.0)
                .and_then(Value::as_array)
                .is_some_and(|a| a.is_empty())
        {
            h.remove(LEASE_HOOK.0);
        }
    }
    if let Some(b) = write(&paths.settings, old.as_deref(), &m)? {
        report.backups.push(b);
    }
    report.changed.push(paths.settings.clone());
    Ok(report)
}

/// What Claude Code's config says about claudemesh (for `doctor`).
#[derive(Debug, Default)]
pub struct Inspection {
    /// `mcpServers.claudemesh.command`, when the entry is there.
    pub mcp_command: Option<String>,
    /// Hook events that run `claudemesh hook ...`.
    pub hooks: Vec<String>,
}

/// Read both files (missing ones count as empty).
pub fn inspect(paths: &ClaudePaths) -> Result<Inspection, InstallError> {
    let mut out = Inspection::default();
    if let Some((_, m)) = read(&paths.claude_json)? {
        out.mcp_command = m
            .get("mcpServers")
            .and_then(|s| s.get("claudemesh"))
            .map(|e| {
                e.get("command")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            });
    }
    if let Some((_, m)) = read(&paths.settings)? {
        for (event, _) in all_hooks() {
            let found = m
                .get("hooks")
                .and_then(|h| h.get(*event))
                .and_then(Value::as_array)
                .is_some_and(|groups| {
                    groups
                        .iter()
                        .filter_map(|g| g.get("hooks").and_then(Value::as_array))
                        .flatten()
                        .any(is_ours)
                });
            if found {
                out.hooks.push(event.to_string());
            }
        }
    }
    Ok(out)
}

/// Remove what `install` added; everything else stays.
pub fn uninstall(paths: &ClaudePaths) -> Result<Report, InstallError> {
    let cj = read(&paths.claude_json)?;
    let st = read(&paths.settings)?;
    let mut report = Report::default();
    if let Some((old, mut m)) = cj {
        if let Some(s) = m.get_mut("mcpServers").and_then(Value::as_object_mut) {
            s.remove("claudemesh");
        }
        if let Some(b) = write(&paths.claude_json, Some(&old), &m)? {
            report.backups.push(b);
            report.changed.push(paths.claude_json.clone());
        }
    }
    if let Some((old, mut m)) = st {
        if let Some(h) = m.get_mut("hooks").and_then(Value::as_object_mut) {
            for (event, _) in all_hooks() {
                if let Some(groups) = h.get_mut(*event).and_then(Value::as_array_mut) {
                    for g in groups.iter_mut() {
                        if let Some(hs) = g.get_mut("hooks").and_then(Value::as_array_mut) {
                            hs.retain(|c| !is_ours(c));
                        }
                    }
                    groups.retain(|g| {
                        g.get("hooks")
                            .and_then(Value::as_array)
                            .is_none_or(|hs| !hs.is_empty())
                    });
                }
                if h.get(*event)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.is_empty())
                {
                    h.remove(*event);
                }
            }
        }
        if let Some(b) = write(&paths.settings, Some(&old), &m)? {
            report.backups.push(b);
            report.changed.push(paths.settings.clone());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(d: &Path) -> ClaudePaths {
        ClaudePaths {
            claude_json: d.join(".claude.json"),
            settings: d.join(".claude/settings.json"),
        }
    }

    #[test]
    fn install_is_idempotent_keeps_other_keys_and_uninstall_reverts() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path());
        let original = json!({"userID": "u1", "mcpServers": {"other": {"type": "stdio", "command": "x"}}, "projects": {"/a": {"k": 1}}});
        std::fs::write(&p.claude_json, serde_json::to_vec(&original).unwrap()).unwrap();
        std::fs::create_dir_all(p.settings.parent().unwrap()).unwrap();
        let user_hook = json!({"hooks": {"Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "say done"}]}]}, "model": "x"});
        std::fs::write(&p.settings, serde_json::to_vec(&user_hook).unwrap()).unwrap();
        let exe = Path::new("/usr/local/bin/claudemesh");
        let r1 = install(&p, exe, false).unwrap();
        assert_eq!(r1.backups.len(), 2, "both originals backed up");
        let after1 = (
            std::fs::read(&p.claude_json).unwrap(),
            std::fs::read(&p.settings).unwrap(),
        );
        let r2 = install(&p, exe, false).unwrap();
        assert!(r2.backups.is_empty(), "second install changes nothing");
        assert_eq!(
            after1,
            (
                std::fs::read(&p.claude_json).unwrap(),
                std::fs::read(&p.settings).unwrap()
            )
        );
        let cj: Value = serde_json::from_slice(&after1.0).unwrap();
        assert_eq!(cj["userID"], "u1");
        assert_eq!(cj["projects"], original["projects"]);
        assert_eq!(cj["mcpServers"]["other"], original["mcpServers"]["other"]);
        assert_eq!(cj["mcpServers"]["claudemesh"]["args"], json!(["mcp"]));
        let st: Value = serde_json::from_slice(&after1.1).unwrap();
        assert_eq!(st["model"], "x");
        assert_eq!(
            st["hooks"]["Stop"].as_array().unwrap().len(),
            2,
            "user's Stop hook kept"
        );
        assert!(st["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("hook working"));
        uninstall(&p).unwrap();
        let cj: Value = serde_json::from_slice(&std::fs::read(&p.claude_json).unwrap()).unwrap();
        assert_eq!(cj, original);
        let st: Value = serde_json::from_slice(&std::fs::read(&p.settings).unwrap()).unwrap();
        assert_eq!(st, user_hook);
    }

    #[test]
    fn a_corrupt_file_is_refused_and_nothing_changes() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path());
        std::fs::write(&p.claude_json, b"{\"mcpServers\": {,}").unwrap();
        let e = install(&p, Path::new("/bin/claudemesh"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid JSON") && e.contains("nothing was changed"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&p.claude_json).unwrap(),
            b"{\"mcpServers\": {,}"
        );
        assert!(!p.settings.exists());
    }

    #[test]
    fn the_lease_hook_is_added_only_when_asked_and_a_plain_install_takes_it_out() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path());
        let exe = Path::new("/bin/claudemesh");
        install(&p, exe, true).unwrap();
        let st: Value = serde_json::from_slice(&std::fs::read(&p.settings).unwrap()).unwrap();
        let pre = &st["hooks"]["PreToolUse"][0];
        assert_eq!(pre["matcher"], LEASE_MATCHER);
        assert!(pre["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("hook pre-edit"));
        assert!(inspect(&p)
            .unwrap()
            .hooks
            .contains(&"PreToolUse".to_string()));
        install(&p, exe, false).unwrap();
        let st: Value = serde_json::from_slice(&std::fs::read(&p.settings).unwrap()).unwrap();
        assert!(st["hooks"].get("PreToolUse").is_none(), "{st}");
        assert!(st["hooks"].get("Stop").is_some());
    }

    #[test]
    fn install_into_an_empty_home_creates_both_files() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path());
        install(&p, Path::new("/bin/claudemesh"), false).unwrap();
        let st: Value = serde_json::from_slice(&std::fs::read(&p.settings).unwrap()).unwrap();
        for (event, _) in HOOKS {
            assert_eq!(st["hooks"][event].as_array().unwrap().len(), 1);
        }
    }
}
