//! The wire as a contract: the postcard bytes of every frame kind are pinned (a shape change
//! cannot ship without a new `SUBPROTOCOL_BINARY`), every request kind has its section in
//! docs/PROTOCOL.md, and every request kind, well-formed or not, gets exactly one reply.

use crate::common::*;
use claudemesh::proto::examples::{self, KINDS};
use claudemesh::proto::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SNAPSHOT: &str = "tests/vectors/wire-postcard.txt";
const T: Duration = Duration::from_secs(5);

fn frames() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut push = |name: String, b: bytes::Bytes| out.push((name, b.to_vec()));
    let c = Codec::Binary;
    let hello = Hello {
        v: PROTOCOL_VERSION,
        mesh_id: Key([9; 32]),
        member_pk: Key([1; 32]),
        peer_pk: Key([2; 32]),
        peer_xpk: Key([3; 32]),
        cert: Sig([4; 64]),
        name: "alice".into(),
        session_id: "cli".into(),
        hostname: "box".into(),
        cwd: "/".into(),
        push: true,
        status: Status::Idle,
        ts_ms: 1_764_374_400_000,
        nonce: Id16([5; 16]),
        sig: Sig([6; 64]),
    };
    push("client.hello".into(), c.encode(&ClientFrame::Hello(hello)));
    push(
        "client.ack".into(),
        c.encode(&ClientFrame::Ack {
            ids: vec![Id16([7; 16])],
        }),
    );
    for (i, q) in examples::requests().into_iter().enumerate() {
        let name = format!("client.req.{}", q.kind());
        let f = ClientFrame::Req(Req {
            id: i as u64 + 1,
            body: q,
        });
        push(name, c.encode(&f));
    }
    let ack = HelloAck {
        peer_pk: Key([2; 32]),
        mesh_id: Key([9; 32]),
        mesh_name: "team".into(),
        name: "alice".into(),
        server_version: "0.0.0".into(),
        max_message_bytes: 65536,
        queued: 3,
        // Fixed, not `CAPS`: the snapshot pins shapes, and a capability's version may grow.
        caps: vec!["conn/1".into(), "msg/1".into(), "peers/1".into()],
    };
    push(
        "server.hello_ack".into(),
        c.encode(&ServerFrame::HelloAck(ack)),
    );
    for (q, (i, a)) in examples::requests()
        .iter()
        .zip(examples::responses().into_iter().enumerate())
    {
        let f = ServerFrame::Reply {
            id: i as u64 + 1,
            body: a,
        };
        push(format!("server.reply.{}", q.kind()), c.encode(&f));
    }
    push(
        "server.deliver".into(),
        c.encode(&ServerFrame::Deliver(examples::delivery())),
    );
    push(
        "server.event".into(),
        c.encode(&ServerFrame::Event(Event {
            kind: "peer_joined".into(),
            peer: "bob".into(),
            text: "bob joined".into(),
            at_ms: 14,
        })),
    );
    push(
        "server.feed".into(),
        c.encode(&ServerFrame::Feed(examples::feed())),
    );
    push(
        "server.error".into(),
        c.encode(&ServerFrame::Error(WireError {
            id: Some(5),
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(250),
        })),
    );
    out
}

fn render(frames: &[(String, Vec<u8>)]) -> String {
    let mut s = format!("subprotocol {SUBPROTOCOL_BINARY}\n");
    for (name, b) in frames {
        s.push_str(&format!("{name} {}\n", hex::encode(b)));
    }
    s
}

