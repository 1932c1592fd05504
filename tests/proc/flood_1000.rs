//! 1,000 connected peers while one hostile client floods the broker: the others' delivery
//! latency stays low (p99 under 100 ms). Broker as a separate process with default limits.

use crate::harness;

use claudemesh::client::{Client, Dest, Inbound};
use claudemesh::crypto::hello::{make_hello, HelloParams};
use claudemesh::proto::{ClientFrame, Priority, Status};
use futures_util::SinkExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PEERS: usize = 1000;
const PER_MEMBER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_peers_keep_low_latency_while_one_client_floods() {
    let _machine = crate::alone();
    harness::raise_nofile();
    let spec = harness::BrokerSpec {
        program: env!("CARGO_BIN_EXE_claudemesh").into(),
        prefix: vec!["serve".into()],
    };
    // Default rate limit (2,000 frames/s per peer).
    let bench = harness::Bench::start_with(&spec, PEERS / PER_MEMBER + 1, &[]).await;
    let mut conns = Vec::new();
    for i in 0..PEERS {
        let o = bench.opts(i / PER_MEMBER, &format!("s{}", i % PER_MEMBER));
        conns.push(tokio::spawn(async move {
            Client::connect(o, Duration::from_secs(120))
                .await
                .map(Arc::new)
        }));
    }
    let mut clients = Vec::new();
    for c in conns {
        clients.push(c.await.unwrap().expect("connect"));
    }
    let online = bench.broker.health().await["peers_online"]
        .as_u64()
        .unwrap();
    assert!(online >= PEERS as u64, "{online} online");

    // The flooder: a member's session that sends frames as fast as it can and never reads.
    let (_, fmc) = &bench.members[PEERS / PER_MEMBER];
    let h = make_hello(
        &fmc.member(),
        &fmc.peer("flood"),
        &HelloParams {
            mesh_id: fmc.mesh_id,
            name: "flooder",
            session_id: "flood",
            hostname: "",
            cwd: "",
            push: true,
            status: Status::Idle,
        },
        claudemesh::util::now_ms(),
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", bench.broker.port))
            .await
            .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        serde_json::to_string(&ClientFrame::Hello(h))
            .unwrap()
            .into(),
    ))
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent_frames = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent_frames) = (stop.clone(), sent_frames.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let f = if i % 3 == 0 {
                    "{not json".to_string()
                } else {
                    format!(r#"{{"ping":{{"id":{i}}}}}"#)
                };
                if ws
                    .send(tokio_tungstenite::tungstenite::Message::Text(f.into()))
                    .await
                    .is_err()
                {
                    break;
                }
                i += 1;
                sent_frames.store(i, Ordering::Relaxed);
            }
        })
    };

    // Meanwhile 20 pairs exchange DMs at 10/s each for 5 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lat = Arc::new(Mutex::new(harness::hist()));
    let got = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut recv_tasks = Vec::new();
    for k in 0..20 {
        let r = clients[2 * k + 1].clone();
        let (lat, got) = (lat.clone(), got.clone());
        recv_tasks.push(tokio::spawn(async move {
            while let Some(x) = r.recv().await {
                if let Inbound::Message(m) = x {
                    if let Ok(sent_us) = m.text.parse::<u64>() {
                        let _ = lat.lock().unwrap().record(
                            (t0.elapsed().as_micros() as u64)
                                .saturating_sub(sent_us)
                                .max(1),
                        );
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    r.ack(&[m.msg_id]);
                }
            }
        }));
    }
    let mut send_tasks = Vec::new();
    for k in 0..20 {
        let (s, r) = (clients[2 * k].clone(), clients[2 * k + 1].clone());
        send_tasks.push(tokio::spawn(async move {
            let name = match r.state() {
                claudemesh::client::ConnState::Connected { name, .. } => name,
                _ => panic!("receiver not connected"),
            };
            let info = s.resolve(std::slice::from_ref(&name)).await.unwrap();
            for _ in 0..50 {
                let text = t0.elapsed().as_micros().to_string();
                s.send_resolved(
                    &[Dest::Peer(name.clone())],
                    &info,
                    &text,
                    Priority::Now,
                    None,
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for t in send_tasks {
        t.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.load(Ordering::Relaxed) < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flood.await;
    for t in recv_tasks {
        t.abort();
    }
    let h = lat.lock().unwrap().clone();
    let p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "1000 peers + flooder ({} frames sent): {} DMs delivered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sent_frames.load(Ordering::Relaxed),
        got.load(Ordering::Relaxed),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms,
        h.max() as f64 / 1000.0
    );
    assert_eq!(got.load(Ordering::Relaxed), 1000, "every DM delivered");
    assert!(p99_ms < 100.0, "p99 {p99_ms} ms under flood");
    assert!(
        bench.broker.health().await["peers_online"]
            .as_u64()
            .unwrap()
            >= PEERS as u64,
        "nobody else was dropped"
    );
}
