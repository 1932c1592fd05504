//! Path patterns of file leases: `*` matches within one path segment, `**` across
//! segments, `?` one character; everything else is literal. Paths are compared as
//! normalized text (no `./`, no doubled or trailing `/`).

/// `p` without `./` segments, doubled or trailing slashes.
pub fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

pub fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?'])
}

/// Whether pattern `pat` matches path `path`.
pub fn matches(pat: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                // `**/` also matches no directory at all.
                if rest.first() == Some(&b'/') && go(&rest[1..], s) {
                    return true;
                }
                (0..=s.len()).any(|i| go(rest, &s[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for i in 0..=s.len() {
                    if go(rest, &s[i..]) {
                        return true;
                    }
                    if s.get(i) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => s.first().is_some_and(|c| *c != b'/') && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(pat.as_bytes(), path.as_bytes())
}

/// The literal part of a pattern before its first wildcard.
fn literal_prefix(p: &str) -> &str {
    match p.find(['*', '?']) {
        Some(i) => &p[..i],
        None => p,
    }
}

/// Whether two patterns may name a common file: equal, one matches the other, or (both
/// with wildcards) their literal prefixes are one a prefix of the other. Conservative: two
/// patterns reported as overlapping may in fact not share a file.
pub fn overlap(a: &str, b: &str) -> bool {
    if a == b || matches(a, b) || matches(b, a) {
        return true;
    }
    if has_wildcard(a) && has_wildcard(b) {
        let (x, y) = (literal_prefix(a), literal_prefix(b));
        return x.starts_with(y) || y.starts_with(x);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_a_segment_double_star_crosses_them_and_question_is_one_character() {
        assert!(matches("src/*.rs", "src/main.rs"));
        assert!(!matches("src/*.rs", "src/cap/mod.rs"));
        assert!(matches("src/**/*.rs", "src/cap/mod.rs"));
        assert!(matches("src/**/*.rs", "src/main.rs"));
        assert!(matches("src/**", "src/a/b/c"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "a/c"));
        assert!(matches("Cargo.toml", "Cargo.toml"));
        assert!(!matches("Cargo.toml", "Cargo.lock"));
    }

    #[test]
    fn overlapping_patterns_are_found_both_ways_and_disjoint_ones_are_not() {
        assert!(overlap("src/main.rs", "src/*.rs"));
        assert!(overlap("src/*.rs", "src/main.rs"));
        assert!(overlap("src/**", "src/cap/*.rs"));
        assert!(!overlap("src/main.rs", "src/lib.rs"));
        assert!(!overlap("docs/*.md", "src/*.rs"));
        assert_eq!(normalize("./src//cap/"), "src/cap");
        assert_eq!(normalize("/abs/./x"), "/abs/x");
    }
}
