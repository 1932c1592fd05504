//! Wire types of the `clock` capability: a per-mesh simulation clock. Each tick is one
//! minute of mesh time; at speed x N a tick comes every 60/N seconds of wall time.

use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "clock/1";

/// One tick is this much mesh time.
pub const TICK_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Run the mesh clock at `speed` (1..=100). Creates the clock when the mesh has none,
    /// at mesh time `start_at_ms` (default: now); on an existing clock changes the speed
    /// and, with `start_at_ms`, moves mesh time forward to it (never back). A paused clock
    /// stays paused.
    Set {
        speed: u32,
        #[serde(default)]
        start_at_ms: Option<u64>,
    },
    /// Stop the clock until `resume` (mesh time stands still).
    Pause {},
    /// Start a paused clock again.
    Resume {},
    /// The clock, or none when the mesh has not set one.
    Get {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Set { clock: Clock },
    Pause { clock: Clock },
    Resume { clock: Clock },
    Get { clock: Option<Clock> },
}

/// A mesh's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Ticks per minute of wall time (1..=100).
    pub speed: u32,
    pub paused: bool,
    /// Paused because the mesh has no peer online; it resumes when one comes back.
    pub auto_paused: bool,
    /// Member who paused it (a manual pause).
    pub paused_by: Option<String>,
    /// Ticks so far, and the mesh time they reached (ms since the Unix epoch).
    pub tick: u64,
    pub mesh_time_ms: u64,
    /// Mesh time at tick 0.
    pub started_at_ms: u64,
    /// Member who last set it, and when (wall time).
    pub set_by: String,
    pub updated_at_ms: u64,
    /// Wall time of the next tick, while running.
    pub next_tick_at_ms: Option<u64>,
}

impl Clock {
    /// One line: mesh time, tick, and whether it runs (at what speed) or why it is paused.
    pub fn describe(&self) -> String {
        let state = if self.auto_paused {
            "paused while the mesh is empty".to_string()
        } else if self.paused {
            format!(
                "paused by {}",
                self.paused_by.as_deref().unwrap_or("a member")
            )
        } else {
            format!("running at x{}", self.speed)
        };
        format!(
            "mesh time {} (tick {}), {state}",
            crate::util::rfc3339(self.mesh_time_ms),
            self.tick
        )
    }
}
