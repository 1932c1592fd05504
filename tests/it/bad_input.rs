//! Bad input gets a clear error, and the broker keeps serving everyone else.

use crate::common;

use claudemesh::client::{enroll, Dest};
use claudemesh::crypto::hello::{make_hello, HelloParams};
use claudemesh::crypto::Identity;
use claudemesh::proto::{ClientFrame, ErrorCode, Hello, Priority, Role, Status};
use claudemesh::util::now_ms;
use common::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn hello_for(m: &Member, ts: u64) -> Hello {
    let member = m.mc.member();
    let peer = m.mc.peer("cli");
    make_hello(
        &member,
        &peer,
        &HelloParams {
            mesh_id: m.mc.mesh_id,
            name: &m.name,
            session_id: "cli",
            hostname: "test",
            cwd: "/",
            push: true,
            status: Status::Idle,
        },
        ts,
    )
}

fn frame(f: &ClientFrame) -> String {
    serde_json::to_string(f).unwrap()
}

async fn expect_error(ws: &mut RawWs, code: &str) -> String {
    let v = recv_json(ws, T).await.expect("an error frame");
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(!msg.is_empty());
    msg
}

/// The broker still works for well-behaved peers.
async fn still_serving(mesh: &Mesh) {
    let a = mesh
        .member(&format!("ok{}", claudemesh::util::random_u64() % 100000))
        .await
        .connect()
        .await;
    a.ping().await.unwrap();
    let r = a
        .send(&[Dest::Broadcast], "still here", Priority::Now, None)
        .await
        .unwrap();
    assert!(r.recipients >= 1);
}

#[tokio::test]
async fn bad_hello_signature_is_refused_and_closed() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let mut h = hello_for(&bob, now_ms());
    h.sig.0[0] ^= 1;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, frame(&ClientFrame::Hello(h))).await;
    expect_error(&mut ws, "bad_signature").await;
    assert!(closed_within(&mut ws, T).await);
    still_serving(&mesh).await;
}

#[tokio::test]
async fn stale_hello_timestamp_is_refused() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let h = hello_for(&bob, now_ms() - 10 * 60 * 1000);
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, frame(&ClientFrame::Hello(h))).await;
    let msg = expect_error(&mut ws, "stale_hello").await;
    assert!(msg.contains("allowed"), "{msg}");
    assert!(closed_within(&mut ws, T).await);
}

#[tokio::test]
async fn replayed_hello_is_refused() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let h = hello_for(&bob, now_ms());
    let mut ws1 = raw_ws(mesh.server().addr).await;
    send_text(&mut ws1, frame(&ClientFrame::Hello(h.clone()))).await;
    assert!(recv_json(&mut ws1, T)
        .await
        .unwrap()
        .get("hello_ack")
        .is_some());
    let mut ws2 = raw_ws(mesh.server().addr).await;
    send_text(&mut ws2, frame(&ClientFrame::Hello(h))).await;
    expect_error(&mut ws2, "replayed_hello").await;
}

#[tokio::test]
async fn non_member_hello_is_refused() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    // A stranger with its own keys claiming bob's mesh.
    let stranger = Identity::generate();
    let peer = stranger.derive(b"x", "cli");
    let h = make_hello(
        &stranger,
        &peer,
        &HelloParams {
            mesh_id: bob.mc.mesh_id,
            name: "eve",
            session_id: "s",
            hostname: "",
            cwd: "",
            push: true,
            status: Status::Idle,
        },
        now_ms(),
    );
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, frame(&ClientFrame::Hello(h))).await;
    expect_error(&mut ws, "not_member").await;
    assert!(closed_within(&mut ws, T).await);
    still_serving(&mesh).await;
}

#[tokio::test]
async fn unsupported_protocol_version_gets_an_error_then_close() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let mut v = serde_json::to_value(ClientFrame::Hello(hello_for(&bob, now_ms()))).unwrap();
    v["hello"]["v"] = json!(99);
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, v.to_string()).await;
    let msg = expect_error(&mut ws, "unsupported_version").await;
    assert!(msg.contains("99"));
    assert!(closed_within(&mut ws, T).await);
}

