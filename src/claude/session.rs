//! Which agent session this process belongs to, decided when the MCP client introduces
//! itself at `initialize`. The same session id always maps to the same peer identity (keys
//! derived from the member key), so a restarted or `--resume`d session keeps its identity,
//! groups and queue.
//!
//! Claude Code's ids (its env var, its newest transcript) are only adopted when the client
//! *is* Claude Code: another agent started in a directory where Claude Code ran must not
//! become that session's peer and drain its queue. Other clients (Codex, Gemini CLI,
//! opencode, ...) get a stable id per client and working directory, so repeated one-shot
//! runs in one directory are one peer.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the session id came from (shown by `whoami`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `CLAUDEMESH_SESSION_ID` (set by `claudemesh launch`, or by the user for any client).
    Launch,
    /// `CLAUDE_CODE_SESSION_ID` (set by Claude Code for its MCP servers and hooks).
    ClaudeCode,
    /// The newest transcript in `~/.claude/projects/<cwd>/` (Claude Code only).
    Transcript,
    /// Derived from the client's name and the working directory (stable across runs).
    Directory,
    /// Made up for this process (a Claude Code session with no id to go by).
    Generated,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Launch => "CLAUDEMESH_SESSION_ID",
            Source::ClaudeCode => "Claude Code's session id",
            Source::Transcript => "Claude Code's newest transcript here",
            Source::Directory => "this client and working directory",
            Source::Generated => "generated for this process",
        }
    }
}

/// The MCP client on the other end of stdio, from its `clientInfo.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKind {
    /// `clientInfo.name` as sent (e.g. "claude-code", "codex-mcp-client").
    pub name: String,
    /// A short lowercase label for names and ids: "claude", "codex", "gemini", "opencode",
    /// or the client's own name reduced to `[a-z0-9-]`.
    pub label: String,
}

impl ClientKind {
    pub fn from_client_name(name: &str) -> ClientKind {
        let lower = name.to_ascii_lowercase();
        let label = if lower == "claude-code" {
            "claude".to_string()
        } else if let Some(known) = ["codex", "gemini", "opencode"]
            .iter()
            .find(|k| lower.contains(*k))
        {
            known.to_string()
        } else {
            let s: String = lower
                .trim_end_matches("-mcp-client")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
                .split('-')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            let s: String = s.chars().take(16).collect();
            if s.is_empty() {
                "agent".to_string()
            } else {
                s.trim_end_matches('-').to_string()
            }
        };
        ClientKind {
            name: name.to_string(),
            label,
        }
    }

    /// Claude Code: the one client whose session ids and transcripts we may adopt, and the
    /// one that takes `notifications/claude/channel` without declaring it.
    pub fn is_claude_code(&self) -> bool {
        self.name == "claude-code"
    }
}

