//! Path patterns of file leases: `*` matches within one path segment, `**` across
//! segments, `?` one character; everything else is literal. Paths are compared as
//! normalized text (no `./`, no doubled or trailing `/`).

/// `p` without `.` segments, doubled or trailing slashes, and with `x/..` folded (a `..`
/// with nothing before it stays).
pub fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if seg == ".." && parts.last().is_some_and(|l| *l != "..") {
            parts.pop();
        } else {
            parts.push(seg);
        }
    }
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

/// Whether pattern `pat` matches path `path`, character by character. A table of
/// (pattern position, path position), so the cost is bounded by the product of the
/// lengths whatever the wildcards (no backtracking blow-up).
pub fn matches(pat: &str, path: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let s: Vec<char> = path.chars().collect();
    let (m, n) = (p.len(), s.len());
    let w = n + 1;
    // ok[i * w + j]: p[i..] matches s[j..]
    let mut ok = vec![false; (m + 3) * w];
    ok[m * w + n] = true;
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            let here = j < n;
            ok[i * w + j] = match p[i] {
                '*' if p.get(i + 1) == Some(&'*') => {
                    let rest = i + 2;
                    // `**/` also matches no directory at all.
                    let no_dir = p.get(rest) == Some(&'/') && ok[(rest + 1) * w + j];
                    no_dir || ok[rest * w + j] || (here && ok[i * w + j + 1])
                }
                '*' => ok[(i + 1) * w + j] || (here && s[j] != '/' && ok[i * w + j + 1]),
                '?' => here && s[j] != '/' && ok[(i + 1) * w + j + 1],
                c => here && s[j] == c && ok[(i + 1) * w + j + 1],
            };
        }
    }
    ok[0]
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
        assert!(matches("caf?", "café"), "? is one character, not one byte");
        assert!(matches("**/x", "x") && matches("a/**/x", "a/x") && matches("a/**/x", "a/b/c/x"));
    }

    #[test]
    fn a_pattern_full_of_wildcards_on_a_long_path_answers_at_once() {
        let pat = "*a".repeat(16) + "b";
        let path = "a".repeat(1024);
        let t = std::time::Instant::now();
        assert!(!matches(&pat, &path));
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
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
        assert_eq!(normalize("src/../x"), "x");
        assert_eq!(normalize("../x"), "../x");
    }
}