#[tokio::test]
async fn malformed_frames_get_bad_frame_errors_and_the_connection_survives() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    // Before hello: an error, then close.
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, "{this is not json").await;
    expect_error(&mut ws, "bad_frame").await;
    assert!(closed_within(&mut ws, T).await);
    // After hello: an error for each bad frame, and the connection keeps working.
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(
        &mut ws,
        frame(&ClientFrame::Hello(hello_for(&bob, now_ms()))),
    )
    .await;
    assert!(recv_json(&mut ws, T)
        .await
        .unwrap()
        .get("hello_ack")
        .is_some());
    // Frames that are not frames: a connection-level `bad_frame` (no id to answer).
    for bad in [
        "{nope",
        "[]",
        r#"{"send":{"id":5}}"#,
        r#"{"ack":{"ids":["zz"]}}"#,
        r#"{"teleport":{}}"#,
        r#"{"req":{"body":{"conn":{"ping":{}}}}}"#,
        "\u{0}",
    ] {
        send_text(&mut ws, bad).await;
        expect_error(&mut ws, "bad_frame").await;
    }
    // Requests whose body does not decode: `bad_request`, answering that request's id.
    for (id, body) in [
        (5, json!({"msg": {"send": {}}})),
        (6, json!({"teleport": {}})),
        (7, json!({"peers": {"nope": {}}})),
        (8, json!({"peers": {"set_visible": {"visible": "yes"}}})),
        (9, json!("conn")),
    ] {
        send_text(&mut ws, req_json(id, body)).await;
        let v = recv_json(&mut ws, T).await.expect("an error frame");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        assert_eq!(v["error"]["id"], id, "{v}");
    }
    // Invalid UTF-8 in a binary frame on a JSON connection.
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![0xff, 0xfe, 0x00].into(),
    ))
    .await
    .unwrap();
    expect_error(&mut ws, "bad_frame").await;
    send_text(&mut ws, req_json(77, json!({"conn": {"ping": {}}}))).await;
    let v = recv_json(&mut ws, T).await.unwrap();
    assert_eq!(v["reply"]["id"], 77);
    assert!(v["reply"]["body"]["conn"]["ping"]["server_time_ms"].is_u64());
}

#[tokio::test]
async fn frames_before_hello_are_refused() {
    let mesh = Mesh::start().await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, req_json(1, json!({"conn": {"ping": {}}}))).await;
    expect_error(&mut ws, "not_authenticated").await;
    assert!(closed_within(&mut ws, T).await);
}

#[tokio::test]
async fn oversized_message_is_refused_with_its_size_and_the_limit() {
    let mesh = Mesh::start().await;
    let (alice, _bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let a = alice.connect().await;
    // Through the client: refused locally with the same wording.
    let big = "x".repeat(64 * 1024 + 1);
    let e = a
        .send(&[Dest::parse("bob")], &big, Priority::Next, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge));
    assert!(e.to_string().contains("65536"), "{e}");
    // Through a raw frame: the broker enforces it too.
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(
        &mut ws,
        frame(&ClientFrame::Hello(hello_for(&carol, now_ms()))),
    )
    .await;
    recv_json(&mut ws, T).await.unwrap();
    let peers = a.resolve(&["bob".into()]).await.unwrap();
    let f = json!({"msg": {"send": {"msg_id": "00112233445566778899aabbccddeeff",
        "envelopes": [{"to": {"peer": peers[0].peer_pk.hex()}, "sealed": {
        "nonce": claudemesh::util::b64(&[0u8; 24]), "ct": claudemesh::util::b64(&vec![1u8; 70_000])}}]}}});
    send_text(&mut ws, req_json(9, f)).await;
    let v = recv_json(&mut ws, T).await.unwrap();
    assert_eq!(v["error"]["code"], "too_large");
    assert_eq!(v["error"]["id"], 9);
    // A frame beyond the frame cap closes that connection with an error, nobody else's.
    let huge = "y".repeat(2 * 1024 * 1024);
    send_text(&mut ws, huge).await;
    let v = recv_json(&mut ws, T).await;
    if let Some(v) = v {
        assert_eq!(v["error"]["code"], "too_large", "{v}");
    }
    assert!(closed_within(&mut ws, T).await);
    a.ping().await.unwrap();
    still_serving(&mesh).await;
}

