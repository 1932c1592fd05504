//! Peer presentation and tracking end to end (real in-process broker, real clients, real
//! redb): profiles, hidden peers, unread counts, per-recipient message status, and which
//! sessions a peer list shows.

use crate::common;

use claudemesh::client::{Client, Dest, Inbound};
use claudemesh::proto::{DeliveryState, Priority, Profile, Status};
use common::*;
use std::time::Duration;

/// A Claude Code session of `m` (its own peer, derived from the session id).
async fn session(m: &Member, sid: &str, name: &str, push: bool) -> Client {
    let mut o = claudemesh::client::ClientOptions::for_session(&m.home, &m.mc, sid, name);
    o.request_timeout = WAIT;
    o.push = push;
    Client::connect(o, WAIT).await.unwrap()
}

/// Wait until `observer` sees the peer with `key` offline (the broker noticed the close).
async fn wait_offline(observer: &Client, key: claudemesh::proto::Key) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = observer.resolve(&[key.hex()]).await.unwrap();
        if !p[0].online {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer never went offline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(peers: &[claudemesh::proto::PeerInfo]) -> Vec<String> {
    let mut v: Vec<String> = peers
        .iter()
        .map(|p| format!("{}:{}", p.name, if p.online { "on" } else { "off" }))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_profile_is_shown_to_others_and_survives_a_broker_restart() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let profile = Profile {
        avatar: "🦀".into(),
        title: "reviewer".into(),
        bio: "reads Rust diffs".into(),
        capabilities: vec!["rust".into(), "review".into()],
    };
    a.set_profile(&profile).await.unwrap();
    let b = bob.connect().await;
    let peers = b.list_peers().await.unwrap();
    assert_eq!(
        peers.iter().find(|p| p.name == "alice").unwrap().profile,
        profile
    );
    drop((a, b));
    mesh.restart().await;
    let b = bob.connect().await;
    let peers = b.list_peers().await.unwrap();
    assert_eq!(
        peers.iter().find(|p| p.name == "alice").unwrap().profile,
        profile,
        "kept across a restart"
    );
}

#[tokio::test]
async fn a_bad_profile_is_refused_and_the_old_one_stays() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let good = Profile {
        title: "lead".into(),
        ..Default::default()
    };
    a.set_profile(&good).await.unwrap();
    for bad in [
        Profile {
            title: "x".repeat(500),
            ..Default::default()
        },
        Profile {
            avatar: "a\u{7}b".into(),
            ..Default::default()
        },
        Profile {
            capabilities: vec!["c".into(); 100],
            ..Default::default()
        },
    ] {
        let e = a.set_profile(&bad).await.unwrap_err().to_string();
        assert!(e.contains("profile") || e.contains("capabilities"), "{e}");
    }
    let me = a.resolve(&["alice".into()]).await.unwrap();
    assert_eq!(me[0].profile, good);
}

