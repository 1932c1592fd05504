//! Shared state end to end (real in-process broker, real clients, real redb): compare-and-set,
//! watches that fire only for their key or prefix and resume after a reconnect, TTL expiry
//! across a broker restart, limits and bad input.

use crate::common::*;
use claudemesh::client::{Client, Inbound};
use claudemesh::proto::state::Change;
use claudemesh::proto::{ErrorCode, Json, Push};
use serde_json::json;
use std::time::Duration;

fn j(v: serde_json::Value) -> Json {
    Json::from_value(&v)
}

/// The state changes `c` receives within `d`.
async fn changes_within(c: &Client, d: Duration) -> Vec<Change> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(Some(x)) = tokio::time::timeout_at(deadline, c.recv()).await {
        if let Inbound::Feed(f) = x {
            let Push::State(ch) = f.body else { continue };
            out.push(ch);
        }
    }
    out
}

/// Changes until `n` have arrived (or `WAIT` passed).
async fn changes(c: &Client, n: usize) -> Vec<Change> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Some(Inbound::Feed(f))) => {
                let Push::State(ch) = f.body else { continue };
                out.push(ch);
            }
            Ok(Some(_)) => continue,
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn set_get_list_delete_round_trip_with_versions_writer_and_any_json_value() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let w = a
        .state_set(
            "deploy/status",
            j(json!({"stage": "canary", "pct": 5})),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(w.applied);
    let w2 = a
        .state_set("deploy/owner", j(json!("alice")), None, None)
        .await
        .unwrap();
    assert!(w2.version > w.version, "versions grow across keys");
    a.state_set("other", j(json!([1, 2, null])), None, None)
        .await
        .unwrap();
    let e = b.state_get("deploy/status").await.unwrap().unwrap();
    assert_eq!(e.value.value(), json!({"stage": "canary", "pct": 5}));
    assert_eq!((e.version, e.updated_by.as_str()), (w.version, "alice"));
    let (list, truncated) = b.state_list("deploy/").await.unwrap();
    assert!(!truncated);
    let keys: Vec<&str> = list.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["deploy/owner", "deploy/status"]);
    assert_eq!(b.state_list("").await.unwrap().0.len(), 3);
    let (applied, existed, _) = b.state_delete("deploy/owner", None).await.unwrap();
    assert!(applied && existed);
    assert!(a.state_get("deploy/owner").await.unwrap().is_none());
    let (applied, existed, _) = b.state_delete("deploy/owner", None).await.unwrap();
    assert!(
        !applied && !existed,
        "deleting a missing key changes nothing"
    );
    assert_eq!(a.state_list("deploy/").await.unwrap().0.len(), 1);
}

#[tokio::test]
async fn a_lost_compare_and_set_is_a_typed_answer_with_the_current_version_and_value() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    // 0 = only if absent: exactly one of two creators wins.
    let first = a
        .state_set("lock", j(json!("alice")), Some(0), None)
        .await
        .unwrap();
    let second = b
        .state_set("lock", j(json!("bob")), Some(0), None)
        .await
        .unwrap();
    assert!(first.applied);
    assert!(!second.applied);
    assert_eq!(second.version, first.version);
    let cur = second.current.unwrap();
    assert_eq!(
        (cur.value.value(), cur.updated_by.as_str()),
        (json!("alice"), "alice")
    );
    // A stale version loses; the current one wins.
    let stale = b
        .state_set("lock", j(json!("bob")), Some(first.version + 100), None)
        .await
        .unwrap();
    assert!(!stale.applied && stale.version == first.version);
    let won = b
        .state_set("lock", j(json!("bob")), Some(first.version), None)
        .await
        .unwrap();
    assert!(won.applied);
    assert_eq!(
        a.state_get("lock").await.unwrap().unwrap().value.value(),
        json!("bob")
    );
    // Delete with a stale version changes nothing.
    let (applied, existed, v) = a.state_delete("lock", Some(first.version)).await.unwrap();
    assert!(!applied && existed && v == won.version);
    // 16 concurrent increments through compare-and-set lose no update.
    let c = std::sync::Arc::new(alice.connect().await);
    c.state_set("n", j(json!(0)), None, None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let e = c.state_get("n").await.unwrap().unwrap();
                let n = e.value.value().as_u64().unwrap();
                let w = c
                    .state_set("n", j(json!(n + 1)), Some(e.version), None)
                    .await
                    .unwrap();
                if w.applied {
                    return;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        c.state_get("n").await.unwrap().unwrap().value.value(),
        json!(16)
    );
}

