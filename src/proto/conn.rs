//! Wire types of the `conn` capability: connection-level requests every broker answers.

use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "conn/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Round trip; the reply carries the broker's clock.
    Ping {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ping { server_time_ms: u64 },
}
