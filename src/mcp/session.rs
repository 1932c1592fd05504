//! Which Claude Code session this process belongs to. The same session id always maps to
//! the same peer identity (keys derived from the member key), so a restarted or `--resume`d
//! session keeps its identity, groups and queue.

use std::path::{Path, PathBuf};

/// Where the session id came from (shown by `whoami` and `doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `CLAUDEMESH_SESSION_ID` (set by `claudemesh launch`).
    Launch,
    /// `CLAUDE_CODE_SESSION_ID` (set by Claude Code for its MCP servers and hooks).
    ClaudeCode,
    /// The newest transcript in `~/.claude/projects/<cwd>/`.
    Transcript,
    /// Made up for this process.
    Generated,
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

/// Session ids we accept: 1-128 of `[A-Za-z0-9-_]` (UUIDs and friends).
pub fn valid_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A random UUIDv4-shaped id.
pub fn generate() -> String {
    let mut b: [u8; 16] = crate::util::random_bytes();
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

fn claude_home() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".claude")
}

/// The session id for this process, and where it came from.
pub fn detect(cwd: &Path) -> (String, Source) {
    for (var, src) in [
        ("CLAUDEMESH_SESSION_ID", Source::Launch),
        ("CLAUDE_CODE_SESSION_ID", Source::ClaudeCode),
    ] {
        if let Ok(v) = std::env::var(var) {
            if valid_session_id(&v) {
                return (v, src);
            }
        }
    }
    if let Some(s) = newest_transcript(&claude_home(), cwd) {
        return (s, Source::Transcript);
    }
    (generate(), Source::Generated)
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
}

/// A session's default peer name in a mesh: `CLAUDEMESH_NAME` when set (by `launch`),
/// else `<member name>-<first 6 letters/digits of the session id>`.
pub fn peer_name(member: &str, session_id: &str) -> String {
    if let Ok(n) = std::env::var("CLAUDEMESH_NAME") {
        if crate::util::valid_name(&n) {
            return n;
        }
    }
    let short: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(6)
        .collect();
    format!("{member}-{short}")
}
