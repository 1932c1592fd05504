//! `mesh_info`: one call that tells a session what its mesh holds — peers, groups, state
//! keys, tasks by status, streams, file leases, pending schedules, shared contexts — composed on the client from the other
//! capabilities' list calls (run concurrently), so it needs no wire kind of its own. A part
//! whose capability the broker does not offer (or that fails) is reported as such, not
//! fatal.

pub mod cli;
pub mod client;
pub mod mcp;
