//! Hostile clients: slow readers, floods, cross-mesh access, removed members, injection in
//! string fields. The broker keeps serving everyone else.

use crate::common;

use claudemesh::client::admin;
use claudemesh::client::{enroll, Client, ConnState, Dest, Home};
use claudemesh::crypto::hello::{make_hello, HelloParams};
use claudemesh::proto::admin::AdminRequest;
use claudemesh::proto::{ClientFrame, ErrorCode, Priority, Role, Status};
use claudemesh::util::now_ms;
use common::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

async fn wait_state(c: &Client, want: impl Fn(&ConnState) -> bool) -> ConnState {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = c.state();
        if want(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "state never reached; last {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slow_reader_is_dropped_others_are_unaffected_and_its_messages_stay_queued() {
    let mesh = Mesh::start_with(|c| c.write_timeout = Duration::from_millis(800)).await;
    let (alice, bob, carol, dave) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
        mesh.member("dave").await,
    );
    // bob says hello and then never reads.
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, hello_json(&bob, "bob", "cli")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = std::sync::Arc::new(alice.connect().await);
    let bob_peer = a.resolve(&["bob".into()]).await.unwrap();
    let big = "z".repeat(60_000);
    let (c, d) = (carol.connect().await, dave.connect().await);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (a, bob_peer, big) = (a.clone(), bob_peer.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let text = format!("{t}-{i}-{big}");
                a.send_resolved(&[Dest::parse("bob")], &bob_peer, &text, Priority::Now, None)
                    .await
                    .unwrap();
            }
        }));
    }
    // Meanwhile carol and dave talk normally.
    for i in 0..20 {
        let start = Instant::now();
        c.send(
            &[Dest::parse("dave")],
            &format!("hi {i}"),
            Priority::Now,
            None,
        )
        .await
        .unwrap();
        let m = next_message(&d, T)
            .await
            .expect("dave hears carol while bob stalls");
        d.ack(&[m.msg_id]);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "delivery stayed fast: {:?}",
            start.elapsed()
        );
    }
    for t in tasks {
        t.await.unwrap();
    }
    // bob's stalled connection is dropped by the write timeout...
    let deadline = Instant::now() + WAIT;
    while mesh.server().hub.health().connections > 3 {
        assert!(Instant::now() < deadline, "stalled reader was not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ws);
    // ...and everything sent to it is still there for its next connection.
    let b = bob.connect().await;
    let mut got = 0;
    while got < 400 {
        let m = next_message(&b, WAIT)
            .await
            .expect("queued messages arrive");
        b.ack(&[m.msg_id]);
        got += 1;
    }
}

#[tokio::test]
async fn a_flood_beyond_the_rate_limit_disconnects_the_flooder_only() {
    let mesh = Mesh::start_with(|c| {
        c.rate_per_s = 100.0;
        c.rate_burst = 100.0;
        c.flood_limit = 300;
    })
    .await;
    let (eve, alice, bob) = (
        mesh.member("eve").await,
        mesh.member("alice").await,
        mesh.member("bob").await,
    );
    let (a, b) = (alice.connect().await, bob.connect().await);
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, hello_json(&eve, "eve", "cli")).await;
    let flood = tokio::spawn(async move {
        for i in 0..5000 {
            use futures_util::SinkExt;
            let f = if i % 2 == 0 {
                format!(r#"{{"ping":{{"id":{i}}}}}"#)
            } else {
                "{garbage".to_string()
            };
            if ws
                .send(tokio_tungstenite::tungstenite::Message::Text(f.into()))
                .await
                .is_err()
            {
                return true; // disconnected
            }
        }
        closed_within(&mut ws, T).await
    });
    a.send(&[Dest::parse("bob")], "unbothered", Priority::Now, None)
        .await
        .unwrap();
    assert_eq!(next_message(&b, T).await.unwrap().text, "unbothered");
    assert!(flood.await.unwrap(), "the flooder was disconnected");
    a.ping().await.unwrap();
}

#[tokio::test]
async fn a_member_of_one_mesh_cannot_reach_another_meshs_peers_or_data() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    // A second mesh on the same broker, with its own member.
    let other = enroll::create_mesh(&mesh.owner_home, &mesh.data_dir(), "other")
        .await
        .unwrap();
    let inv = enroll::make_invite(
        &mesh.data_dir(),
        &other,
        Role::Member,
        now_ms() + 60_000,
        None,
    )
    .await
    .unwrap();
    let zed_home = Home {
        dir: mesh.tmp.path().join("zed"),
    };
    let (zed_mc, _) = enroll::join(&zed_home, &inv, "zed").await.unwrap();
    let zed = Member {
        home: zed_home,
        mc: zed_mc,
        name: "zed".into(),
    };
    let z = zed.connect().await;
    z.join_group("eng", "member").await.unwrap();
    let zed_pk = z.peer_key();

    let a = alice.connect().await;
    // By name, by key, by group, by broadcast, by listing: nothing of mesh "other" is visible.
    assert_eq!(
        a.resolve(&["zed".into()]).await.unwrap_err().code(),
        Some(ErrorCode::UnknownTarget)
    );
    assert_eq!(
        a.resolve(&[zed_pk.hex()]).await.unwrap_err().code(),
        Some(ErrorCode::UnknownTarget)
    );
    assert_eq!(
        a.send(&[Dest::parse("@eng")], "x", Priority::Now, None)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::UnknownTarget)
    );
    assert!(a
        .list_peers()
        .await
        .unwrap()
        .iter()
        .all(|p| p.name != "zed"));
    a.send(&[Dest::Broadcast], "team only", Priority::Now, None)
        .await
        .unwrap();
    assert!(next_message(&z, Duration::from_millis(400)).await.is_none());
    // A hand-made DM envelope to zed's key is refused by the broker.
    let mut ws = raw_ws(mesh.server().addr).await;
    let carol = mesh.member("carol").await;
    send_text(&mut ws, hello_json(&carol, "carol", "cli")).await;
    recv_json(&mut ws, T).await.unwrap();
    let f = serde_json::json!({"msg": {"send": {"msg_id": "00112233445566778899aabbccddeeff", "priority": "now",
        "envelopes": [{"to": {"peer": zed_pk.hex()}, "sealed": {"nonce": claudemesh::util::b64(&[0; 24]), "ct": claudemesh::util::b64(&[1; 40])}}]}}});
    send_text(&mut ws, req_json(1, f)).await;
    let mut v = recv_json(&mut ws, T).await.unwrap();
    while v.get("event").is_some() {
        v = recv_json(&mut ws, T).await.unwrap();
    }
    assert_eq!(v["error"]["code"], "unknown_target", "{v}");
    // alice's member key saying hello into mesh "other" is refused.
    let h = make_hello(
        &alice.mc.member(),
        &alice.mc.peer("x"),
        &HelloParams {
            mesh_id: other.mesh_id,
            name: "alice",
            session_id: "x",
            hostname: "",
            cwd: "",
            push: true,
            status: Status::Idle,
        },
        now_ms(),
    );
    let mut ws2 = raw_ws(mesh.server().addr).await;
    send_text(
        &mut ws2,
        serde_json::to_string(&ClientFrame::Hello(h)).unwrap(),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws2, T).await.unwrap()["error"]["code"],
        "not_member"
    );
}