/// Claude Code's project directory name for a working directory: every character other
/// than an ASCII letter, digit or '-' becomes '-'.
pub fn project_dir_name(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The newest `*.jsonl` transcript's stem in `claude_home/projects/<cwd>/`.
pub fn newest_transcript(claude_home: &Path, cwd: &Path) -> Option<String> {
    let dir = claude_home.join("projects").join(project_dir_name(cwd));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max_by_key(|(t, _)| *t)
        .and_then(|(_, p)| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .filter(|s| valid_session_id(s))
}

/// The transcript file of a Claude Code session: `claude_home/projects/*/<session>.jsonl`.
pub fn transcript_of(claude_home: &Path, session_id: &str) -> Option<PathBuf> {
    if !valid_session_id(session_id) {
        return None;
    }
    let file = format!("{session_id}.jsonl");
    std::fs::read_dir(claude_home.join("projects"))
        .ok()?
        .flatten()
        .map(|d| d.path().join(&file))
        .find(|p| p.is_file())
}

/// Session ids we accept: 1-128 of `[A-Za-z0-9-_]` (UUIDs and friends).
pub fn valid_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn uuid_shaped(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A random UUIDv4-shaped id.
pub fn generate() -> String {
    uuid_shaped(crate::util::random_bytes())
}

/// The stable session id of a non-Claude client in a directory: `<label>-<uuid>` where
/// the uuid is a hash of (client label, cwd). The same client in the same directory is the
/// same peer on every run.
pub fn directory_session_id(client: &ClientKind, cwd: &Path) -> String {
    let mut h = Sha256::new();
    h.update(b"claudemesh directory session\0");
    h.update(client.label.as_bytes());
    h.update(b"\0");
    h.update(cwd.as_os_str().as_encoded_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("{}-{}", client.label, uuid_shaped(b))
}

pub fn claude_home() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".claude")
}

fn env_session(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| valid_session_id(v))
}

/// The session id for this process, given the client that connected, and where it came
/// from. `CLAUDEMESH_SESSION_ID` wins for every client; Claude Code's own id and
/// transcripts only count for Claude Code.
pub fn detect(client: &ClientKind, cwd: &Path) -> (String, Source) {
    if let Some(v) = env_session("CLAUDEMESH_SESSION_ID") {
        return (v, Source::Launch);
    }
    if !client.is_claude_code() {
        return (directory_session_id(client, cwd), Source::Directory);
    }
    if let Some(v) = env_session("CLAUDE_CODE_SESSION_ID") {
        return (v, Source::ClaudeCode);
    }
    if let Some(s) = newest_transcript(&claude_home(), cwd) {
        return (s, Source::Transcript);
    }
    (generate(), Source::Generated)
}

/// A session's default peer name in a mesh: `CLAUDEMESH_NAME` when set (by `launch` or the
/// client's MCP config), else for Claude Code `<member>-<first 6 letters/digits of the
/// session id>`, and for other clients `<member>-<client>-<4 hex of the session id>`
/// (e.g. `alice-codex-3f2a`: stable, since their session id is).
pub fn peer_name(member: &str, session_id: &str) -> String {
    if let Ok(n) = std::env::var("CLAUDEMESH_NAME") {
        if crate::util::valid_name(&n) {
            return n;
        }
    }
    if let Some((label, rest)) = session_id
        .split_once('-')
        .filter(|(l, _)| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase()))
    {
        if rest.len() == 36 {
            let n = format!("{member}-{label}-{}", &rest[..4]);
            if crate::util::valid_name(&n) {
                return n;
            }
        }
    }
    let short: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(6)
        .collect();
    format!("{member}-{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_dir_names_follow_claude_codes_mangling() {
        assert_eq!(
            project_dir_name(Path::new("/tmp/cctest/work")),
            "-tmp-cctest-work"
        );
        assert_eq!(
            project_dir_name(Path::new("/home/a.b/my_proj")),
            "-home-a-b-my-proj"
        );
    }

    #[test]
    fn the_newest_transcript_names_the_session() {
        let d = tempfile::tempdir().unwrap();
        let cwd = Path::new("/work/x");
        let dir = d.path().join("projects").join(project_dir_name(cwd));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("11111111-aaaa.jsonl"), b"{}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("22222222-bbbb.jsonl"), b"{}").unwrap();
        std::fs::write(dir.join("notes.txt"), b"").unwrap();
        assert_eq!(
            newest_transcript(d.path(), cwd).as_deref(),
            Some("22222222-bbbb")
        );
        assert_eq!(newest_transcript(d.path(), Path::new("/elsewhere")), None);
    }

    #[test]
    fn generated_ids_are_uuid_shaped_and_valid() {
        let g = generate();
        assert_eq!(g.len(), 36);
        assert!(valid_session_id(&g));
        assert!(!valid_session_id("../etc"));
    }

    #[test]
    fn client_names_map_to_short_labels() {
        let l = |n: &str| ClientKind::from_client_name(n).label;
        assert_eq!(l("claude-code"), "claude");
        assert_eq!(l("codex-mcp-client"), "codex");
        assert_eq!(l("gemini-cli-mcp-client"), "gemini");
        assert_eq!(l("opencode"), "opencode");
        assert_eq!(l("My Agent/2"), "my-agent-2");
        assert_eq!(l("!!!"), "agent");
        assert!(ClientKind::from_client_name("claude-code").is_claude_code());
        assert!(!ClientKind::from_client_name("codex-mcp-client").is_claude_code());
    }

    #[test]
    fn directory_ids_are_stable_per_client_and_directory_and_name_the_client() {
        let codex = ClientKind::from_client_name("codex-mcp-client");
        let gemini = ClientKind::from_client_name("gemini-cli-mcp-client");
        let a = directory_session_id(&codex, Path::new("/work/a"));
        assert_eq!(a, directory_session_id(&codex, Path::new("/work/a")));
        assert_ne!(a, directory_session_id(&codex, Path::new("/work/b")));
        assert_ne!(a, directory_session_id(&gemini, Path::new("/work/a")));
        assert!(valid_session_id(&a) && a.starts_with("codex-"));
        let n = peer_name("alice", &a);
        assert!(
            n.starts_with("alice-codex-") && n.len() == "alice-codex-".len() + 4,
            "{n}"
        );
        assert_eq!(
            peer_name("bob", "5e55a0b1-0000-4000-8000-000000000001"),
            "bob-5e55a0"
        );
    }

    #[test]
    fn a_transcript_is_found_by_session_id_in_any_project_dir() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("projects").join("-some-dir");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("abc-1.jsonl"), b"").unwrap();
        assert_eq!(
            transcript_of(d.path(), "abc-1"),
            Some(dir.join("abc-1.jsonl"))
        );
        assert_eq!(transcript_of(d.path(), "abc-2"), None);
        assert_eq!(transcript_of(d.path(), "../x"), None);
    }
}
