//! Ranking contexts against a query: words are lower-cased, split at anything that is not
//! a letter or digit, stop words dropped and plural/-ing/-ed endings folded; each context is
//! scored with BM25 over its fields (tags weigh 3, files read 2, findings 1.5, summary 1),
//! counted once when it is shared so a query only adds up numbers.

use std::collections::HashMap;

/// The fields of a context, in weight order.
pub const FIELDS: [&str; 4] = ["tags", "files_read", "key_findings", "summary"];
const WEIGHTS: [f32; 4] = [3.0, 2.0, 1.5, 1.0];
const K1: f32 = 1.2;
const B: f32 = 0.75;

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in",
    "is", "it", "of", "on", "or", "that", "the", "this", "to", "was", "what", "which", "with",
];

/// Terms of `text`, in order (repeats kept).
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| fold(&w.to_lowercase()))
        .filter(|w| !STOP.contains(&w.as_str()))
        .collect()
}

/// A light English stemmer: "parsers" → "parser", "parsing" → "pars", "parsed" → "pars".
fn fold(w: &str) -> String {
    let n = w.chars().count();
    for (end, min) in [("ing", 4), ("ed", 4), ("es", 5), ("s", 4)] {
        if n >= min + end.len() - 1 && w.ends_with(end) && !w.ends_with("ss") {
            return w[..w.len() - end.len()].to_string();
        }
    }
    w.to_string()
}

/// Term counts of one context, per field.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    counts: HashMap<String, [u16; 4]>,
    /// Weighted length.
    len: f32,
}

impl Doc {
    /// Count the fields (in [`FIELDS`] order: tags, files, findings, summary).
    pub fn new(fields: [&[String]; 4]) -> Doc {
        let mut d = Doc::default();
        for (i, texts) in fields.iter().enumerate() {
            for t in texts.iter() {
                for term in terms(t) {
                    let c = &mut d.counts.entry(term).or_default()[i];
                    *c = c.saturating_add(1);
                    d.len += WEIGHTS[i];
                }
            }
        }
        d
    }
}

/// Score every document against `query`: (index, score, fields matched), best first,
/// only those matching at all.
pub fn rank<'a>(
    docs: impl Iterator<Item = &'a Doc>,
    query: &str,
) -> Vec<(usize, f32, Vec<&'static str>)> {
    let docs: Vec<&Doc> = docs.collect();
    let mut q = terms(query);
    q.sort();
    q.dedup();
    if q.is_empty() || docs.is_empty() {
        return Vec::new();
    }
    let n = docs.len() as f32;
    let avg = (docs.iter().map(|d| d.len).sum::<f32>() / n).max(1.0);
    let idf: Vec<f32> = q
        .iter()
        .map(|t| {
            let df = docs.iter().filter(|d| d.counts.contains_key(t)).count() as f32;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    let mut out = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let mut score = 0.0f32;
        let mut matched = [false; 4];
        for (t, idf) in q.iter().zip(&idf) {
            let Some(c) = d.counts.get(t) else { continue };
            let tf: f32 = c.iter().zip(WEIGHTS).map(|(n, w)| f32::from(*n) * w).sum();
            for (m, n) in matched.iter_mut().zip(c) {
                *m |= *n > 0;
            }
            score += idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * d.len / avg));
        }
        if score > 0.0 {
            let fields = FIELDS
                .iter()
                .zip(matched)
                .filter(|(_, m)| *m)
                .map(|(f, _)| *f)
                .collect();
            out.push((i, score, fields));
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(tags: &[&str], files: &[&str], findings: &[&str], summary: &str) -> Doc {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Doc::new([&v(tags), &v(files), &v(findings), &[summary.to_string()]])
    }

    #[test]
    fn terms_fold_case_plurals_and_stop_words_and_split_paths() {
        assert_eq!(
            terms("The Parsers of src/lexer/token.rs"),
            vec!["parser", "src", "lexer", "token", "rs"]
        );
        assert_eq!(terms("parsing parsed"), vec!["pars", "pars"]);
        assert_eq!(terms("class is"), vec!["class"]);
    }

    #[test]
    fn the_context_that_read_a_file_or_carries_a_tag_ranks_above_one_that_mentions_it() {
        let docs = [
            doc(
                &[],
                &[],
                &[],
                "looked at the build scripts, the parser is not involved",
            ),
            doc(
                &["parser"],
                &["src/parser.rs"],
                &["the parser recurses on nested groups"],
                "parser deep dive",
            ),
            doc(&["ci"], &[".github/workflows/ci.yml"], &[], "CI caching"),
        ];
        let r = rank(docs.iter(), "how does the parser handle nested groups");
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].0, 1);
        assert!(r[0].1 > r[1].1);
        assert_eq!(
            r[0].2,
            vec!["tags", "files_read", "key_findings", "summary"]
        );
        assert_eq!(r[1].2, vec!["summary"]);
        let r = rank(docs.iter(), "ci.yml");
        assert_eq!(r[0].0, 2);
        assert!(
            rank(docs.iter(), "the of and").is_empty(),
            "stop words alone match nothing"
        );
        assert!(rank(docs.iter(), "kubernetes").is_empty());
    }
}