#[test]
fn postcard_bytes_of_every_frame_kind_match_the_snapshot_for_this_subprotocol() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    let now = render(&frames());
    if std::env::var_os("UPDATE_WIRE_SNAPSHOT").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    if pinned == now {
        return;
    }
    let pinned_proto = pinned.lines().next().unwrap_or_default();
    let kinds = |s: &str| -> HashMap<String, String> {
        s.lines()
            .skip(1)
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (old, new) = (kinds(&pinned), kinds(&now));
    // A kind whose bytes changed, or that went away, breaks peers of this subprotocol; a
    // new kind does not (a broker without it answers `bad_request`), it bumps its
    // capability's version instead.
    let mut changed: Vec<&str> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .collect();
    changed.sort();
    if pinned_proto == format!("subprotocol {SUBPROTOCOL_BINARY}") && changed.is_empty() {
        let mut added: Vec<&str> = new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .map(|k| k.as_str())
            .collect();
        added.sort();
        panic!(
            "new frame kinds {added:?}: bump their capability's version in CAPS if it gained \
             a request kind, then regenerate {SNAPSHOT} with UPDATE_WIRE_SNAPSHOT=1"
        );
    }
    if pinned_proto == format!("subprotocol {SUBPROTOCOL_BINARY}") {
        panic!(
            "the postcard shape of {changed:?} changed but SUBPROTOCOL_BINARY is still \
             {SUBPROTOCOL_BINARY}: give it a new name (src/proto/mod.rs), then regenerate \
             {SNAPSHOT} with UPDATE_WIRE_SNAPSHOT=1"
        );
    }
    panic!(
        "new subprotocol {SUBPROTOCOL_BINARY}: regenerate {SNAPSHOT} with UPDATE_WIRE_SNAPSHOT=1"
    );
}

