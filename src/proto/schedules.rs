//! Wire types of the `schedules` capability: messages and reminders the broker delivers
//! later, once or on a cron schedule. The payload is sealed by the creating client like any
//! message; the broker stores the envelopes and sends them at the due time.

use super::{Envelope, Id16, Key, Priority, Sealed};
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "schedules/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Schedule `envelopes` (sealed as for `msg.send`) once, at `deliver_at_ms` or
    /// `in_seconds` from now, or at every match of `cron` (5 fields) in time zone `tz`
    /// (IANA name, default UTC); exactly one of the three. `id` is chosen by the client and
    /// is also the id the payload was sealed under: a one-time schedule is delivered with
    /// message id `id`; a recurring one must end in four zero bytes and each firing is
    /// delivered as `id[..12] ‖ due minute` (big-endian minutes since the Unix epoch).
    /// `to` is the destination as the creator wrote it; `own_copy` is the same text
    /// sealed to the creator itself, shown back to it by `list`. With `mesh_clock` the
    /// times are on the mesh's simulation clock (`clock`), which must be set.
    Create {
        id: Id16,
        to: String,
        envelopes: Vec<Envelope>,
        own_copy: Sealed,
        #[serde(default)]
        priority: Priority,
        #[serde(default)]
        deliver_at_ms: Option<u64>,
        #[serde(default)]
        in_seconds: Option<u64>,
        #[serde(default)]
        cron: Option<String>,
        #[serde(default)]
        tz: Option<String>,
        #[serde(default)]
        mesh_clock: bool,
    },
    /// The mesh's pending schedules, soonest first.
    List {},
    /// Cancel schedule `id` (its creator's member or a mesh admin).
    Cancel { id: Id16 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Create { schedule: Box<Schedule> },
    List { schedules: Vec<Schedule> },
    Cancel { id: Id16 },
}

/// One pending schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: Id16,
    /// The destination as written by its creator (`me`, a peer name, `@group`, `*`).
    pub to: String,
    /// Peer name of the creator, its key and its member's name.
    pub creator: String,
    pub creator_key: Key,
    pub member_name: String,
    pub priority: Priority,
    /// The cron expression of a recurring schedule, and its time zone.
    pub cron: Option<String>,
    pub tz: Option<String>,
    /// Times are on the mesh clock (`next_due_ms` is then mesh time).
    pub mesh_clock: bool,
    pub created_at_ms: u64,
    /// When it fires next.
    pub next_due_ms: u64,
    /// How often it has fired, when it last did, and how late that was.
    pub fired: u32,
    pub last_fired_ms: Option<u64>,
    pub last_late_ms: Option<u64>,
    /// The payload sealed to the creator; sent only to the creator's own member.
    pub own_copy: Option<Sealed>,
}
