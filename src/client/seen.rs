//! Client-side dedupe: which message ids were surfaced to the application and which were
//! acked. Acked ids are appended to a file so a restarted process does not show a message
//! again when the broker redelivers it (its ack may have been lost in the crash).

use crate::proto::Id16;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Keep at most this many ids; the file is compacted when it grows past twice that.
const KEEP: usize = 20_000;

pub struct Seen {
    /// id → acked?
    ids: HashMap<Id16, bool>,
    order: std::collections::VecDeque<Id16>,
    path: Option<PathBuf>,
    lines_in_file: usize,
}

impl Seen {
    pub fn load(path: Option<PathBuf>) -> Seen {
        let mut s = Seen {
            ids: HashMap::new(),
            order: Default::default(),
            path,
            lines_in_file: 0,
        };
        if let Some(p) = &s.path {
            if let Ok(text) = std::fs::read_to_string(p) {
                for line in text.lines() {
                    if let Some(id) = Id16::parse_hex(line.trim()) {
                        s.lines_in_file += 1;
                        if s.ids.insert(id, true).is_none() {
                            s.order.push_back(id);
                        }
                    }
                }
                s.trim();
            }
        }
        s
    }

    /// `Some(true)` acked, `Some(false)` surfaced but not acked, `None` new.
    pub fn state(&self, id: &Id16) -> Option<bool> {
        self.ids.get(id).copied()
    }

    /// Forget a surfaced-but-unacked id (it will be surfaced again).
    pub fn forget(&mut self, id: &Id16) {
        if self.ids.get(id) == Some(&false) {
            self.ids.remove(id);
        }
    }

    pub fn mark_surfaced(&mut self, id: Id16) {
        if self.ids.insert(id, false).is_none() {
            self.order.push_back(id);
            self.trim();
        }
    }

    pub fn mark_acked(&mut self, ids: &[Id16]) {
        for id in ids {
            if self.ids.insert(*id, true).is_none() {
                self.order.push_back(*id);
            }
        }
        self.trim();
        self.persist(ids);
    }

    fn trim(&mut self) {
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn persist(&mut self, ids: &[Id16]) {
        let Some(p) = &self.path else { return };
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if self.lines_in_file + ids.len() > 2 * KEEP {
            // Compact: rewrite with the acked ids we still keep.
            let mut out = String::new();
            for id in self.order.iter().filter(|i| self.ids.get(i) == Some(&true)) {
                out.push_str(&id.hex());
                out.push('\n');
            }
            self.lines_in_file = out.lines().count();
            let _ = crate::client::config::write_private(p, out.as_bytes());
            return;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p);
        if let Ok(mut f) = f {
            let mut out = String::with_capacity(ids.len() * 33);
            for id in ids {
                out.push_str(&id.hex());
                out.push('\n');
            }
            if f.write_all(out.as_bytes()).is_ok() {
                self.lines_in_file += ids.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_ids_survive_a_reload_and_surfaced_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.ids");
        let (a, b) = (Id16([1; 16]), Id16([2; 16]));
        let mut s = Seen::load(Some(p.clone()));
        s.mark_surfaced(a);
        s.mark_surfaced(b);
        s.mark_acked(&[a]);
        assert_eq!(s.state(&a), Some(true));
        assert_eq!(s.state(&b), Some(false));
        let s2 = Seen::load(Some(p));
        assert_eq!(s2.state(&a), Some(true));
        assert_eq!(s2.state(&b), None);
    }
}
