//! Proof that a channel push reached the model: Claude Code writes every channel message it
//! injects into the session's transcript (`~/.claude/projects/<dir>/<session>.jsonl`) as a
//! `<channel source="…" … message_id="…">` block. A pushed message counts as shown — and
//! may be acknowledged to the broker — only once its id appears in such a tag there; until
//! then it stays unread at the broker and `check_messages` or a hook shows it.
//!
//! Only the opening tag counts: its attributes are the meta we sent (Claude Code escapes
//! them), while peer-written text sits in the body, where we also escape `<channel`
//! (see `format::fenced`), so a peer cannot confirm a message by quoting its id.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a transcript's end is read: recent pushes are near the end, and a hook runs
/// on every prompt.
const TAIL: u64 = 8 << 20;

/// The ids among `wanted` (32 hex digits each) that appear as `message_id` in a channel tag
/// in the last 8 MiB of the transcript at `path`. A missing or unreadable file confirms
/// nothing.
pub fn confirmed(path: &Path, wanted: &[String]) -> HashSet<String> {
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return found;
    }
    let Some(text) = read_tail(path) else {
        return found;
    };
    for line in text.lines().filter(|l| l.contains("message_id")) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        walk(&v, &mut |s| ids_in_channel_tags(s, wanted, &mut found));
    }
    found
}

fn read_tail(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    if start > 0 {
        // Drop the partial first line.
        let cut = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        buf.drain(..cut);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn walk(v: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// Every `message_id="<id>"` inside a `<channel …>` opening tag of `s`.
fn ids_in_channel_tags(s: &str, wanted: &[String], found: &mut HashSet<String>) {
    let mut rest = s;
    while let Some(i) = rest.find("<channel ") {
        let tag_start = &rest[i..];
        let end = tag_start.find('>').unwrap_or(tag_start.len());
        let tag = &tag_start[..end];
        for id in wanted {
            if tag.contains(&format!("message_id=\"{id}\"")) {
                found.insert(id.clone());
            }
        }
        rest = &tag_start[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(c: char) -> String {
        c.to_string().repeat(32)
    }

    #[test]
    fn only_ids_in_a_channel_opening_tag_are_confirmed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.jsonl");
        let pushed = format!(
            "<channel source=\"claudemesh\" kind=\"message\" message_id=\"{}\">\nhi\n</channel>",
            id('a')
        );
        // A peer quoting another message's id in its text (escaped by us) confirms nothing,
        // and neither does an id in plain text.
        let quoted = format!("<channel source=\"claudemesh\" message_id=\"{}\">&lt;channel message_id=\"{}\"&gt; message_id=\"{}\"</channel>", id('a'), id('b'), id('c'));
        let lines = [
            json!({"type": "user", "message": {"role": "user", "content": pushed}}).to_string(),
            "not json at all, message_id".to_string(),
            json!({"type": "user", "message": {"content": [{"type": "text", "text": quoted}]}})
                .to_string(),
        ];
        std::fs::write(&p, lines.join("\n")).unwrap();
        let got = confirmed(&p, &[id('a'), id('b'), id('c'), id('d')]);
        assert_eq!(got, HashSet::from([id('a')]));
        assert!(confirmed(&d.path().join("missing.jsonl"), &[id('a')]).is_empty());
    }

    #[test]
    fn a_long_transcript_is_read_from_its_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.jsonl");
        let filler = json!({"type": "assistant", "text": "x".repeat(1000)}).to_string();
        let mut text = String::new();
        let old = format!("<channel source=\"claudemesh\" message_id=\"{}\">", id('e'));
        text.push_str(&json!({"content": old}).to_string());
        text.push('\n');
        while (text.len() as u64) < TAIL + 4096 {
            text.push_str(&filler);
            text.push('\n');
        }
        let new = format!("<channel source=\"claudemesh\" message_id=\"{}\">", id('f'));
        text.push_str(&json!({"content": new}).to_string());
        std::fs::write(&p, text).unwrap();
        assert_eq!(confirmed(&p, &[id('e'), id('f')]), HashSet::from([id('f')]));
    }
}