#[test]
fn every_request_kind_has_a_section_in_protocol_md() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let missing: Vec<String> = examples::requests()
        .iter()
        .map(|q| q.kind())
        .filter(|k| !doc.lines().any(|l| l.trim() == format!("### `{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md has no '### `<kind>`' heading for {missing:?}"
    );
    assert!(doc.contains(SUBPROTOCOL_BINARY) && doc.contains(SUBPROTOCOL_JSON));
}

/// Send frames on a raw JSON connection and collect, per request id, the replies (a
/// `reply` or an `error` with that id): until every id in `want` is answered or `limit`
/// passes, then `linger` more for late duplicates.
async fn replies(
    ws: &mut RawWs,
    frames: &[String],
    want: usize,
    limit: Duration,
    linger: Duration,
) -> HashMap<u64, Vec<Value>> {
    for f in frames {
        send_text(ws, f.clone()).await;
    }
    let deadline = Instant::now() + limit;
    let mut got: HashMap<u64, Vec<Value>> = HashMap::new();
    loop {
        let wait = if got.len() >= want {
            linger
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Some(v) = recv_json(ws, wait).await else {
            break;
        };
        let id = v["reply"]["id"].as_u64().or(v["error"]["id"].as_u64());
        if let Some(id) = id {
            got.entry(id).or_default().push(v);
        }
    }
    got
}

#[tokio::test]
async fn every_request_kind_well_formed_or_not_gets_exactly_one_reply_within_a_second() {
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let _b = bob.connect().await;
    let alice = mesh.member("alice").await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, hello_json(&alice, "alice", "s1")).await;
    assert!(recv_json(&mut ws, T)
        .await
        .unwrap()
        .get("hello_ack")
        .is_some());
    let mut frames = Vec::new();
    let mut expect = HashMap::new(); // id -> (kind, how)
    let mut id = 0u64;
    for q in examples::requests() {
        let kind = q.kind();
        let (cap, k) = kind.split_once('.').unwrap();
        let good = serde_json::to_value(&q).unwrap();
        // As documented; with arguments of the wrong type; with fields missing; with
        // out-of-range values the broker must refuse.
        let mut bodies = vec![
            ("example", good.clone()),
            ("wrong type", json!({cap: {k: 12345}})),
            ("missing fields", json!({cap: {k: {}}})),
        ];
        let huge = "x".repeat(100_000);
        bodies.push((
            "out of range",
            match k {
                "send" => json!({cap: {k: {"msg_id": "00112233445566778899aabbccddeeff", "envelopes": []}}}),
                "resolve" => json!({cap: {k: {"names": vec!["n"; 300]}}}),
                "set_summary" => json!({cap: {k: {"summary": huge}}}),
                "join_group" => json!({cap: {k: {"group": "../x", "role": "lead"}}}),
                "set_profile" => json!({cap: {k: {"profile": {"avatar": huge}}}}),
                "message_status" => json!({cap: {k: {"msg_id": "ffffffffffffffffffffffffffffffff"}}}),
                "set_status" => json!({cap: {k: {"status": "asleep"}}}),
                "pull" => json!({cap: {k: {"limit": u64::MAX}}}),
                _ => good,
            },
        ));
        for (how, body) in bodies {
            id += 1;
            frames.push(req_json(id, body));
            expect.insert(id, (kind.clone(), how));
        }
    }
    let started = Instant::now();
    let got = replies(
        &mut ws,
        &frames,
        expect.len(),
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await;
    let answered_in = started.elapsed();
    for (id, (kind, how)) in &expect {
        let n = got.get(id).map_or(0, Vec::len);
        assert_eq!(
            n,
            1,
            "{kind} ({how}), id {id}: {n} replies, {:?}",
            got.get(id)
        );
    }
    assert_eq!(
        got.len(),
        expect.len(),
        "replies to ids nobody sent: {got:?}"
    );
    // Every one answered within a second (plus the wait for late duplicates).
    assert!(
        answered_in < Duration::from_millis(1300),
        "{} requests took {answered_in:?}",
        expect.len()
    );
    // A well-formed example is answered by its own kind or a refusal, never `internal`.
    for v in got.values().flatten() {
        assert_ne!(v["error"]["code"], "internal", "{v}");
    }
    assert_eq!(KINDS, examples::requests().len());
}

#[tokio::test]
async fn a_flood_past_the_rate_limit_still_gets_one_reply_per_request_or_the_documented_close() {
    let mesh = Mesh::start_with(|c| {
        c.rate_per_s = 50.0;
        c.rate_burst = 50.0;
        c.flood_limit = 400;
    })
    .await;
    let alice = mesh.member("alice").await;
    let mut ws = raw_ws(mesh.server().addr).await;
    send_text(&mut ws, hello_json(&alice, "alice", "s1")).await;
    recv_json(&mut ws, T).await.unwrap();
    // Below the flood limit: every request answered.
    let kinds = examples::requests();
    let frames: Vec<String> = (0..300u64)
        .map(|i| {
            req_json(
                i + 1,
                serde_json::to_value(&kinds[i as usize % KINDS]).unwrap(),
            )
        })
        .collect();
    let got = replies(
        &mut ws,
        &frames,
        300,
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(got.len(), 300);
    assert!(got.values().all(|v| v.len() == 1));
    let limited = got
        .values()
        .flatten()
        .filter(|v| v["error"]["code"] == "rate_limited")
        .count();
    assert!(limited > 0, "the flood was not limited");
    // Past it: the documented close (1008 "flooding") after an error frame.
    let frames: Vec<String> = (0..2000u64)
        .map(|i| req_json(10_000 + i, json!({"conn": {"ping": {}}})))
        .collect();
    use futures_util::SinkExt;
    for f in &frames {
        // The broker may close mid-flood: later writes fail, which is the point.
        let m = tokio_tungstenite::tungstenite::Message::Text(f.clone().into());
        if ws.send(m).await.is_err() {
            break;
        }
    }
    let mut saw_flooding = false;
    while let Some(v) = recv_json(&mut ws, Duration::from_secs(1)).await {
        if v["error"]["id"].is_null() && v["error"]["code"] == "rate_limited" {
            saw_flooding = true;
        }
    }
    assert!(saw_flooding, "no connection-level flooding error");
    assert!(closed_within(&mut ws, T).await);
}
