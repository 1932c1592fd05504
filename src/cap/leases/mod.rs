//! The `leases` capability (`leases/1`): advisory file reservations, "who is editing what"
//! (`reserve_files`, `release_files`, `list_reservations`).
//!
//! - Semantics: a lease holds path patterns (`*` within a segment, `**` across, `?`; see
//!   [`glob`]) for one peer (session), exclusive (default) or shared. A reservation is all
//!   or nothing: if any pattern overlaps another peer's lease where either is exclusive, it
//!   answers the conflicts (holder, reason, expiry) and reserves nothing. Overlap is
//!   conservative (two wildcard patterns with related literal prefixes count as
//!   overlapping). A peer's own leases never conflict with each other.
//! - Leases lapse at their expiry (`ttl_s`, default one hour, at most a day) and when their
//!   peer has been gone longer than the broker's grace window (`--grace`, 90 s by
//!   default): a session that crashed does not block others for long.
//! - Advisory: nothing stops a write; Claude Code's PreToolUse hook (`claudemesh install
//!   --lease-hook`) warns before an Edit or Write of a file another peer holds.
//! - Limits: 64 patterns per reservation of up to 1,024 bytes, reason 512 bytes, 1,000
//!   leases per mesh.
//! - Durability: every change is answered after its commit; leases are read once when the
//!   broker starts.
//! - Who: every member reserves and sees all leases; a lease is released by its holder's
//!   member or a mesh admin.
//!
//! Table `leases` (mesh ‖ lease id → lease).

pub mod broker;
pub mod cli;
pub mod client;
pub mod glob;
pub mod mcp;
pub mod tables;
