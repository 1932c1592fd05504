//! Delivery semantics end to end: a real in-process broker, real WebSocket clients, real redb.

use crate::common;

use claudemesh::client::{Dest, Inbound};
use claudemesh::proto::{Priority, Status};
use common::*;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn dm_is_delivered_end_to_end_and_attributed_to_its_sender() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let r = a
        .send(
            &[Dest::parse("bob")],
            "tests pass on main",
            Priority::Next,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.recipients, 1);
    let m = next_message(&b, WAIT).await.expect("bob gets the DM");
    assert_eq!(m.text, "tests pass on main");
    assert_eq!(m.from, "alice");
    assert_eq!(m.to, "bob");
    assert_eq!(m.id, r.msg_id.hex());
    assert!(!m.undecryptable);
    b.ack(&[m.msg_id]);
    assert!(
        next_message(&a, QUIET).await.is_none(),
        "the sender does not get its own DM"
    );
}

#[tokio::test]
async fn group_message_reaches_members_and_subgroup_members_only() {
    let mesh = Mesh::start().await;
    let (alice, bob, carol, dave) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
        mesh.member("dave").await,
    );
    let (a, b, c, d) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
        dave.connect().await,
    );
    b.join_group("eng", "lead").await.unwrap();
    c.join_group("eng/web", "member").await.unwrap();
    d.join_group("design", "member").await.unwrap();
    let r = a
        .send(&[Dest::parse("@eng")], "standup in 5", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(r.recipients, 2);
    for client in [&b, &c] {
        let m = next_message(client, WAIT)
            .await
            .expect("group member gets it");
        assert_eq!(
            (m.text.as_str(), m.to.as_str(), m.from.as_str()),
            ("standup in 5", "@eng", "alice")
        );
    }
    assert!(
        next_message(&d, QUIET).await.is_none(),
        "non-members get nothing"
    );
    // Leaving the group stops delivery.
    c.leave_group("eng/web").await.unwrap();
    a.send(&[Dest::parse("@eng")], "second", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(next_message(&b, WAIT).await.unwrap().text, "second");
    assert!(messages_within(&c, QUIET).await.is_empty());
}

#[tokio::test]
async fn broadcast_reaches_every_other_peer_but_not_the_sender() {
    let mesh = Mesh::start().await;
    let names = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for n in names {
        clients.push(mesh.member(n).await.connect().await);
    }
    let r = clients[0]
        .send(&[Dest::Broadcast], "release at 17:00", Priority::Now, None)
        .await
        .unwrap();
    assert_eq!(r.recipients, 2);
    for c in &clients[1..] {
        let m = next_message(c, WAIT).await.unwrap();
        assert_eq!((m.text.as_str(), m.to.as_str()), ("release at 17:00", "*"));
    }
    assert!(
        messages_within(&clients[0], QUIET).await.is_empty(),
        "no echo to the sender"
    );
}

#[tokio::test]
async fn offline_recipient_gets_dm_group_and_broadcast_when_it_returns() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    b.join_group("ops", "member").await.unwrap();
    b.close().await;
    let a = alice.connect().await;
    for (dest, text) in [
        ("bob", "dm while away"),
        ("@ops", "group while away"),
        ("*", "broadcast while away"),
    ] {
        let r = a
            .send(&[Dest::parse(dest)], text, Priority::Next, None)
            .await
            .unwrap();
        assert_eq!(r.recipients, 1, "{dest} is queued for offline bob");
    }
    let b = bob.connect().await;
    let mut got: Vec<String> = messages_within(&b, Duration::from_millis(800))
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec!["broadcast while away", "dm while away", "group while away"]
    );
}

#[tokio::test]
async fn queued_messages_survive_a_broker_restart_between_send_and_receive() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let sent = a
        .send(&[Dest::parse("bob")], "durable hello", Priority::Low, None)
        .await
        .unwrap();
    drop(a);
    mesh.restart().await;
    let b = bob.connect().await;
    let msgs = b.pull().await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].text.as_str(), msgs[0].id.clone()),
        ("durable hello", sent.msg_id.hex())
    );
    b.ack(&[msgs[0].msg_id]);
    b.ping().await.unwrap();
    // Once acked, a restart does not bring it back.
    drop(b);
    mesh.restart().await;
    let b = bob.connect().await;
    assert!(b.pull().await.unwrap().is_empty());
}

