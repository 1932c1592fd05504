//! Streams end to end (real in-process broker, real clients, real redb): bounded history,
//! replay from an offset, subscriptions from a sequence / the last n / now that resume
//! after a reconnect, restart, bad input.

use crate::common::*;
use claudemesh::cap::streams::client::Limits;
use claudemesh::client::{Client, Inbound};
use claudemesh::proto::streams::Message;
use claudemesh::proto::{ErrorCode, Json, Push};
use serde_json::json;
use std::time::Duration;

fn j(v: serde_json::Value) -> Json {
    Json::from_value(&v)
}

/// Stream messages until `n` arrived (or `WAIT`).
async fn messages(c: &Client, n: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Some(Inbound::Feed(f))) => {
                if let Push::Streams(m) = f.body {
                    out.push(m);
                }
            }
            Ok(Some(_)) => continue,
            _ => break,
        }
    }
    out
}

async fn quiet(c: &Client, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(x)) = tokio::time::timeout_at(deadline, c.recv()).await {
        if matches!(x, Inbound::Feed(_)) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_stream_keeps_bounded_history_and_replays_from_any_kept_offset() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let limits = Limits {
        max_msgs: Some(3),
        ..Default::default()
    };
    a.stream_create("build/events", limits).await.unwrap();
    for i in 1..=5 {
        let seq = a.publish("build/events", j(json!({"n": i}))).await.unwrap();
        assert_eq!(seq, i);
    }
    let (msgs, first, last) = b.read_stream("build/events", 1, 100).await.unwrap();
    assert_eq!((first, last), (3, 5));
    let ns: Vec<_> = msgs.iter().map(|m| m.data.value()["n"].clone()).collect();
    assert_eq!(ns, [json!(3), json!(4), json!(5)]);
    assert_eq!(msgs[0].by, "alice");
    let (tail, _, _) = b.read_stream("build/events", 5, 100).await.unwrap();
    assert_eq!(tail.len(), 1);
    let (two, _, _) = b.read_stream("build/events", 1, 2).await.unwrap();
    assert_eq!(two.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);
    let list = b.list_streams().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].count, list[0].max_msgs),
        ("build/events", 3, Some(3))
    );
}

#[tokio::test]
async fn subscriptions_start_from_a_sequence_the_last_n_or_now_and_get_each_message_once() {
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
    a.stream_create("log", Limits::default()).await.unwrap();
    for i in 1..=4 {
        a.publish("log", j(json!(i))).await.unwrap();
    }
    let (_, next, first) = b.stream_subscribe("log", Some(2), None).await.unwrap();
    assert_eq!((next, first), (2, 1));
    let got = messages(&b, 3).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3, 4]);
    c.stream_subscribe("log", None, Some(1)).await.unwrap();
    assert_eq!(messages(&c, 1).await[0].seq, 4);
    let d = mesh.member("dave").await.connect().await;
    let (_, next, _) = d.stream_subscribe("log", None, None).await.unwrap();
    assert_eq!(next, 5, "from now on");
    a.publish("log", j(json!(5))).await.unwrap();
    for x in [&b, &c, &d] {
        let m = messages(x, 1).await;
        assert_eq!(m[0].seq, 5);
        assert!(quiet(x, Duration::from_millis(200)).await, "nothing twice");
    }
}

#[tokio::test]
async fn a_subscriber_that_loses_its_connection_resumes_where_it_left_off() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    a.stream_create("ticks", Limits::default()).await.unwrap();
    let proxy = Proxy::start(mesh.server().addr).await;
    let b = bob.connect_via(proxy.addr).await;
    let (sub, _, _) = b.stream_subscribe("ticks", None, None).await.unwrap();
    a.publish("ticks", j(json!(1))).await.unwrap();
    assert_eq!(messages(&b, 1).await[0].seq, 1);
    proxy.stall_downstream(true);
    for i in 2..=50 {
        a.publish("ticks", j(json!(i))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    proxy.stall_downstream(false);
    let got = messages(&b, 49).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (2..=50).collect::<Vec<_>>()
    );
    assert!(quiet(&b, Duration::from_millis(300)).await);
    assert!(b.stream_unsubscribe(sub).await.unwrap());
    a.publish("ticks", j(json!(51))).await.unwrap();
    assert!(quiet(&b, Duration::from_millis(300)).await, "unsubscribed");
}

#[tokio::test]
async fn streams_and_their_messages_survive_a_restart() {
    let mut mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let limits = Limits {
        max_msgs: Some(100),
        ..Default::default()
    };
    a.stream_create("s", limits).await.unwrap();
    a.publish("s", j(json!("before"))).await.unwrap();
    drop(a);
    mesh.restart().await;
    let a = alice.connect().await;
    assert_eq!(
        a.publish("s", j(json!("after"))).await.unwrap(),
        2,
        "sequences continue"
    );
    let (msgs, _, _) = a.read_stream("s", 1, 10).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.data.value()).collect::<Vec<_>>(),
        [json!("before"), json!("after")]
    );
    assert_eq!(
        a.list_streams().await.unwrap()[0].max_msgs,
        Some(100),
        "limits kept"
    );
}

#[tokio::test]
async fn an_age_limit_drops_old_messages_and_keeps_the_newest() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let limits = Limits {
        max_age_s: Some(1),
        ..Default::default()
    };
    a.stream_create("aging", limits).await.unwrap();
    a.publish("aging", j(json!(1))).await.unwrap();
    a.publish("aging", j(json!(2))).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (msgs, _, _) = a.read_stream("aging", 1, 10).await.unwrap();
        if msgs.len() == 1 {
            assert_eq!(msgs[0].seq, 2, "the newest stays");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old messages stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn bad_stream_requests_get_a_clear_error_and_change_nothing() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    for e in [
        a.publish("nope", j(json!(1))).await.unwrap_err(),
        a.read_stream("nope", 1, 10).await.unwrap_err(),
        a.stream_subscribe("nope", None, None).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
        assert!(e.to_string().contains("create_stream"), "{e}");
    }
    let e = a
        .stream_create("../x", Limits::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let zero = Limits {
        max_msgs: Some(0),
        ..Default::default()
    };
    let e = a.stream_create("s", zero).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    a.stream_create("s", Limits::default()).await.unwrap();
    let e = a
        .publish("s", j(json!("x".repeat(64 * 1024))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge));
    let e = a.read_stream("s", 1, 0).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a.stream_subscribe("s", Some(1), Some(1)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let (msgs, _, last) = a.read_stream("s", 1, 10).await.unwrap();
    assert!(msgs.is_empty() && last == 0, "nothing stored");
}

#[tokio::test]
async fn concurrent_creates_cannot_pass_the_stream_quota_together() {
    let mesh = Mesh::start().await;
    let a = std::sync::Arc::new(mesh.member("alice").await.connect().await);
    let max = claudemesh::cap::streams::broker::MAX_STREAMS;
    for i in 0..max - 1 {
        a.stream_create(&format!("s{i}"), Limits::default())
            .await
            .unwrap();
    }
    // One slot left, eight creates at once: exactly one gets it.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                a.stream_create(&format!("race{i}"), Limits::default())
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(a.list_streams().await.unwrap().len(), max);
}
