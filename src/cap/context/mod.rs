//! The `context` capability (`context/1`): what each session has learned, shared so a new
//! session does not re-read what another already read (`share_context`, `get_context`,
//! `list_contexts`).
//!
//! - Semantics: one context per session (peer), replaced whole by each share (lists are
//!   replaced, not merged) and kept with its id, version and first-shared time. It stays
//!   after its session leaves: that is when it is most useful. `get_context` ranks by BM25
//!   over tags (weight 3), files read (2), findings (1.5) and summary (1) with a light
//!   English stemmer ([`rank`]); equal scores go to the most recent. Each hit says which
//!   fields matched. Files read are named relative to the project root, as leases do.
//! - Events: a `context_shared` event to the mesh's online peers (best effort).
//! - Not end-to-end encrypted: the broker ranks the text; do not put secrets in it.
//! - Limits: summary 8 KiB, 200 files of 512 bytes, 50 findings of 1 KiB, 16 tags of 64
//!   bytes, query 1 KiB; 1,000 contexts per mesh (one more drops the least recently
//!   updated); answers stop at about 4 MiB of text.
//! - Who: every member shares its sessions' contexts and reads all.
//! - Durability: every share is answered after its commit; contexts are read once when the
//!   broker starts, with their term counts kept in memory.
//!
//! Table `contexts` (mesh ‖ peer → context).

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
pub mod rank;
pub mod tables;
