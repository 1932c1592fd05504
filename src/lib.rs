//! claudemesh: a mesh that lets many Claude Code sessions work as one team.
//!
//! One crate, one binary. Layers, top to bottom (dependencies point down):
//! `cli` → `mcp` → `claude`/`agents` → `client` → `proto`/`crypto`; `broker` →
//! `broker::ctx`/`hub` → `store` → `proto`. A capability (`cap::<name>`) sits beside them:
//! its broker side uses only `broker::ctx`, its client side `client`, and its MCP tools and
//! CLI verbs extend `mcp::MeshServer` and use `cli::connect`; the core names each
//! capability by one line per registry (see `cap`). `client` never imports `broker`, nor
//! `broker` `client`.
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