#[tokio::test]
async fn low_priority_is_not_pushed_until_pulled() {
    let mesh = Mesh::start().await;
    let (a, b) = (
        mesh.member("alice").await.connect().await,
        mesh.member("bob").await.connect().await,
    );
    a.send(
        &[Dest::parse("bob")],
        "whenever you have time",
        Priority::Low,
        None,
    )
    .await
    .unwrap();
    assert!(
        messages_within(&b, Duration::from_millis(500))
            .await
            .is_empty(),
        "low is never pushed"
    );
    let pulled = b.pull().await.unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(
        (pulled[0].text.as_str(), pulled[0].priority),
        ("whenever you have time", Priority::Low)
    );
}

#[tokio::test]
async fn next_is_held_while_working_and_delivered_when_idle() {
    let mesh = Mesh::start().await;
    let (a, b) = (
        mesh.member("alice").await.connect().await,
        mesh.member("bob").await.connect().await,
    );
    b.set_status(Status::Working).await.unwrap();
    a.send(
        &[Dest::parse("bob")],
        "when you are free",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    assert!(
        messages_within(&b, Duration::from_millis(500))
            .await
            .is_empty(),
        "held while working"
    );
    b.set_status(Status::Idle).await.unwrap();
    let m = next_message(&b, WAIT).await.expect("delivered once idle");
    assert_eq!(m.text, "when you are free");
}

#[tokio::test]
async fn now_is_delivered_while_dnd_but_next_waits() {
    let mesh = Mesh::start().await;
    let (a, b) = (
        mesh.member("alice").await.connect().await,
        mesh.member("bob").await.connect().await,
    );
    b.set_status(Status::Dnd).await.unwrap();
    a.send(&[Dest::parse("bob")], "can wait", Priority::Next, None)
        .await
        .unwrap();
    a.send(&[Dest::parse("bob")], "prod is down", Priority::Now, None)
        .await
        .unwrap();
    let got = messages_within(&b, Duration::from_millis(600)).await;
    assert_eq!(
        got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        vec!["prod is down"]
    );
}

#[tokio::test]
async fn message_is_surfaced_once_when_the_connection_drops_before_the_ack() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let proxy = Proxy::start(mesh.server().addr).await;
    let b = bob.connect_via(proxy.addr).await;
    let a = alice.connect().await;

    // 1. Delivered, not yet acked, connection drops: redelivered but not surfaced again.
    a.send(&[Dest::parse("bob")], "first", Priority::Now, None)
        .await
        .unwrap();
    let m1 = next_message(&b, WAIT).await.unwrap();
    proxy.cut();
    b.wait_connected(WAIT).await.ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.wait_connected(WAIT).await.unwrap();
    assert!(
        messages_within(&b, Duration::from_millis(500))
            .await
            .is_empty(),
        "no second copy of an unacked message"
    );

    // 2. Acked, but the ack is lost on the wire: redelivered, re-acked silently.
    b.ack(&[m1.msg_id]);
    a.send(&[Dest::parse("bob")], "second", Priority::Now, None)
        .await
        .unwrap();
    let m2 = next_message(&b, WAIT).await.unwrap();
    assert_eq!(m2.text, "second");
    proxy.stall_upstream(true);
    b.ack(&[m2.msg_id]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    proxy.stall_upstream(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.wait_connected(WAIT).await.unwrap();
    assert!(
        messages_within(&b, Duration::from_millis(500))
            .await
            .is_empty(),
        "redelivery after a lost ack is not shown"
    );
    b.ping().await.unwrap();
    // The broker has dropped both now.
    assert_eq!(mesh.server().hub.health().queued_messages, 0);

    // 3. A new process for the same session (same seen file) does not show an acked message.
    drop(b);
    let b2 = bob.connect().await;
    assert!(b2.pull().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_send_retried_after_a_lost_reply_is_stored_once() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let proxy = Proxy::start(mesh.server().addr).await;
    let a = alice.connect_via(proxy.addr).await;
    let b = bob.connect().await;
    let bob_peer = a.resolve(&["bob".to_string()]).await.unwrap();
    // The send reaches the broker, but its `accepted` reply is lost; the client reconnects
    // and retries with the same message id.
    proxy.stall_downstream(true);
    let send = tokio::spawn(async move {
        let r = a
            .send_resolved(
                &[Dest::parse("bob")],
                &bob_peer,
                "exactly once",
                Priority::Now,
                None,
            )
            .await;
        (a, r)
    });
    let first = next_message(&b, WAIT)
        .await
        .expect("stored and delivered on the first try");
    assert_eq!(first.text, "exactly once");
    proxy.cut();
    proxy.stall_downstream(false);
    let (_a, r) = send.await.unwrap();
    let r = r.unwrap();
    assert!(r.duplicate, "the retry was recognised as the same message");
    assert_eq!(r.msg_id.hex(), first.id);
    assert!(
        messages_within(&b, Duration::from_millis(500))
            .await
            .is_empty(),
        "no second copy"
    );
    // And a send whose request never arrived is simply delivered after the retry.
    let a2 = alice.connect_via(proxy.addr).await;
    a2.resolve(&["bob".to_string()]).await.unwrap();
    proxy.stall_upstream(true);
    let send = tokio::spawn(async move {
        a2.send(&[Dest::parse("bob")], "after stall", Priority::Now, None)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    proxy.stall_upstream(false);
    assert!(!send.await.unwrap().unwrap().duplicate);
    assert_eq!(
        messages_within(&b, Duration::from_millis(800)).await.len(),
        1
    );
}

#[tokio::test]
async fn peers_list_shows_presence_groups_and_status() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let b = bob.connect().await;
    b.join_group("eng", "lead").await.unwrap();
    b.set_summary("fixing the flaky test").await.unwrap();
    b.set_status(Status::Working).await.unwrap();
    let peers = a.list_peers().await.unwrap();
    let bp = peers.iter().find(|p| p.name == "bob").unwrap();
    assert!(bp.online);
    assert_eq!(bp.status, Status::Working);
    assert_eq!(bp.summary, "fixing the flaky test");
    assert_eq!(
        (bp.groups[0].group.as_str(), bp.groups[0].role.as_str()),
        ("eng", "lead")
    );
    assert!(!bp.hostname.is_empty());
    assert!(bp.connected_since_ms > 0);
    b.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peers = a.list_peers().await.unwrap();
    let bp = peers.iter().find(|p| p.name == "bob").unwrap();
    assert!(!bp.online);
    assert_eq!(bp.groups.len(), 1, "groups persist while offline");
}

#[tokio::test]
async fn reconnect_within_grace_is_silent_and_a_real_absence_is_announced() {
    let mesh = Mesh::start_with(|c| c.grace = Duration::from_millis(700)).await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let b = bob.connect().await;
    // alice hears bob arrive.
    let ev = next_event(&a, WAIT).await.unwrap();
    assert!(
        ev.kind == "peer_joined" || ev.kind == "peer_returned",
        "{ev:?}"
    );
    // A quick reconnect: no left/joined noise.
    b.close().await;
    let b = bob.connect().await;
    assert!(
        next_event(&a, Duration::from_millis(1200)).await.is_none(),
        "no flapping events"
    );
    // A real absence: left after the grace window, then returned.
    b.close().await;
    let ev = next_event(&a, WAIT).await.unwrap();
    assert_eq!((ev.kind.as_str(), ev.peer.as_str()), ("peer_left", "bob"));
    let _b = bob.connect().await;
    let ev = next_event(&a, WAIT).await.unwrap();
    assert_eq!(ev.kind, "peer_returned");
    assert!(ev.text.contains("bob is back"));
}

async fn next_event(
    c: &claudemesh::client::Client,
    d: Duration,
) -> Option<claudemesh::proto::Event> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Some(Inbound::Event(e))) => return Some(e),
            Ok(Some(Inbound::Message(_) | Inbound::Feed(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn data_dir_never_contains_message_plaintext() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    b.join_group("eng", "member").await.unwrap();
    b.close().await;
    let a = alice.connect().await;
    let secrets = [
        "SECRET-DM-7f3a9c",
        "SECRET-GROUP-2b8e1d",
        "SECRET-BCAST-9c4f0a",
    ];
    a.send(&[Dest::parse("bob")], secrets[0], Priority::Next, None)
        .await
        .unwrap();
    a.send(&[Dest::parse("@eng")], secrets[1], Priority::Low, None)
        .await
        .unwrap();
    a.send(&[Dest::Broadcast], secrets[2], Priority::Now, None)
        .await
        .unwrap();
    // Deliver one of them (acked) too, so both queued and delivered data are on disk.
    let b = bob.connect().await;
    let m = next_message(&b, WAIT).await.unwrap();
    b.ack(&[m.msg_id]);
    b.ping().await.unwrap();
    drop((a, b));
    mesh.stop().await;
    let files = files_under(&mesh.data_dir());
    assert!(files.iter().any(|f| f.ends_with("claudemesh.redb")));
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{} contains plaintext {s}",
                f.display()
            );
        }
    }
}

#[tokio::test]
async fn multiple_targets_in_one_send_deliver_one_copy_each() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    let b = mesh.member("bob").await.connect().await;
    let c = mesh.member("carol").await.connect().await;
    c.join_group("eng", "member").await.unwrap();
    // carol is addressed twice (by name and via @eng): she still gets one copy.
    let r = a
        .send(
            &Dest::parse_list("bob,carol,@eng"),
            "sync at 3",
            Priority::Next,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.recipients, 2);
    assert_eq!(
        messages_within(&b, Duration::from_millis(500)).await.len(),
        1
    );
    assert_eq!(
        messages_within(&c, Duration::from_millis(500)).await.len(),
        1
    );
}

#[tokio::test]
async fn a_long_queue_is_delivered_through_the_in_flight_window_without_dropping_the_reader() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = std::sync::Arc::new(alice.connect().await);
    let bob_peer = a.resolve(&["bob".to_string()]).await.unwrap();
    // 3,000 messages for an offline peer: more than one in-flight window (1,024).
    let mut tasks = Vec::new();
    for t in 0..10 {
        let (a, bob_peer) = (a.clone(), bob_peer.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                a.send_resolved(
                    &[Dest::parse("bob")],
                    &bob_peer,
                    &format!("{t}-{i}"),
                    Priority::Now,
                    None,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let b = bob.connect().await;
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 3000 {
        let m = tokio::time::timeout_at(deadline, next_message(&b, WAIT))
            .await
            .unwrap()
            .expect("keeps flowing");
        b.ack(&[m.msg_id]);
        assert!(got.insert(m.text), "no duplicates");
    }
    assert!(
        matches!(b.state(), claudemesh::client::ConnState::Connected { .. }),
        "never dropped as a slow reader"
    );
}

#[tokio::test]
async fn concurrent_profile_changes_all_take_effect() {
    let mesh = Mesh::start().await;
    let b = std::sync::Arc::new(mesh.member("bob").await.connect().await);
    let (b1, b2, b3) = (b.clone(), b.clone(), b.clone());
    let (r1, r2, r3) = tokio::join!(
        async move { b1.join_group("eng", "lead").await },
        async move { b2.join_group("ops", "member").await },
        async move { b3.set_summary("on call").await },
    );
    r1.unwrap();
    r2.unwrap();
    r3.unwrap();
    let me = b
        .list_peers()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "bob")
        .unwrap();
    let mut groups: Vec<&str> = me.groups.iter().map(|g| g.group.as_str()).collect();
    groups.sort();
    assert_eq!(groups, vec!["eng", "ops"]);
    assert_eq!(me.summary, "on call");
}

#[tokio::test]
async fn a_one_shot_command_does_not_disconnect_a_listening_session() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let listening = bob.connect().await;
    // `claudemesh peers` / `send` as bob: a second, non-push connection of the same peer.
    let mut o = bob.opts();
    o.push = false;
    let one_shot = claudemesh::client::Client::connect(o, WAIT).await.unwrap();
    one_shot.list_peers().await.unwrap();
    one_shot.close().await;
    let a = alice.connect().await;
    a.send(
        &[Dest::parse("bob")],
        "still listening?",
        Priority::Now,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        next_message(&listening, WAIT).await.unwrap().text,
        "still listening?"
    );
}

#[tokio::test]
async fn a_newer_session_replaces_the_older_which_stops_instead_of_fighting() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let first = bob.connect().await;
    let second = bob.connect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let claudemesh::client::ConnState::Failed(e) = first.state() {
            assert_eq!(
                e.code(),
                Some(claudemesh::proto::ErrorCode::SessionReplaced)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old session was not told it was replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.ping().await.unwrap();
    assert!(matches!(
        second.state(),
        claudemesh::client::ConnState::Connected { .. }
    ));
}
