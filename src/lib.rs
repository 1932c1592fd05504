//! claudemesh: a mesh that lets many Claude Code sessions work as one team.
//!
//! One crate, one binary. Layers, top to bottom (dependencies point down):
//! `cli` → `mcp` → `cap::<name>` (client, MCP and CLI sides) → `claude`/`agents` → `client`
//! → `proto`/`crypto`; `broker` → `cap::<name>` (broker side) → `broker::ctx`/`hub` →
//! `store` → `proto`. `client` never imports `broker`, nor `broker` `client`.
//! See docs/ARCHITECTURE notes in ../shared/design and docs/PROTOCOL.md.

pub mod agents;
pub mod broker;
pub mod cap;
pub mod claude;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod fuzzing;
pub mod mcp;
pub mod proto;
pub mod service;
pub mod store;
pub mod util;

/// Version string reported in `/health` and hello acks.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
