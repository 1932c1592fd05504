//! The one dispatch point: a decoded request goes to its capability's handler together with
//! the [`Responder`] that answers it. One line per capability; a handler never returns a
//! reply, it consumes its responder (now, or later from a commit callback). A capability's
//! handler gets a [`Ctx`], the core's narrow face; messaging is the core's own delivery.

use super::ctx::Ctx;
use super::hub::{Hub, Session};
use super::outbox::Responder;
use crate::proto::{conn, Request};
use std::sync::Arc;

pub fn dispatch(hub: &Arc<Hub>, s: &Session, req: Request, r: Responder) {
    match req {
        Request::Conn(q) => handle_conn(q, r),
        Request::Msg(q) => hub.msg(s, q, r),
        Request::Peers(q) => crate::cap::peers::broker::handle(Ctx::new(hub, s), q, r),
        Request::State(q) => crate::cap::state::broker::handle(Ctx::new(hub, s), q, r),
        Request::Tasks(q) => crate::cap::tasks::broker::handle(Ctx::new(hub, s), q, r),
        Request::Leases(q) => crate::cap::leases::broker::handle(Ctx::new(hub, s), q, r),
        Request::Clock(q) => crate::cap::clock::broker::handle(Ctx::new(hub, s), q, r),
        Request::Context(q) => crate::cap::context::broker::handle(Ctx::new(hub, s), q, r),
        Request::Schedules(q) => crate::cap::schedules::broker::handle(Ctx::new(hub, s), q, r),
        Request::Streams(q) => crate::cap::streams::broker::handle(Ctx::new(hub, s), q, r),
    }
}

fn handle_conn(q: conn::Request, r: Responder) {
    match q {
        conn::Request::Ping {} => r.ok(conn::Response::Ping {
            server_time_ms: crate::util::now_ms(),
        }),
    }
}