#[tokio::test]
async fn a_hidden_peer_is_left_out_of_lists_and_broadcasts_but_still_gets_dms() {
    let mesh = Mesh::start().await;
    let (alice, bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    c.set_visible(false).await.unwrap();
    let seen_by_b = b.list_peers().await.unwrap();
    assert!(
        !seen_by_b.iter().any(|p| p.name == "carol"),
        "{:?}",
        names(&seen_by_b)
    );
    let seen_by_c = c.list_peers().await.unwrap();
    assert!(
        seen_by_c.iter().any(|p| p.name == "carol" && !p.visible),
        "a hidden peer still sees itself"
    );
    let r = a
        .send(&[Dest::Broadcast], "all hands", Priority::Now, None)
        .await
        .unwrap();
    assert_eq!(r.recipients, 1, "the broadcast skips the hidden peer");
    assert_eq!(next_message(&b, WAIT).await.unwrap().text, "all hands");
    a.send(&[Dest::parse("carol")], "just you", Priority::Now, None)
        .await
        .unwrap();
    let m = next_message(&c, WAIT).await.unwrap();
    assert_eq!(
        m.text, "just you",
        "DMs still reach a hidden peer (the broadcast did not)"
    );
    c.set_visible(true).await.unwrap();
    assert!(b
        .list_peers()
        .await
        .unwrap()
        .iter()
        .any(|p| p.name == "carol"));
}

#[tokio::test]
async fn unread_counts_what_waits_by_priority_including_messages_held_back_while_working() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let b = session(&bob, "s-unread", "bob", true).await;
    b.set_status(Status::Working).await.unwrap();
    assert_eq!(b.unread().await.unwrap(), (0, 0, 0));
    a.send(
        &[Dest::parse("bob")],
        "when you are free",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    a.send(&[Dest::parse("bob")], "fyi", Priority::Low, None)
        .await
        .unwrap();
    a.send(&[Dest::parse("bob")], "build is red", Priority::Now, None)
        .await
        .unwrap();
    let now = next_message(&b, WAIT).await.unwrap();
    assert_eq!(now.text, "build is red");
    // The `now` one was pushed but not acked yet: still unread.
    assert_eq!(b.unread().await.unwrap(), (1, 1, 1));
    b.ack(&[now.msg_id]);
    assert_eq!(b.unread().await.unwrap(), (0, 1, 1));
    let all = b.pull_all().await.unwrap();
    b.ack(&all.iter().map(|m| m.msg_id).collect::<Vec<_>>());
    assert_eq!(b.unread().await.unwrap(), (0, 0, 0));
}

#[tokio::test]
async fn message_status_goes_from_queued_to_delivered_to_read_per_recipient() {
    let mesh = Mesh::start().await;
    let (alice, bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let a = alice.connect().await;
    let b = bob.connect().await;
    b.join_group("eng", "member").await.unwrap();
    let c = carol.connect().await;
    c.join_group("eng", "member").await.unwrap();
    let carol_key = c.peer_key();
    c.close().await; // carol is offline: her copy waits
    wait_offline(&a, carol_key).await;
    let r = a
        .send(&[Dest::parse("@eng")], "review please", Priority::Now, None)
        .await
        .unwrap();
    let m = next_message(&b, WAIT).await.unwrap();
    let state = |st: &[claudemesh::proto::RecipientStatus], who: &str| {
        st.iter().find(|x| x.name == who).map(|x| x.state)
    };
    let (st, unnamed) = a.message_status(r.msg_id).await.unwrap();
    assert_eq!(unnamed, 0);
    assert_eq!(state(&st, "bob"), Some(DeliveryState::Delivered));
    assert_eq!(state(&st, "carol"), Some(DeliveryState::Queued));
    b.ack(&[m.msg_id]);
    b.ping().await.unwrap();
    let (st, _) = a.message_status(r.msg_id).await.unwrap();
    assert_eq!(state(&st, "bob"), Some(DeliveryState::Read));
    let c = carol.connect().await;
    let m = next_message(&c, WAIT).await.unwrap();
    c.ack(&[m.msg_id]);
    c.ping().await.unwrap();
    let (st, _) = a.message_status(r.msg_id).await.unwrap();
    assert!(st.iter().all(|x| x.state == DeliveryState::Read), "{st:?}");
    // Only the sender may ask.
    let e = b.message_status(r.msg_id).await.unwrap_err().to_string();
    assert!(e.contains("no message"), "{e}");
}

#[tokio::test]
async fn message_status_after_a_restart_counts_read_recipients_it_no_longer_names() {
    let mut mesh = Mesh::start().await;
    let (alice, bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let a = alice.connect().await;
    let b = bob.connect().await;
    let c = carol.connect().await;
    let carol_key = c.peer_key();
    c.close().await;
    wait_offline(&a, carol_key).await;
    let r = a
        .send(
            &[Dest::parse("bob"), Dest::parse("carol")],
            "two copies",
            Priority::Now,
            None,
        )
        .await
        .unwrap();
    let m = next_message(&b, WAIT).await.unwrap();
    b.ack(&[m.msg_id]);
    b.ping().await.unwrap();
    drop((a, b));
    mesh.restart().await;
    let a = alice.connect().await;
    let (st, unnamed) = a.message_status(r.msg_id).await.unwrap();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(
        (st[0].name.as_str(), st[0].state),
        ("carol", DeliveryState::Queued)
    );
    assert_eq!(unnamed, 1, "bob read it before the restart");
}

#[tokio::test]
async fn ended_sessions_whose_name_moved_on_are_not_listed_and_names_reach_the_live_session() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    // bob's old session, then a new one with the same name; then a one-shot CLI command.
    let a = alice.connect().await;
    let old = session(&bob, "s-old", "bob", true).await;
    let old_key = old.peer_key();
    old.close().await;
    wait_offline(&a, old_key).await;
    let live = session(&bob, "s-new", "bob", true).await;
    // The member's "cli" peer (also named bob) runs a one-shot command meanwhile.
    let cli = session(&bob, "cli", "bob", false).await;
    let cli_key = cli.peer_key();
    a.send(
        &[Dest::parse("bob")],
        "to the live one",
        Priority::Now,
        None,
    )
    .await
    .unwrap();
    cli.close().await;
    wait_offline(&a, cli_key).await;
    let m = next_message(&live, WAIT)
        .await
        .expect("the name resolves to the online session");
    assert_eq!(m.text, "to the live one");
    let listed = a.list_peers().await.unwrap();
    assert_eq!(
        names(&listed),
        vec!["alice:on", "bob:on"],
        "one bob, the live session"
    );
}

#[tokio::test]
async fn one_shot_connections_make_no_presence_events() {
    let mesh = Mesh::start_with(|c| c.grace = Duration::from_millis(300)).await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    // A hook or CLI command connects without taking pushes and leaves again.
    let quick = session(&bob, "s-hook", "bob", false).await;
    quick.close().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(x)) = tokio::time::timeout_at(deadline, a.recv()).await {
        if let Inbound::Event(e) = x {
            panic!("unexpected presence event: {e:?}");
        }
    }
    // A session that takes pushes is announced.
    let _live = session(&bob, "s-live", "bob", true).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, a.recv()).await {
            Ok(Some(Inbound::Event(e))) => {
                assert_eq!(e.kind, "peer_joined");
                break;
            }
            Ok(Some(_)) => continue,
            _ => panic!("no peer_joined event"),
        }
    }
}

