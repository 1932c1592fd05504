//! The client side of `schedules`: sealing a reminder or scheduled message for its
//! destination (and a copy for its creator), and reading schedules back with their text.

use crate::client::{Client, ClientError, Dest};
use crate::crypto::seal::{Plain, PlainSchedule};
use crate::proto::schedules::{Request as Q, Response as A, Schedule};
use crate::proto::{ErrorCode, Id16, Priority, Response};
use crate::util::{now_ms, rfc3339};

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Once, at this time (ms since the Unix epoch).
    At(u64),
    /// Once, this many seconds from now.
    In(u64),
    /// At every match of a 5-field cron expression, in a time zone (IANA name; UTC if none).
    Cron { expr: String, tz: Option<String> },
}

impl When {
    fn recurring(&self) -> bool {
        matches!(self, When::Cron { .. })
    }
}

/// A schedule as a session sees it: its fields, and its text when the caller made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub to: String,
    pub creator: String,
    pub member_name: String,
    pub priority: Priority,
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub mesh_clock: bool,
    pub next_due: String,
    pub next_due_ms: u64,
    pub fired: u32,
    pub last_fired_ms: Option<u64>,
    pub last_late_ms: Option<u64>,
    pub created_at_ms: u64,
    /// The message, for schedules this member made (sealed; others see `None`).
    pub text: Option<String>,
}

/// The destinations a schedule's `to` names: itself for none or `me`.
fn dests(to: Option<&str>) -> Option<Vec<Dest>> {
    match to.map(str::trim) {
        None | Some("") | Some("me") => None,
        Some(t) => Some(Dest::parse_list(t)),
    }
}

impl Client {
    /// Schedule `text` for `to` (a peer, `@group`, `*`, a comma-separated list; none or
    /// `me` = a reminder to this session), sealed here, delivered by the broker when due
    /// on wall time.
    pub async fn schedule(
        &self,
        to: Option<&str>,
        text: &str,
        when: When,
        priority: Priority,
    ) -> Result<ScheduleView, ClientError> {
        self.schedule_on(to, text, when, priority, false).await
    }

    /// As [`Client::schedule`]; with `mesh_clock` the times are on the mesh's simulation
    /// clock (`deliver_at` a mesh time, `in_seconds` and cron counted in mesh time).
    pub async fn schedule_on(
        &self,
        to: Option<&str>,
        text: &str,
        when: When,
        priority: Priority,
        mesh_clock: bool,
    ) -> Result<ScheduleView, ClientError> {
        // On mesh time, "in N seconds" is fixed here against the mesh clock, so the sealed
        // payload and the broker agree on the due time.
        let when = match (mesh_clock, when) {
            (true, w) => {
                let Some(c) = self.get_clock().await? else {
                    return Err(ClientError::Refused {
                        code: ErrorCode::Unavailable,
                        message: "this mesh has no simulation clock set; schedule on wall time, or set the clock first (mesh_set_clock)".into(),
                    });
                };
                match w {
                    When::In(s) => When::At(c.mesh_time_ms.saturating_add(s.saturating_mul(1000))),
                    w => w,
                }
            }
            (false, w) => w,
        };
        let mut id = Id16::random();
        if when.recurring() {
            id.0[12..].copy_from_slice(&[0; 4]);
        }
        let now = now_ms();
        let due_at_ms = match &when {
            When::At(t) => Some(*t),
            When::In(s) => Some(now.saturating_add(s.saturating_mul(1000))),
            _ => None,
        };
        let plain = Plain {
            text: text.to_string(),
            sent_at_ms: now,
            schedule: Some(PlainSchedule {
                id,
                due_at_ms,
                recurring: when.recurring(),
                mesh_time: mesh_clock,
            }),
        };
        let own_copy = self.seal_to_self(&id, &plain);
        let (to_label, envelopes) = match dests(to) {
            None => (
                "me".to_string(),
                vec![crate::proto::Envelope {
                    to: crate::proto::Target::Peer(self.peer_key()),
                    sealed: own_copy.clone(),
                }],
            ),
            Some(ds) if ds.is_empty() => {
                return Err(ClientError::Refused {
                    code: ErrorCode::BadRequest,
                    message: "no destination in 'to'".into(),
                })
            }
            Some(ds) => {
                let names: Vec<String> = ds
                    .iter()
                    .filter_map(|d| match d {
                        Dest::Peer(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                let peers = if names.is_empty() {
                    vec![]
                } else {
                    self.resolve(&names).await?
                };
                let label = to.unwrap_or_default().trim().to_string();
                (label, self.seal_for(&ds, &peers, &id, &plain)?)
            }
        };
        let (deliver_at_ms, in_seconds, cron, tz) = match when {
            When::At(t) => (Some(t), None, None, None),
            When::In(s) => (None, Some(s), None, None),
            When::Cron { expr, tz } => (None, None, Some(expr), tz),
        };
        let q = Q::Create {
            id,
            to: to_label,
            envelopes,
            own_copy,
            priority,
            deliver_at_ms,
            in_seconds,
            cron,
            tz,
            mesh_clock,
        };
        let s = self
            .call(q, |r| match r {
                Response::Schedules(A::Create { schedule }) => Ok(schedule),
                r => Err(r),
            })
            .await?;
        Ok(self.view(&s))
    }

    /// The mesh's pending schedules, soonest first.
    pub async fn list_scheduled(&self) -> Result<Vec<ScheduleView>, ClientError> {
        let all = self
            .call(Q::List {}, |r| match r {
                Response::Schedules(A::List { schedules }) => Ok(schedules),
                r => Err(r),
            })
            .await?;
        Ok(all.iter().map(|s| self.view(s)).collect())
    }

    pub async fn cancel_scheduled(&self, id: Id16) -> Result<Id16, ClientError> {
        self.call(Q::Cancel { id }, |r| match r {
            Response::Schedules(A::Cancel { id }) => Ok(id),
            r => Err(r),
        })
        .await
    }

    fn view(&self, s: &Schedule) -> ScheduleView {
        let text = s
            .own_copy
            .as_ref()
            .and_then(|c| self.open_from_self(&s.id, c).ok())
            .map(|p| p.text);
        ScheduleView {
            id: s.id.hex(),
            to: s.to.clone(),
            creator: s.creator.clone(),
            member_name: s.member_name.clone(),
            priority: s.priority,
            cron: s.cron.clone(),
            tz: s.tz.clone(),
            mesh_clock: s.mesh_clock,
            next_due: rfc3339(s.next_due_ms),
            next_due_ms: s.next_due_ms,
            fired: s.fired,
            last_fired_ms: s.last_fired_ms,
            last_late_ms: s.last_late_ms,
            created_at_ms: s.created_at_ms,
            text,
        }
    }
}

/// One line for a schedule.
pub fn line(s: &ScheduleView) -> String {
    let when = match (&s.cron, &s.tz) {
        (Some(c), Some(tz)) => format!("cron '{c}' ({tz}), next {}", s.next_due),
        (Some(c), None) => format!("cron '{c}' (UTC), next {}", s.next_due),
        _ => format!("at {}", s.next_due),
    };
    let clock = if s.mesh_clock { " [mesh time]" } else { "" };
    let text = s
        .text
        .as_deref()
        .map(|t| format!(": \"{}\"", crate::util::truncate(t, 120)))
        .unwrap_or_default();
    format!(
        "{} to {} by {} ({}) {when}{clock}, fired {}x{text}",
        s.id, s.to, s.creator, s.member_name, s.fired
    )
}
