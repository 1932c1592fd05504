//! `mesh_info`: one call that tells a session what its mesh holds — peers, groups, state
//! keys, tasks by status, streams, file leases — composed on the client from the other
//! capabilities' list calls (run concurrently), so it needs no wire kind of its own. A part
//! whose capability the broker does not offer (or that fails) is reported as such, not
//! fatal. Schedules join when that capability exists.

pub mod cli;
pub mod client;
pub mod mcp;
