//! The client side of `mesh_info`: what the mesh holds, gathered from each capability.

use crate::client::format::fenced;
use crate::client::Client;
use crate::proto::tasks::TaskStatus;
use serde::Serialize;

/// How many names of each kind are listed (the counts are always complete).
const SHOWN: usize = 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshInfo {
    pub peers_online: Vec<String>,
    pub peers_offline: usize,
    pub groups: Vec<String>,
    pub state_keys: usize,
    pub state_keys_shown: Vec<String>,
    pub tasks_open: usize,
    pub tasks_claimed: usize,
    pub tasks_completed: usize,
    pub open_tasks_shown: Vec<String>,
    pub streams: Vec<String>,
    pub leases: Vec<String>,
    /// Pending schedules, the soonest first ("id to DEST at TIME").
    pub schedules: usize,
    pub schedules_shown: Vec<String>,
    /// Shared contexts, the most recent first ("member: summary").
    pub contexts: usize,
    pub contexts_shown: Vec<String>,
    /// The mesh clock in one line, when the mesh has set one.
    pub clock: Option<String>,
    /// Parts that could not be read, with why.
    pub unavailable: Vec<String>,
}

impl Client {
    /// What the mesh holds now.
    pub async fn mesh_info(&self) -> MeshInfo {
        let (peers, groups, state, tasks, streams, leases, schedules, contexts, clock) = tokio::join!(
            self.list_peers(),
            self.list_groups(),
            self.state_list(""),
            self.task_list(None, None, None),
            self.list_streams(),
            self.list_reservations(None),
            self.list_scheduled(),
            self.list_contexts(Some(SHOWN as u32)),
            self.get_clock(),
        );
        let mut i = MeshInfo::default();
        match peers {
            Ok(p) => {
                let me = self.peer_key();
                i.peers_offline = p.iter().filter(|x| !x.online).count();
                i.peers_online = p
                    .iter()
                    .filter(|x| x.online && x.peer_pk != me)
                    .map(|x| {
                        if x.summary.is_empty() {
                            x.name.clone()
                        } else {
                            format!("{} ({})", x.name, crate::util::truncate(&x.summary, 80))
                        }
                    })
                    .collect();
            }
            Err(e) => i.unavailable.push(format!("peers: {e}")),
        }
        match groups {
            Ok(g) => {
                i.groups = g
                    .iter()
                    .map(|g| format!("@{} ({})", g.name, g.members.len()))
                    .collect()
            }
            Err(e) => i.unavailable.push(format!("groups: {e}")),
        }
        match state {
            Ok((entries, truncated)) => {
                i.state_keys = entries.len();
                if truncated {
                    i.unavailable.push(
                        "state: more keys than one list holds (counted the first ones)".into(),
                    );
                }
                i.state_keys_shown = entries.iter().take(SHOWN).map(|e| e.key.clone()).collect();
            }
            Err(e) => i.unavailable.push(format!("state: {e}")),
        }
        match tasks {
            Ok((t, _)) => {
                let n = |s: TaskStatus| t.iter().filter(|x| x.status == s).count();
                i.tasks_open = n(TaskStatus::Open);
                i.tasks_claimed = n(TaskStatus::Claimed);
                i.tasks_completed = n(TaskStatus::Completed);
                i.open_tasks_shown = t
                    .iter()
                    .filter(|x| x.status == TaskStatus::Open)
                    .take(SHOWN)
                    .map(|x| format!("{} \"{}\"", x.id.hex(), crate::util::truncate(&x.title, 80)))
                    .collect();
            }
            Err(e) => i.unavailable.push(format!("tasks: {e}")),
        }
        match streams {
            Ok(s) => {
                i.streams = s
                    .iter()
                    .map(|s| format!("{} ({} messages)", s.name, s.count))
                    .collect()
            }
            Err(e) => i.unavailable.push(format!("streams: {e}")),
        }
        match leases {
            Ok(l) => {
                i.leases = l
                    .iter()
                    .map(|l| format!("{}: {}", l.holder, l.paths.join(", ")))
                    .collect()
            }
            Err(e) => i.unavailable.push(format!("leases: {e}")),
        }
        match schedules {
            Ok(s) => {
                i.schedules = s.len();
                i.schedules_shown = s
                    .iter()
                    .take(SHOWN)
                    .map(|s| format!("{} to {} at {}", s.id, s.to, s.next_due))
                    .collect();
            }
            Err(e) => i.unavailable.push(format!("schedules: {e}")),
        }
        match contexts {
            Ok((c, total)) => {
                i.contexts = total as usize;
                i.contexts_shown = c
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c.member_name,
                            crate::util::truncate(&c.summary, 80)
                        )
                    })
                    .collect();
            }
            Err(e) => i.unavailable.push(format!("context: {e}")),
        }
        match clock {
            Ok(c) => i.clock = c.as_ref().map(crate::cap::clock::client::line),
            Err(e) => i.unavailable.push(format!("clock: {e}")),
        }
        i
    }
}

/// The summary as a few lines for a person or a model.
pub fn text(mesh: &str, i: &MeshInfo) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut s = format!(
        "mesh \"{mesh}\":\npeers online: {} ({} offline)\ngroups: {}\nstate: {} key(s){}\ntasks: {} open, {} claimed, {} completed{}\nstreams: {}\nfile leases: {}",
        list(&i.peers_online),
        i.peers_offline,
        list(&i.groups),
        i.state_keys,
        if i.state_keys_shown.is_empty() {
            String::new()
        } else {
            format!(": {}", i.state_keys_shown.join(", "))
        },
        i.tasks_open,
        i.tasks_claimed,
        i.tasks_completed,
        if i.open_tasks_shown.is_empty() {
            String::new()
        } else {
            format!("\nopen tasks: {}", i.open_tasks_shown.join("; "))
        },
        list(&i.streams),
        list(&i.leases),
    );
    s.push_str(&format!("\nschedules: {}", i.schedules));
    if !i.schedules_shown.is_empty() {
        s.push_str(&format!(" ({})", i.schedules_shown.join("; ")));
    }
    s.push_str(&format!("\nshared contexts: {}", i.contexts));
    if !i.contexts_shown.is_empty() {
        s.push_str(&format!(" ({})", fenced(&i.contexts_shown.join("; "))));
    }
    if let Some(c) = &i.clock {
        s.push_str(&format!("\nclock: {c}"));
    }
    for u in &i.unavailable {
        s.push_str(&format!("\n(not available: {u})"));
    }
    s
}
