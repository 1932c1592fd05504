//! Capabilities: what sessions can do together beyond the connection itself. Each is one
//! folder holding everything of it except its wire types (`proto::<name>`, the bottom layer
//! that broker and client share): the broker handler, client calls, MCP tools and CLI verbs.
//! See docs/DESIGN.md, "How to add a capability".
//!
//! Inside a folder, `broker.rs` and `client.rs` never import each other; `mcp.rs` and
//! `cli.rs` build on `client.rs`. The core reaches a capability through one line each in
//! `broker::dispatch`, `mcp::tool_groups`, [`TOOL_GROUPS`], `cli::Cmd` (and its `run` arm),
//! [`TABLES`] if it has tables, and `pub mod` here.

pub mod peers;

/// Tables of capabilities, created when the broker opens its store (each capability that
/// stores anything of its own adds its `tables::create` here; `peers` uses the core's).
pub const TABLES: &[crate::store::CreateTables] = &[];

/// Tool groups a session can narrow its MCP tools to (`claudemesh mcp --tools`,
/// `CLAUDEMESH_TOOLS`): each capability's name as in `hello_ack.caps`, without version.
pub const TOOL_GROUPS: &[&str] = &["msg", "peers"];
