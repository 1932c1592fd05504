//! One WebSocket connection: the hello deadline, the reader loop, and the writer task that
//! drains a bounded queue of pre-encoded messages into the socket.

use super::dispatch::dispatch;
use super::gate::Ticket;
use super::hub::{Hub, Session};
use super::outbox::{encode_msg, send_on, ConnHandle, Refusal, Responder};
use crate::proto::{ClientFrame, Codec, ErrorCode, Req, ServerFrame};
use crate::util::now_ms;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

fn close_msg(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

/// Run a connection to completion. `ticket` (its place among unauthenticated connections)
/// is given back once the hello is done, whatever its outcome.
pub async fn serve<S>(hub: Arc<Hub>, ws: WebSocketStream<S>, codec: Codec, ticket: Arc<Ticket>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _guard = hub.conn_guard();
    let mut closing = hub.closing();
    if *closing.borrow() {
        return;
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(hub.cfg.outbound_queue);

    // Writer: batch whatever is queued, flush once per batch. A peer that stops reading
    // stalls only its own writer; after `write_timeout` the connection is dropped (its
    // messages stay queued durably).
    let write_timeout = hub.cfg.write_timeout;
    let stalled = Arc::new(Notify::new());
    let stalled_w = stalled.clone();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64);
        while rx.recv_many(&mut buf, 64).await > 0 {
            let batch = async {
                for m in buf.drain(..) {
                    let is_close = matches!(m, Message::Close(_));
                    sink.feed(m).await?;
                    if is_close {
                        sink.flush().await?;
                        let _ = sink.close().await;
                        return Ok::<bool, WsError>(false);
                    }
                }
                sink.flush().await?;
                Ok(true)
            };
            match tokio::time::timeout(write_timeout, batch).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!("peer stopped reading; dropping its connection");
                    stalled_w.notify_one();
                    return;
                }
            }
        }
        let _ = sink.close().await;
    });

    // Hello, within the deadline.
    let hello = match tokio::time::timeout(hub.cfg.hello_timeout, next_data(&mut stream)).await {
        Err(_) => {
            let _ = tx.try_send(encode_msg(
                codec,
                &ServerFrame::error(
                    None,
                    ErrorCode::NotAuthenticated,
                    "no hello within the deadline",
                ),
            ));
            let _ = tx.try_send(close_msg(CloseCode::Policy, "hello timeout"));
            drop(tx);
            let _ = writer.await;
            return;
        }
        Ok(None) => {
            drop(tx);
            let _ = writer.await;
            return;
        }
        Ok(Some(Err(e))) => {
            let _ = tx.try_send(encode_msg(codec, &e));
            let _ = tx.try_send(close_msg(CloseCode::Policy, "bad frame"));
            drop(tx);
            let _ = writer.await;
            return;
        }
        Ok(Some(Ok(data))) => match codec.decode::<ClientFrame>(&data) {
            Ok(ClientFrame::Hello(h)) => h,
            Ok(_) => {
                let _ = tx.try_send(encode_msg(
                    codec,
                    &ServerFrame::error(
                        None,
                        ErrorCode::NotAuthenticated,
                        "the first frame must be a hello",
                    ),
                ));
                let _ = tx.try_send(close_msg(CloseCode::Policy, "hello required"));
                drop(tx);
                let _ = writer.await;
                return;
            }
            Err(e) => {
                let _ = tx.try_send(encode_msg(
                    codec,
                    &ServerFrame::error(None, ErrorCode::BadFrame, e.to_string()),
                ));
                let _ = tx.try_send(close_msg(CloseCode::Policy, "bad hello"));
                drop(tx);
                let _ = writer.await;
                return;
            }
        },
    };

    let kill = Arc::new(Notify::new());
    let last_rx = Arc::new(AtomicU64::new(now_ms()));
    let handle = ConnHandle::new(
        hub.next_conn_id(),
        codec,
        hello.push,
        tx.clone(),
        kill.clone(),
        last_rx.clone(),
    );
    let session = match hub.hello(&hello, handle.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(code = ?e.code, reason = %e.message, "hello refused");
            let _ = tx.try_send(encode_msg(
                codec,
                &ServerFrame::error(None, e.code, e.message),
            ));
            let _ = tx.try_send(close_msg(CloseCode::Policy, "hello refused"));
            drop(tx);
            let _ = writer.await;
            return;
        }
    };

    drop(ticket);
    let mut limited_in_a_row = 0u32;
    loop {
        tokio::select! {
            _ = stalled.notified() => break,
            _ = kill.notified() => {
                let _ = tx.try_send(close_msg(CloseCode::Away, "closed by broker"));
                break;
            }
            _ = closing.changed() => {
                let _ = tx.try_send(close_msg(CloseCode::Restart, "broker shutting down"));
                break;
            }
            next = stream.next() => {
                last_rx.store(now_ms(), Ordering::Relaxed);
                match next {
                    None => break,
                    Some(Ok(Message::Text(t))) => on_data(&hub, &session, &handle, t.as_bytes(), &mut limited_in_a_row),
                    Some(Ok(Message::Binary(b))) => on_data(&hub, &session, &handle, &b, &mut limited_in_a_row),
                    Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                    Some(Err(e)) => {
                        if let Some(f) = ws_error_frame(&e) {
                            send_on(&handle, encode_msg(codec, &f));
                            let _ = tx.try_send(close_msg(CloseCode::Size, "frame too large"));
                        }
                        break;
                    }
                }
                if limited_in_a_row > hub.cfg.flood_limit {
                    tracing::warn!(conn = session.conn_id, "flooding beyond the rate limit; disconnecting");
                    let f = ServerFrame::error(None, ErrorCode::RateLimited, "disconnected: sustained flooding beyond the rate limit");
                    send_on(&handle, encode_msg(codec, &f));
                    let _ = tx.try_send(close_msg(CloseCode::Policy, "flooding"));
                    break;
                }
            }
        }
    }
    hub.disconnect(&session);
    drop(tx);
    // Give the writer a moment to flush the close; a peer that stopped reading does not get
    // to keep the socket and its queue alive.
    let mut writer = writer;
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// One frame of an authenticated connection. Every request gets exactly one reply: its
/// handler's, `bad_request` when its body does not decode, or `rate_limited` with a
/// retry-after when the peer is over its rate. A flooder whose limited frames outnumber
/// its allowed ones by `flood_limit` is disconnected (close 1008 "flooding").
fn on_data(
    hub: &Arc<Hub>,
    s: &Session,
    conn: &ConnHandle,
    data: &[u8],
    limited_in_a_row: &mut u32,
) {
    let codec = conn.codec;
    let frame = codec.decode::<ClientFrame>(data);
    if let Err(retry_after_ms) = hub.allow_frame(s) {
        *limited_in_a_row += 1;
        let id = match &frame {
            Ok(ClientFrame::Req(q)) => Some(q.id),
            // An ack only shrinks the broker's state: applied even over the rate (it still
            // counts toward flooding), so a limited client never has to resend one.
            Ok(ClientFrame::Ack { ids }) => {
                hub.ack(s, ids);
                None
            }
            Ok(_) => None,
            Err(_) => codec.peek_req_id(data),
        };
        if let Some(id) = id {
            let msg = format!(
                "rate limit exceeded ({} frames/s); retry after {retry_after_ms} ms",
                hub.cfg.rate_per_s
            );
            Responder::new(conn.clone(), id).retry_after(
                ErrorCode::RateLimited,
                msg,
                retry_after_ms,
            );
        }
        return;
    }
    // An allowed frame only takes one off the count: a client over its rate keeps adding
    // more than it takes off, so a sustained flood is closed however the bucket refills.
    *limited_in_a_row = limited_in_a_row.saturating_sub(1);
    match frame {
        Ok(ClientFrame::Req(Req { id, body })) => {
            dispatch(hub, s, body, Responder::new(conn.clone(), id))
        }
        Ok(ClientFrame::Ack { ids }) => hub.ack(s, &ids),
        Ok(ClientFrame::Hello(_)) => {
            let f = ServerFrame::error(None, ErrorCode::BadRequest, "already authenticated");
            send_on(conn, encode_msg(codec, &f));
        }
        Err(e) => match codec.peek_req_id(data) {
            Some(id) => Responder::new(conn.clone(), id).err(Refusal::new(
                ErrorCode::BadRequest,
                format!("request {id} does not decode: {e}"),
            )),
            None => {
                let f = ServerFrame::error(None, ErrorCode::BadFrame, e.to_string());
                send_on(conn, encode_msg(codec, &f));
            }
        },
    }
}

fn ws_error_frame(e: &WsError) -> Option<ServerFrame> {
    match e {
        WsError::Capacity(c) => Some(ServerFrame::error(
            None,
            ErrorCode::TooLarge,
            format!("frame too large: {c}"),
        )),
        _ => None,
    }
}

/// The next data frame before hello (text or binary), skipping pings.
async fn next_data<St>(stream: &mut St) -> Option<Result<bytes::Bytes, ServerFrame>>
where
    St: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Text(t)) => return Some(Ok(bytes::Bytes::copy_from_slice(t.as_bytes()))),
            Ok(Message::Binary(b)) => return Some(Ok(b)),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => return ws_error_frame(&e).map(Err),
        }
    }
}
