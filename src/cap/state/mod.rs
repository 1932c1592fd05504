//! The `state` capability (`state/1`): a per-mesh key-value store of JSON values that
//! sessions share (`set_state`, `get_state`, `delete_state`, `list_state`, `watch_state`).
//!
//! - Semantics: every write gets a version, the sequence of the mesh's `state` log (so it
//!   grows across keys); `if_version` makes a write a compare-and-set (0: "only if absent"),
//!   and a lost race is a typed answer (`applied: false`, the current version and entry),
//!   not an error. `ttl_s` makes a key vanish that long after its write: readers stop
//!   seeing it on time, and the sweeper writes its removal (an `expired` change) — also for
//!   keys that ran out while the broker was down, as soon as it starts again.
//! - Watches: a watch of a key or a prefix pushes each change (after its commit) to the
//!   watching connection only; a client that reconnects watches again from the last
//!   version it saw, and gets every change it missed for each key still in the log (the
//!   log keeps the newest record per key, so a key written twice while away arrives once,
//!   at its newest version; deletions are kept as records and arrive too).
//! - Limits: key 1–256 bytes without control characters; value (compact JSON) 64 KiB;
//!   `ttl_s` up to one year; a list answers at most 1,000 entries or about 1 MiB.
//! - Durability: a write is answered after its group commit; its TTL row is written in the
//!   same transaction.
//! - Who can read and write: every member of the mesh (there are no per-key rights yet).
//!
//! Its data: the mesh's log `state` (subject = key; record = value or removal, writer,
//! expiry) and the table `state_ttl` (due time ‖ mesh ‖ key → version).

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
pub mod tables;
