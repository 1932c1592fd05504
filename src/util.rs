//! Small shared helpers: wall-clock time, hex/base64 codecs, random bytes, durations.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fill a fixed array from the OS random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not something a peer can cause; there is no safe fallback.
    getrandom::getrandom(&mut b).expect("OS random source unavailable");
    b
}

/// A random u64 (jitter, ids).
pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Parse "90s", "15m", "12h", "7d" (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(7 * 86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// A span of milliseconds for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Parse an RFC 3339 time ("2026-12-04T09:00:00Z", "2026-12-04T10:00:00+01:00") into ms
/// since the Unix epoch; `None` when it is not one or lies before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// Format a millisecond timestamp as RFC 3339 UTC (no external time crate needed).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Names of peers, members and meshes: 1–64 chars of `[A-Za-z0-9._-]`, not starting with '.' or '-'.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.starts_with(['.', '-'])
}

/// Group names: like names, plus '/' for sub-groups (`eng/web`), no empty segments.
pub fn valid_group(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.split('/').all(valid_name)
}

/// Whether this process runs as root (effective uid 0), read from /proc (no libc call).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The WebSocket config of both ends: small buffers (thousands of idle connections) and frame caps.
pub fn ws_config(max_frame: usize) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        // Frames are buffered until the writer flushes its batch: one syscall per batch.
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(64 * 1024 * 1024)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_pick_the_largest_sensible_units_and_rfc3339_round_trips() {
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(12 * 60_000 + 5_000), "12 min");
        assert_eq!(human_duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(human_duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        let t = 1_796_374_800_000;
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(
            parse_rfc3339("2026-12-04T10:00:00+01:00"),
            parse_rfc3339("2026-12-04T09:00:00Z")
        );
        assert_eq!(parse_rfc3339("tomorrow"), None);
        assert_eq!(parse_rfc3339("1960-01-01T00:00:00Z"), None);
    }

    #[test]
    fn parse_duration_accepts_units_and_rejects_garbage() {
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert!(parse_duration("7x").is_none());
        assert!(parse_duration("").is_none());
        assert!(parse_duration("99999999999999999999d").is_none());
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn names_and_groups_are_validated() {
        assert!(valid_name("alice-1.dev_x"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(valid_group("eng/web"));
        assert!(!valid_group("eng//web"));
        assert!(!valid_group("/eng"));
    }
}