#[tokio::test]
async fn a_removed_member_is_disconnected_and_cannot_reconnect_or_rejoin() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let b = bob.connect().await;
    let r = admin::call(
        &mesh.data_dir(),
        &AdminRequest::MemberRemove {
            mesh: "team".into(),
            name: "alice".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(r["disconnected"], 1);
    let s = wait_state(&a, |s| matches!(s, ConnState::Failed(_))).await;
    let ConnState::Failed(e) = s else {
        unreachable!()
    };
    assert_eq!(e.code(), Some(ErrorCode::NotMember));
    // A fresh connection is refused; so is joining again with the same keys.
    let e = Client::connect(alice.opts(), WAIT).await.err().unwrap();
    assert_eq!(e.code(), Some(ErrorCode::NotMember));
    let e = enroll::join(&alice.home, &mesh.invite, "alice")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("removed"), "{e}");
    // The others carry on; the removed member is not a target any more... but its name stays taken.
    b.ping().await.unwrap();
    let e = enroll::join(
        &Home {
            dir: mesh.tmp.path().join("imposter"),
        },
        &mesh.invite,
        "alice",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("already used"), "{e}");
    // Removing twice or a stranger is a clear error.
    let e = admin::call(
        &mesh.data_dir(),
        &AdminRequest::MemberRemove {
            mesh: "team".into(),
            name: "nobody".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no member named 'nobody'"));
}

#[tokio::test]
async fn path_and_control_characters_in_names_are_refused_everywhere() {
    let mesh = Mesh::start().await;
    let bad = [
        "../../etc/passwd",
        "a/b",
        "a\nb",
        "a b",
        ".hidden",
        "-rf",
        "x\u{1b}[31m",
        "",
        &"n".repeat(65),
    ];
    // At join (HTTP).
    for (i, n) in bad.iter().enumerate() {
        let home = Home {
            dir: mesh.tmp.path().join(format!("j{i}")),
        };
        assert!(
            enroll::join(&home, &mesh.invite, n).await.is_err(),
            "join accepted {n:?}"
        );
    }
    // At hello.
    let bob = mesh.member("bob").await;
    for n in bad {
        let mut ws = raw_ws(mesh.server().addr).await;
        send_text(&mut ws, hello_json(&bob, n, "s")).await;
        let v = recv_json(&mut ws, T).await.unwrap();
        assert_eq!(
            v["error"]["code"], "bad_request",
            "hello accepted {n:?}: {v}"
        );
    }
    // Groups.
    let b = bob.connect().await;
    for g in ["../x", "a//b", "/root", "a b", "x\n"] {
        assert_eq!(
            b.join_group(g, "member").await.unwrap_err().code(),
            Some(ErrorCode::BadRequest),
            "group {g:?}"
        );
    }
    // Mesh names over the admin socket.
    let e = admin::call(
        &mesh.data_dir(),
        &AdminRequest::MeshCreate {
            name: "../evil".into(),
            mesh_id: claudemesh::proto::Key([1; 32]),
            owner_pk: claudemesh::proto::Key([2; 32]),
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("invalid mesh name"));
    // A hostile session id never escapes the client's home directory.
    let p = bob.home.seen_path(&bob.mc.mesh_id, "../../../../tmp/x");
    assert!(p.starts_with(&bob.home.dir), "{}", p.display());
}

#[tokio::test]
async fn disk_write_failures_give_clear_errors_lose_nothing_acknowledged_and_recover() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let r1 = a
        .send(
            &[Dest::parse("bob")],
            "before the failure",
            Priority::Low,
            None,
        )
        .await
        .unwrap();
    mesh.server().hub.store().fail_writes(true);
    let e = a
        .send(
            &[Dest::parse("bob")],
            "during the failure",
            Priority::Low,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Storage), "{e}");
    assert!(e.to_string().contains("could not store"), "{e}");
    a.ping().await.unwrap(); // still serving
    mesh.server().hub.store().fail_writes(false);
    let r3 = a
        .send(&[Dest::parse("bob")], "after recovery", Priority::Low, None)
        .await
        .unwrap();
    let b = bob.connect().await;
    let texts: Vec<String> = b
        .pull()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["before the failure", "after recovery"]);
    assert_ne!(r1.msg_id, r3.msg_id);
}