#[tokio::test]
async fn line_breaks_in_what_others_see_in_peer_lists_are_refused() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let mut o =
        claudemesh::client::ClientOptions::for_session(&bob.home, &bob.mc, "s-nl", "bob-nl");
    o.hostname = "box\n- admin (you): online".into();
    let e = Client::connect(o, WAIT)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("control characters"), "{e}");
    let b = bob.connect().await;
    let e = b
        .join_group("eng", "lead)\n- root")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("control characters"), "{e}");
}

#[tokio::test]
async fn a_member_name_reaches_the_members_most_active_session_else_the_member_inbox_and_lists_say_so(
) {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    // No live session: "alice" is alice's member inbox (her terminal peer).
    let r = b.resolve(&["alice".into()]).await.unwrap().remove(0);
    assert!(
        r.terminal && r.gets_member_messages && r.member_name == "alice",
        "{r:?}"
    );
    b.send(
        &[Dest::parse("alice")],
        "to the inbox",
        Priority::Next,
        None,
    )
    .await
    .unwrap();

    // Two live sessions: the working one gets messages to "alice".
    let s1 = session(&alice, "s1", "alice-one", true).await;
    let s2 = session(&alice, "s2", "alice-two", true).await;
    s2.set_status(Status::Working).await.unwrap();
    let r = b.resolve(&["alice".into()]).await.unwrap().remove(0);
    assert_eq!(r.name, "alice-two");
    b.send(
        &[Dest::parse("alice")],
        "to the working session",
        Priority::Now,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        next_message(&s2, WAIT).await.unwrap().text,
        "to the working session"
    );
    let listed = b.list_peers().await.unwrap();
    let two = listed.iter().find(|p| p.name == "alice-two").unwrap();
    assert!(two.gets_member_messages && two.member_name == "alice" && !two.terminal);
    let one = listed.iter().find(|p| p.name == "alice-one").unwrap();
    assert!(!one.gets_member_messages);
    // It stops working: of two idle sessions the newest connection wins.
    s2.set_status(Status::Idle).await.unwrap();
    assert_eq!(
        b.resolve(&["alice".into()]).await.unwrap()[0].name,
        "alice-two"
    );
    s2.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.resolve(&["alice".into()]).await.unwrap()[0].name != "alice-one" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never moved to the remaining session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s1.close().await;
    // The message sent while no session was live is still in the member inbox.
    let a = alice.connect().await;
    let inbox = a.pull_all().await.unwrap();
    assert!(inbox.iter().any(|m| m.text == "to the inbox"), "{inbox:?}");
    assert!(!inbox.iter().any(|m| m.text == "to the working session"));
}

