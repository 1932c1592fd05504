//! The `clock` capability (`clock/1`): a per-mesh simulation clock (`mesh_set_clock`,
//! `mesh_pause_clock`, `mesh_resume_clock`, `mesh_clock`).
//!
//! - Semantics: a tick is one minute of mesh time; at speed x N (1..=100) a tick comes
//!   every 60/N seconds of wall time and reaches every online peer as a `clock_tick`
//!   event naming the mesh time. Setting creates the clock (at `start_at`, default now) or
//!   changes its speed, counting from then; mesh time only moves forward. Pausing stops
//!   mesh time until a resume; the part of a tick interval already run is dropped.
//! - Empty mesh: a running clock pauses itself when the mesh has no peer online and
//!   resumes when one returns (a `clock_resumed` event); a manual pause stays until a
//!   resume. A broker that restarts restores every clock as it was written, paused as for
//!   an empty mesh until a peer connects: down time is not mesh time.
//! - Mesh time for schedules: `schedule_reminder` with `mesh_time` fires on this clock
//!   (`broker::mesh_now`); while it is paused such schedules wait.
//! - Who: every member sets, pauses, resumes and reads the clock (each change is an
//!   event naming who made it).
//! - Durability: each change and each tick is written before it is announced.
//!
//! Table `clocks` (mesh → clock with the wall time its current interval began).

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
pub mod tables;