#[tokio::test]
async fn unknown_target_is_a_clear_error() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    let e = a
        .send(&[Dest::parse("nobody")], "hi", Priority::Next, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTarget));
    assert!(e.to_string().contains("nobody"));
    let e = a
        .send(&[Dest::parse("@empty-group")], "hi", Priority::Next, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTarget));
    assert!(e.to_string().contains("@empty-group"), "{e}");
}

#[tokio::test]
async fn rate_limit_gives_a_clear_error_and_recovers() {
    let mesh = Mesh::start_with(|c| {
        c.rate_per_s = 20.0;
        c.rate_burst = 20.0;
    })
    .await;
    let bob = mesh.member("bob").await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(
        &mut ws,
        frame(&ClientFrame::Hello(hello_for(&bob, now_ms()))),
    )
    .await;
    recv_json(&mut ws, T).await.unwrap();
    for i in 0..60 {
        send_text(&mut ws, req_json(i, json!({"conn": {"ping": {}}}))).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    let mut answered = std::collections::HashSet::new();
    while let Some(v) = recv_json(&mut ws, Duration::from_millis(500)).await {
        if let Some(id) = v["reply"]["id"].as_u64() {
            pongs += 1;
            answered.insert(id);
        } else {
            assert_eq!(v["error"]["code"], "rate_limited", "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rate limit"));
            assert!(v["error"]["retry_after_ms"].as_u64().unwrap() >= 1, "{v}");
            answered.insert(v["error"]["id"].as_u64().unwrap());
            limited += 1;
        }
    }
    // The burst is served, and every refused request still gets its one reply.
    assert!((20..60).contains(&pongs), "pongs {pongs}");
    assert_eq!(pongs + limited, 60);
    assert_eq!(answered.len(), 60, "one reply per request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_text(&mut ws, req_json(1000, json!({"conn": {"ping": {}}}))).await;
    assert_eq!(recv_json(&mut ws, T).await.unwrap()["reply"]["id"], 1000);
}

#[tokio::test]
async fn invites_expired_tampered_or_used_up_are_refused() {
    let mesh = Mesh::start().await;
    let home = |n: &str| claudemesh::client::Home {
        dir: mesh.tmp.path().join(format!("h-{n}")),
    };
    // Used up: a 1-use invite works once.
    let once = enroll::make_invite(
        &mesh.data_dir(),
        &mesh.owned,
        Role::Member,
        now_ms() + 60_000,
        Some(1),
    )
    .await
    .unwrap();
    enroll::join(&home("u1"), &once, "u1").await.unwrap();
    let e = enroll::join(&home("u2"), &once, "u2")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("used up"), "{e}");
    // Expired: refused locally, and by the broker if the local check is skipped.
    let old = enroll::make_invite(
        &mesh.data_dir(),
        &mesh.owned,
        Role::Member,
        now_ms() + 300,
        None,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = enroll::join(&home("x"), &old, "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
    // Tampered secret part.
    let (signed, _) = mesh.invite.split_once('#').unwrap();
    let bad = format!("{signed}#{}", claudemesh::util::b64(&[7u8; 32]));
    let e = enroll::join(&home("t"), &bad, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("altered"), "{e}");
    // Tampered payload.
    let mut chars: Vec<char> = mesh.invite.chars().collect();
    let i = "claudemesh://join/".len() + 30;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let e = enroll::join(&home("t2"), &chars.into_iter().collect::<String>(), "t2")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invite"), "{e}");
    // The name rule.
    enroll::join(&home("n1"), &mesh.invite, "sam")
        .await
        .unwrap();
    let e = enroll::join(&home("n2"), &mesh.invite, "sam")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already used"), "{e}");
    // Joining twice from the same machine is idempotent.
    let (_, r) = enroll::join(&home("n1"), &mesh.invite, "sam")
        .await
        .unwrap();
    assert!(r.already_member);
    still_serving(&mesh).await;
}

#[tokio::test]
async fn join_endpoint_rejects_forged_and_malformed_requests() {
    let mesh = Mesh::start().await;
    let base = mesh.server().http_url();
    let post =
        |body: Vec<u8>| claudemesh::client::http::request(&base, "POST", "/join", Some(body));
    let (s, b) = post(b"{garbage".to_vec()).await.unwrap();
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("malformed join request"));
    let (s, _) = post(vec![b'a'; 100_000]).await.unwrap();
    assert_eq!(s, 413);
    // A well-formed request whose signature is not the member's.
    let inv = claudemesh::crypto::invite::parse_link(&mesh.invite).unwrap();
    let m = Identity::generate();
    let p = m.derive(&inv.payload.mesh_id.0, "cli");
    let req = claudemesh::proto::JoinRequest {
        invite: inv.signed_part.clone(),
        name: "forger".into(),
        member_pk: m.public(),
        member_xpk: m.x_public(),
        peer_pk: p.public(),
        peer_xpk: p.x_public(),
        peer_cert: m.sign(&claudemesh::crypto::hello::cert_bytes(
            &inv.payload.mesh_id,
            &p.public(),
            &p.x_public(),
        )),
        ts_ms: now_ms(),
        sig: Identity::generate().sign(b"not the right bytes"),
    };
    let (s, b) = post(serde_json::to_vec(&req).unwrap()).await.unwrap();
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&b));
    let (s, _) = claudemesh::client::http::request(&base, "GET", "/nope", None)
        .await
        .unwrap();
    assert_eq!(s, 404);

    // A correctly signed request for an expired invite (a client that skips the local check).
    let short = enroll::make_invite(
        &mesh.data_dir(),
        &mesh.owned,
        Role::Member,
        now_ms() + 200,
        None,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inv = claudemesh::crypto::invite::parse_link(&short).unwrap();
    let ts = now_ms();
    let req = claudemesh::proto::JoinRequest {
        invite: inv.signed_part.clone(),
        name: "tardy".into(),
        member_pk: m.public(),
        member_xpk: m.x_public(),
        peer_pk: p.public(),
        peer_xpk: p.x_public(),
        peer_cert: m.sign(&claudemesh::crypto::hello::cert_bytes(
            &inv.payload.mesh_id,
            &p.public(),
            &p.x_public(),
        )),
        ts_ms: ts,
        sig: m.sign(&claudemesh::crypto::invite::join_bytes(
            &inv.payload.invite_id,
            &m.public(),
            &m.x_public(),
            &p.public(),
            "tardy",
            ts,
        )),
    };
    let (s, b) = post(serde_json::to_vec(&req).unwrap()).await.unwrap();
    assert_eq!(s, 410, "{}", String::from_utf8_lossy(&b));
    let e: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(e["error"], "invite_expired");
    assert!(e["message"].as_str().unwrap().contains("expired at"));
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let mesh = Mesh::start_with(|c| {
        c.ping_interval = Duration::from_millis(200);
        c.dead_after = Duration::from_millis(600);
    })
    .await;
    let bob = mesh.member("bob").await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(
        &mut ws,
        frame(&ClientFrame::Hello(hello_for(&bob, now_ms()))),
    )
    .await;
    recv_json(&mut ws, T).await.unwrap();
    assert_eq!(mesh.server().hub.health().peers_online, 1);
    // Never read again (so pings go unanswered).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while mesh.server().hub.health().peers_online > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "dead connection was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ws);
}

#[tokio::test]
async fn connection_that_never_says_hello_is_dropped_after_the_deadline() {
    let mesh = Mesh::start_with(|c| c.hello_timeout = Duration::from_millis(300)).await;
    let mut ws = raw_ws(mesh.server().addr).await;
    let v = recv_json(&mut ws, T).await;
    if let Some(v) = v {
        assert_eq!(v["error"]["code"], "not_authenticated");
    }
    assert!(closed_within(&mut ws, T).await);
}

#[tokio::test]
async fn a_client_of_another_release_is_told_to_upgrade_instead_of_failing_silently() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let mesh = Mesh::start().await;
    let mut req = format!("ws://{}/ws", mesh.server().addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "claudemesh.v1.postcard".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the handshake completes");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "claudemesh.v1.postcard"
    );
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => {
            assert!(f.reason.contains("upgrade claudemesh"), "{f:?}")
        }
        other => panic!("expected a close with a reason, got {other:?}"),
    }
}