#[tokio::test]
async fn a_watch_fires_only_for_its_key_or_prefix_and_only_to_the_watcher() {
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
    b.state_watch(Some("cfg/db"), None, None).await.unwrap();
    c.state_watch(None, Some("cfg/"), None).await.unwrap();
    a.state_set("cfg/db", j(json!("pg")), None, None)
        .await
        .unwrap();
    a.state_set("cfg/cache", j(json!("redis")), None, None)
        .await
        .unwrap();
    a.state_set("unrelated", j(json!(1)), None, None)
        .await
        .unwrap();
    a.state_delete("cfg/db", None).await.unwrap();
    let bs = changes(&b, 2).await;
    assert_eq!(
        bs.iter()
            .map(|c| (c.key.as_str(), c.value.clone()))
            .collect::<Vec<_>>(),
        [("cfg/db", Some(j(json!("pg")))), ("cfg/db", None)]
    );
    let cs = changes(&c, 3).await;
    let keys: Vec<&str> = cs.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["cfg/db", "cfg/cache", "cfg/db"]);
    assert!(cs.iter().all(|c| c.updated_by == "alice"));
    // Nothing else arrives: not `unrelated`, and the writer (no watch) gets nothing.
    assert!(changes_within(&b, Duration::from_millis(300))
        .await
        .is_empty());
    assert!(changes_within(&a, Duration::from_millis(100))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_watcher_that_loses_its_connection_gets_the_changes_it_missed_once_each() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let proxy = Proxy::start(mesh.server().addr).await;
    let b = bob.connect_via(proxy.addr).await;
    let (sub, _) = b.state_watch(None, Some("job/"), None).await.unwrap();
    a.state_set("job/1", j(json!("queued")), None, None)
        .await
        .unwrap();
    assert_eq!(changes(&b, 1).await.len(), 1);
    // Bytes to bob are dropped on the wire: these pushes never reach it...
    proxy.stall_downstream(true);
    a.state_set("job/1", j(json!("running")), None, None)
        .await
        .unwrap();
    a.state_set("job/2", j(json!("queued")), None, None)
        .await
        .unwrap();
    a.state_set("elsewhere", j(json!(0)), None, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...then the connection drops, bob reconnects and resumes its watch.
    proxy.cut();
    proxy.stall_downstream(false);
    let got = changes(&b, 2).await;
    let seen: Vec<(String, Option<Json>)> = got
        .iter()
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("job/1".to_string(), Some(j(json!("running")))),
            ("job/2".to_string(), Some(j(json!("queued"))))
        ]
    );
    // Live changes keep coming after the resume, nothing twice.
    a.state_set("job/2", j(json!("done")), None, None)
        .await
        .unwrap();
    let more = changes(&b, 1).await;
    assert_eq!(more[0].value, Some(j(json!("done"))));
    assert!(changes_within(&b, Duration::from_millis(300))
        .await
        .is_empty());
    assert!(b.subscription_next(sub).unwrap() > more[0].version);
    // Unwatched: nothing more.
    assert!(b.state_unwatch(sub).await.unwrap());
    a.state_set("job/3", j(json!("queued")), None, None)
        .await
        .unwrap();
    assert!(changes_within(&b, Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test]
async fn state_and_versions_survive_a_restart_and_a_watch_resumes_from_a_version() {
    let mut mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let w1 = a
        .state_set("k", j(json!({"v": 1})), None, None)
        .await
        .unwrap();
    let w2 = a.state_set("k2", j(json!(2)), None, None).await.unwrap();
    drop(a);
    mesh.restart().await;
    let a = alice.connect().await;
    let e = a.state_get("k").await.unwrap().unwrap();
    assert_eq!((e.version, e.value.value()), (w1.version, json!({"v": 1})));
    // Compare-and-set after the restart knows the stored version.
    assert!(
        !a.state_set("k", j(json!(0)), Some(0), None)
            .await
            .unwrap()
            .applied
    );
    let w3 = a
        .state_set("k", j(json!(3)), Some(w1.version), None)
        .await
        .unwrap();
    assert!(w3.applied && w3.version > w2.version, "versions continue");
    // From version 1: every key's newest change since, in order.
    let b = mesh.member("bob").await.connect().await;
    b.state_watch(None, Some(""), Some(1)).await.unwrap();
    let got = changes(&b, 2).await;
    assert_eq!(
        got.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["k2", "k"]
    );
}

#[tokio::test]
async fn a_key_with_a_ttl_vanishes_on_time_also_across_a_restart() {
    let mut mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    a.state_set("short", j(json!("x")), None, Some(1))
        .await
        .unwrap();
    a.state_set("long", j(json!("y")), None, Some(3600))
        .await
        .unwrap();
    let e = a.state_get("short").await.unwrap().unwrap();
    assert!(e.expires_at_ms.is_some());
    drop(a);
    mesh.stop().await;
    // Due while the broker is down.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    mesh.restart().await;
    let a = alice.connect().await;
    assert!(a.state_get("short").await.unwrap().is_none());
    assert!(a.state_get("long").await.unwrap().is_some());
    let keys: Vec<String> = a
        .state_list("")
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["long"]);
    // The sweeper wrote the removal: a watcher from version 1 sees it as expired.
    a.state_watch(Some("short"), None, Some(1)).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = changes(&a, 1).await;
        if got.iter().any(|c| c.expired && c.value.is_none()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expiry record: {got:?}"
        );
    }
    // A key expiring while the broker runs goes too, and its watcher hears of it.
    let b = mesh.member("bob").await.connect().await;
    b.state_watch(Some("blink"), None, None).await.unwrap();
    a.state_set("blink", j(json!(1)), None, Some(1))
        .await
        .unwrap();
    let got = changes(&b, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].expired);
    assert!(a.state_get("blink").await.unwrap().is_none());
    // A re-set without TTL keeps the key.
    a.state_set("stay", j(json!(1)), None, Some(1))
        .await
        .unwrap();
    a.state_set("stay", j(json!(2)), None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.state_get("stay").await.unwrap().unwrap().value.value(),
        json!(2)
    );
}

