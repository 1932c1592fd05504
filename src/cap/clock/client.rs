//! The client side of `clock`: set, pause, resume and read the mesh's simulation clock.

use crate::client::{Client, ClientError};
use crate::proto::clock::{Clock, Request as Q, Response as A};
use crate::proto::Response;

impl Client {
    /// Run the mesh clock at `speed` (1..=100), created at mesh time `start_at_ms` (now by
    /// default) when the mesh has none.
    pub async fn set_clock(
        &self,
        speed: u32,
        start_at_ms: Option<u64>,
    ) -> Result<Clock, ClientError> {
        self.call(Q::Set { speed, start_at_ms }, |r| match r {
            Response::Clock(A::Set { clock }) => Ok(clock),
            r => Err(r),
        })
        .await
    }

    /// Pause the mesh clock.
    pub async fn pause_clock(&self) -> Result<Clock, ClientError> {
        self.call(Q::Pause {}, |r| match r {
            Response::Clock(A::Pause { clock }) => Ok(clock),
            r => Err(r),
        })
        .await
    }

    /// Resume the mesh clock.
    pub async fn resume_clock(&self) -> Result<Clock, ClientError> {
        self.call(Q::Resume {}, |r| match r {
            Response::Clock(A::Resume { clock }) => Ok(clock),
            r => Err(r),
        })
        .await
    }

    /// The mesh clock, or `None` when the mesh has not set one.
    pub async fn get_clock(&self) -> Result<Option<Clock>, ClientError> {
        self.call(Q::Get {}, |r| match r {
            Response::Clock(A::Get { clock }) => Ok(clock),
            r => Err(r),
        })
        .await
    }
}

/// One line for a clock: mesh time, tick, running or why paused, next tick.
pub fn line(c: &Clock) -> String {
    let mut s = c.describe();
    if let Some(t) = c.next_tick_at_ms {
        let wait = t.saturating_sub(crate::util::now_ms());
        s.push_str(&format!(
            "; next tick in {}",
            crate::util::human_duration(wait)
        ));
    }
    s
}
