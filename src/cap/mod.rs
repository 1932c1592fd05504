//! Capabilities: what sessions can do together beyond the connection itself. Each is one
//! folder holding everything of it except its wire types (`proto::<name>`, the bottom layer
//! that broker and client share): the broker handler, client calls, MCP tools and CLI verbs.
//! See docs/DESIGN.md, "How to add a capability".
//!
//! Inside a folder, `broker.rs` and `client.rs` never import each other; `mcp.rs` and
//! `cli.rs` build on `client.rs`. The core reaches a capability through one line each in
//! `broker::dispatch`, `mcp::tool_groups`, [`TOOL_GROUPS`], `cli::Cmd` (and its `run` arm),
//! [`TABLES`] if it has tables, and `pub mod` here.

pub mod clock;
pub mod context;
pub mod leases;
pub mod mesh;
pub mod peers;
pub mod schedules;
pub mod state;
pub mod streams;
pub mod tasks;

/// Tables of capabilities, created when the broker opens its store (each capability that
/// stores anything of its own adds its `tables::create` here; `peers` uses the core's).
pub const TABLES: &[crate::store::CreateTables] = &[
    state::tables::create,
    tasks::tables::create,
    leases::tables::create,
    schedules::tables::create,
    context::tables::create,
    clock::tables::create,
];

/// Tool groups a session can narrow its MCP tools to (`claudemesh mcp --tools`,
/// `CLAUDEMESH_TOOLS`): each capability's name as in `hello_ack.caps`, without version.
pub const TOOL_GROUPS: &[&str] = &[
    "msg",
    "peers",
    "state",
    "tasks",
    "leases",
    "streams",
    "schedules",
    "context",
    "clock",
];

/// Work capabilities start with the broker (sweepers, due timers), one line each.
pub const START: &[fn(&crate::broker::ctx::Ctx)] = &[
    state::broker::start,
    tasks::broker::start,
    leases::broker::start,
    streams::broker::start,
    schedules::broker::start,
    clock::broker::start,
];

/// A subscription's item as a one-line event for a session (MCP, `claudemesh` verbs); one
/// line per capability with subscriptions.
pub fn feed_event(f: &crate::proto::Feed) -> crate::proto::Event {
    match &f.body {
        crate::proto::Push::State(c) => state::client::change_event(c),
        crate::proto::Push::Streams(m) => streams::client::message_event(m),
    }
}
