//! HTTP on the broker's one port: `GET /health`, `POST /join`, and the `/ws` upgrade.

use super::gate::Ticket;
use super::hub::{Hub, Refusal};
use crate::proto::{Codec, ErrorCode, HttpError, JoinRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Resp = Response<Full<Bytes>>;

const MAX_JOIN_BODY: usize = 16 * 1024;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json(
        status,
        &HttpError {
            error: code.to_string(),
            message: message.into(),
        },
    )
}

fn code_str(c: ErrorCode) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "internal".into())
}

fn refusal(r: Refusal) -> Resp {
    let status = match r.code {
        ErrorCode::InviteExpired | ErrorCode::InviteUsedUp => StatusCode::GONE,
        ErrorCode::NameTaken => StatusCode::CONFLICT,
        ErrorCode::UnknownMesh => StatusCode::NOT_FOUND,
        ErrorCode::BadSignature | ErrorCode::NotMember => StatusCode::FORBIDDEN,
        ErrorCode::Storage | ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, &code_str(r.code), r.message)
}

/// Route one request.
/// Route one request. `ticket` is the connection's place among unauthenticated ones; an
/// upgrade carries it on until the hello.
pub async fn route(
    hub: Arc<Hub>,
    req: Request<Incoming>,
    ticket: Arc<Ticket>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") => json(StatusCode::OK, &hub.health()),
        (Method::POST, "/join") => join(hub, req).await,
        (Method::GET, "/ws") => upgrade(hub, req, ticket),
        (_, "/health" | "/join" | "/ws") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route for {}",
                path.chars().take(100).collect::<String>()
            ),
        ),
    })
}

async fn join(hub: Arc<Hub>, req: Request<Incoming>) -> Resp {
    let body = match Limited::new(req.into_body(), MAX_JOIN_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("join body over {MAX_JOIN_BODY} bytes"),
            )
        }
    };
    let jr: JoinRequest = match serde_json::from_slice(&body) {
        Ok(j) => j,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed join request: {e}"),
            )
        }
    };
    match hub.join(jr).await {
        Ok(reply) => json(StatusCode::OK, &reply),
        Err(r) => refusal(r),
    }
}

fn upgrade(hub: Arc<Hub>, mut req: Request<Incoming>, ticket: Arc<Ticket>) -> Resp {
    let is_ws = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected a WebSocket upgrade",
        );
    };
    if !is_ws {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected a WebSocket upgrade",
        );
    }
    let requested = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (codec, chosen) = Codec::negotiate(requested.as_deref());
    // A client of another release asking only for a binary encoding we do not speak: accept
    // its subprotocol so the handshake completes, then close with a reason it can show.
    let other_release = match (chosen, requested.as_deref()) {
        (None, Some(list)) => list
            .split(',')
            .map(str::trim)
            .find(|p| p.starts_with("claudemesh."))
            .and_then(|p| HeaderValue::from_str(p).ok()),
        _ => None,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max_frame = hub.cfg.max_frame_bytes;
    let mismatch = other_release.is_some();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(crate::util::ws_config(max_frame)),
                )
                .await;
                if mismatch {
                    let reason = format!(
                        "claudemesh release mismatch: this broker ({}) speaks {} and {}; upgrade claudemesh",
                        crate::VERSION,
                        crate::proto::SUBPROTOCOL_BINARY,
                        crate::proto::SUBPROTOCOL_JSON
                    );
                    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy,
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    return;
                }
                super::conn::serve(hub, ws, codec, ticket).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = chosen {
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    } else if let Some(p) = other_release {
        h.insert(SEC_WEBSOCKET_PROTOCOL, p);
    }
    r
}