#[tokio::test]
async fn bad_state_requests_get_a_clear_error_and_change_nothing() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let big = "x".repeat(64 * 1024);
    let e = a
        .state_set("k", j(json!(big)), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge));
    assert!(e.to_string().contains("65536"), "{e}");
    let e = a.state_set("", j(json!(1)), None, None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a
        .state_set(&"k".repeat(257), j(json!(1)), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a
        .state_set("a\nb", j(json!(1)), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a
        .state_set("k", j(json!(1)), None, Some(0))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ttl_s"), "{e}");
    let e = a.state_watch(Some("k"), Some("p"), None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a.state_watch(None, None, None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    assert!(!a.state_unwatch(999).await.unwrap(), "unknown watch");
    assert!(a.state_get("k").await.unwrap().is_none());
    assert!(
        a.state_list("").await.unwrap().0.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn raw_json_state_requests_carry_values_as_json() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, hello_json(&alice, "alice", "raw")).await;
    let ack = recv_json(&mut ws, WAIT).await.unwrap();
    assert!(ack["hello_ack"]["caps"]
        .as_array()
        .unwrap()
        .contains(&json!("state/1")));
    let body = json!({"state": {"set": {"key": "k", "value": {"a": [1, "two"]}}}});
    send_text(&mut ws, req_json(1, body)).await;
    let r = recv_json(&mut ws, WAIT).await.unwrap();
    assert_eq!(r["reply"]["body"]["state"]["set"]["applied"], json!(true));
    send_text(
        &mut ws,
        req_json(2, json!({"state": {"get": {"key": "k"}}})),
    )
    .await;
    let r = recv_json(&mut ws, WAIT).await.unwrap();
    assert_eq!(
        r["reply"]["body"]["state"]["get"]["entry"]["value"],
        json!({"a": [1, "two"]})
    );
    // A watch's changes come as feed frames with the client's sub id.
    let w = json!({"state": {"watch": {"sub": 42, "key": "k"}}});
    send_text(&mut ws, req_json(3, w)).await;
    let r = recv_json(&mut ws, WAIT).await.unwrap();
    assert_eq!(r["reply"]["body"]["state"]["watch"]["sub"], json!(42));
    let set = json!({"state": {"set": {"key": "k", "value": null}}});
    send_text(&mut ws, req_json(4, set)).await;
    let mut feed = None;
    for _ in 0..2 {
        let f = recv_json(&mut ws, WAIT).await.unwrap();
        if f.get("feed").is_some() {
            feed = Some(f);
        }
    }
    let feed = feed.expect("a feed frame");
    assert_eq!(feed["feed"]["sub"], json!(42));
    assert_eq!(feed["feed"]["body"]["state"]["key"], json!("k"));
    assert_eq!(feed["feed"]["body"]["state"]["value"], json!(null));
    assert_eq!(feed["feed"]["body"]["state"]["deleted"], json!(false));
}
