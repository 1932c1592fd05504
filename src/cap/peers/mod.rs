//! The `peers` capability (`peers/2`; 2 added `list_groups`): who is in the mesh and what each session says about
//! itself.
//!
//! - Semantics: `list` shows the mesh's peers as others should see them (online visible
//!   peers; offline ones seen in the last day whose name still points at them and that no
//!   online session of the same member and directory replaced); `resolve` answers per name
//!   (peer name, member name routed to the member's active session, or hex key), offline
//!   peers included. Changes (`set_summary`, `set_profile`, `set_visible`, `join_group`,
//!   `leave_group`) apply to the caller's own peer only.
//! - Limits: summary 2,048 bytes; profile avatar 32, title 128, bio 2,048 bytes, at most 32
//!   capabilities of 64 bytes; at most 64 groups, group names of `A-Z a-z 0-9 . _ -`
//!   segments joined by `/`, roles up to 64 bytes without control characters; 256 names per
//!   resolve.
//! - Durability: a change is answered after its commit (the peer record in the core's peer
//!   table); nothing of this capability lives outside that record.
//! - Who can read: every member of the mesh sees visible peers; a hidden peer is seen only
//!   in its own lookups and by name or key.
//!
//! Its state is the core's peer registry (delivery needs it too), reached through the hub's
//! narrow registry API (`broker::hub::peers`); this folder holds the rules.

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