#[tokio::test]
async fn an_ended_session_replaced_by_a_live_one_in_the_same_directory_is_not_listed() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    let old = session(&alice, "old", "alice-old", true).await;
    let key = old.peer_key();
    old.close().await;
    wait_offline(&b, key).await;
    assert!(
        b.list_peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "alice-old"),
        "an ended session is listed for a day"
    );
    // A new session of the same member on the same host and directory replaces it.
    let _new = session(&alice, "new", "alice-new", true).await;
    let names: Vec<String> = b
        .list_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        names.contains(&"alice-new".to_string()) && !names.contains(&"alice-old".to_string()),
        "{names:?}"
    );
    // Still reachable by name.
    assert_eq!(
        b.resolve(&["alice-old".into()]).await.unwrap()[0].peer_pk,
        key
    );
}

#[tokio::test]
async fn list_groups_shows_each_group_with_members_and_roles_hides_hidden_peers_and_survives_a_restart(
) {
    let mut mesh = Mesh::start().await;
    let (alice, bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    a.join_group("eng", "lead").await.unwrap();
    b.join_group("eng", "").await.unwrap();
    b.join_group("eng/web", "observer").await.unwrap();
    c.join_group("ops", "member").await.unwrap();
    c.set_visible(false).await.unwrap();
    let shown = |groups: &[claudemesh::proto::peers::GroupInfo]| -> Vec<String> {
        groups
            .iter()
            .map(|g| {
                let m: Vec<String> = g
                    .members
                    .iter()
                    .map(|m| format!("{}:{}", m.member_name, m.role))
                    .collect();
                format!("{}={}", g.name, m.join(","))
            })
            .collect()
    };
    let seen = shown(&a.list_groups().await.unwrap());
    assert_eq!(
        seen,
        ["eng=alice:lead,bob:member", "eng/web=bob:observer"],
        "a hidden peer's group is not shown to others"
    );
    // The hidden peer sees its own group.
    assert!(shown(&c.list_groups().await.unwrap()).contains(&"ops=carol:member".to_string()));
    // Memberships are durable; offline members are listed as offline.
    drop((a, b, c));
    mesh.restart().await;
    let a = alice.connect().await;
    let groups = a.list_groups().await.unwrap();
    assert_eq!(shown(&groups)[0], "eng=alice:lead,bob:member");
    let bob_eng = groups[0]
        .members
        .iter()
        .find(|m| m.member_name == "bob")
        .unwrap();
    assert!(!bob_eng.online, "bob is not connected after the restart");
}
