//! The `schedules` capability (`schedules/1`): messages and reminders the broker delivers
//! later, once or on a cron schedule (`schedule_reminder`, `list_scheduled`,
//! `cancel_scheduled`).
//!
//! - Semantics: a schedule is due once (`deliver_at` or `in_seconds`) or at every match of
//!   a 5-field cron expression in an IANA time zone ([`cron`]; standard day rule: with both
//!   day fields restricted, either matches). At its due time the broker sends it through
//!   core delivery as its creator: stored, queued for an offline recipient until it comes
//!   back (within retention), pushed to an online one. No `to` (or `me`) is a reminder to
//!   the creating session; `to` may be peers, `@group` (sub-groups included) or `*`.
//! - End to end: the creating client seals the text for each destination (a DM per peer,
//!   the mesh key for groups) exactly as for `send_message`, plus a copy sealed to itself
//!   that `list_scheduled` shows back to it; the broker stores ciphertext only. A one-time
//!   schedule is delivered under its own id. A recurring one is sealed once under its id
//!   (last four bytes zero) and each firing is delivered as `id[..12] ‖ due minute`; the
//!   recipient accepts such an id only when the sealed payload says it recurs, under that
//!   id. (So the broker can repeat a recurring schedule's text at other minutes — that is
//!   what it is for — but cannot make an ordinary or one-time message repeat.)
//! - Exactly once: the due queue is the `schedules` table, read at start; a firing's
//!   message id is fixed by the schedule and its due minute, and core delivery stores a
//!   (sender, message id) once, so a firing repeated after a crash between its commit and
//!   the schedule's advance is recognised as a duplicate. A firing missed while the broker
//!   was down happens on start; the recipient sees how late it was (the creator gets a
//!   `schedule_fired` event saying so). Missed firings of a recurring schedule coalesce
//!   into one.
//! - Who: every member lists the mesh's schedules (the text only for its creator's
//!   member); a schedule is cancelled by its creator's member or a mesh admin. A firing
//!   core delivery refuses (an empty group) is dropped with an event to the creator; a
//!   recurring schedule goes on. A schedule whose creator's member was removed is dropped
//!   at its next firing, unsent (`Ctx::send_as` refuses a removed sender).
//! - Limits: 1,000 pending schedules per mesh, one-time schedules at most ten years
//!   ahead, a `deliver_at` more than a minute in the past is refused, message size as
//!   for `send_message`.
//! - Mesh time: with `mesh_clock` (MCP `mesh_time`, CLI `--mesh-time`) the times are on
//!   the mesh's simulation clock (`clock`), which must be set: `deliver_at` is a mesh
//!   time, `in_seconds` and cron count mesh time, and the schedule fires at the tick that
//!   reaches its due time; while the clock is paused it waits. Without a clock such a
//!   schedule is refused (`unavailable`).
//!
//! Table `schedules` (mesh ‖ schedule id → schedule with its envelopes).

pub mod broker;
pub mod cli;
pub mod client;
pub mod cron;
pub mod mcp;
pub mod tables;
