//! `coord`: the coordination capabilities against a broker process: durable state sets with
//! 8 writers and the latency of the watch events they cause; 100 peers racing to claim
//! 1,000 tasks (each claimed exactly once, claim latency); stream publish throughput and a
//! replay of 100k messages from offset 0 (subscription and paged reads).

use crate::harness::{hist, Bench, BrokerSpec};
use claudemesh::cap::streams::client::Limits;
use claudemesh::cap::tasks::client::NewTask;
use claudemesh::client::Inbound;
use claudemesh::proto::{Json, Push};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0
}

fn rnd(n: usize) -> usize {
    (claudemesh::util::random_u64() % n as u64) as usize
}

pub async fn run(
    spec: &BrokerSpec,
    sets: u64,
    window: usize,
    peers: usize,
    tasks: usize,
    msgs: u64,
) -> Value {
    let bench = Bench::start(spec, peers.max(9)).await;
    let clients = bench.connect_all().await;

    // ---- state: 8 writers, `window` outstanding each; then watch latency at a low rate.
    let writers = &clients[..8];
    let per = sets / (8 * window as u64).max(1);
    let t = Instant::now();
    let mut jobs = Vec::new();
    for (w, c) in writers.iter().enumerate() {
        for k in 0..window {
            let c = c.clone();
            jobs.push(tokio::spawn(async move {
                for i in 0..per {
                    let key = format!("w{w}/k{k}/{}", i % 16);
                    let v = Json::from_value(&json!({"i": i}));
                    c.state_set(&key, v, None, None).await.expect("state set");
                }
            }));
        }
    }
    for j in jobs {
        j.await.expect("writer");
    }
    let set_s = t.elapsed().as_secs_f64();
    let set_total = per * 8 * window as u64;

    let watcher = clients[8].clone();
    watcher
        .state_watch(None, Some("lat/"), None)
        .await
        .expect("watch");
    let t0 = Instant::now();
    let lat = Arc::new(Mutex::new(hist()));
    let seen = Arc::new(AtomicU64::new(0));
    let (l2, s2, w2) = (lat.clone(), seen.clone(), watcher.clone());
    let rx = tokio::spawn(async move {
        while let Some(x) = w2.recv().await {
            if let Inbound::Feed(f) = x {
                if let Push::State(c) = f.body {
                    let sent = c
                        .value
                        .map(|v| v.value()["t"].as_u64().unwrap_or(0))
                        .unwrap_or(0);
                    let now = t0.elapsed().as_micros() as u64;
                    let _ = l2.lock().unwrap().record(now.saturating_sub(sent).max(1));
                    if s2.fetch_add(1, Ordering::SeqCst) + 1 >= 500 {
                        return;
                    }
                }
            }
        }
    });
    for i in 0..500u64 {
        let v = Json::from_value(&json!({"t": t0.elapsed().as_micros() as u64}));
        writers[(i % 8) as usize]
            .state_set(&format!("lat/{}", i % 50), v, None, None)
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
    let lat = lat.lock().unwrap().clone();

    // ---- tasks: `peers` clients race through every task in a random order.
    let racers = &clients[..peers];
    let mut ids = Vec::new();
    for i in 0..tasks {
        let t = racers[0]
            .task_create(NewTask {
                title: format!("task {i}"),
                ..Default::default()
            })
            .await
            .expect("create");
        ids.push(t.id);
    }
    let claims = Arc::new(Mutex::new(hist()));
    let wins: Arc<Mutex<HashMap<claudemesh::proto::Id16, u32>>> = Arc::default();
    let t = Instant::now();
    let mut jobs = Vec::new();
    for c in racers {
        let (c, claims, wins) = (c.clone(), claims.clone(), wins.clone());
        let mut order = ids.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rnd(i + 1));
        }
        jobs.push(tokio::spawn(async move {
            for id in order {
                let s = Instant::now();
                let r = c.task_claim(id, None).await.expect("claim");
                let _ = claims
                    .lock()
                    .unwrap()
                    .record(s.elapsed().as_micros().max(1) as u64);
                if r.claimed {
                    *wins.lock().unwrap().entry(id).or_default() += 1;
                }
            }
        }));
    }
    for j in jobs {
        j.await.expect("racer");
    }
    let race_s = t.elapsed().as_secs_f64();
    let wins = wins.lock().unwrap().clone();
    let exactly_once = ids.iter().all(|id| wins.get(id) == Some(&1));
    let claims = claims.lock().unwrap().clone();

    // ---- streams: publish `msgs` with 8 publishers x `window`, then replay from 0.
    clients[0]
        .stream_create("bench", Limits::default())
        .await
        .expect("create stream");
    let per = msgs / (8 * window as u64).max(1);
    let t = Instant::now();
    let mut jobs = Vec::new();
    for c in &clients[..8] {
        for _ in 0..window {
            let c = c.clone();
            jobs.push(tokio::spawn(async move {
                for i in 0..per {
                    c.publish(
                        "bench",
                        Json::from_value(&json!({"i": i, "pad": "x".repeat(64)})),
                    )
                    .await
                    .expect("publish");
                }
            }));
        }
    }
    for j in jobs {
        j.await.expect("publisher");
    }
    let pub_s = t.elapsed().as_secs_f64();
    let published = per * 8 * window as u64;
    let reader = clients[8].clone();
    let t = Instant::now();
    let mut from = 1;
    let mut read = 0u64;
    loop {
        let (m, _, _) = reader.read_stream("bench", from, 1000).await.expect("read");
        let Some(last) = m.last() else { break };
        from = last.seq + 1;
        read += m.len() as u64;
    }
    let read_s = t.elapsed().as_secs_f64();
    let sub = bench.opts(8, "replay");
    let sc = claudemesh::client::Client::connect(sub, Duration::from_secs(30))
        .await
        .expect("replayer");
    let t = Instant::now();
    sc.stream_subscribe("bench", Some(1), None)
        .await
        .expect("subscribe");
    let mut got = 0u64;
    while got < published {
        match tokio::time::timeout(Duration::from_secs(30), sc.recv()).await {
            Ok(Some(Inbound::Feed(_))) => got += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let replay_s = t.elapsed().as_secs_f64();

    json!({
        "workload": "coord",
        "state": {
            "writers": 8, "window": window, "sets": set_total,
            "sets_per_s": (set_total as f64 / set_s).round(),
            "watch_events": seen.load(Ordering::SeqCst),
            "watch_p50_ms": ms(&lat, 0.5), "watch_p99_ms": ms(&lat, 0.99),
        },
        "tasks": {
            "peers": peers, "tasks": tasks, "claims": peers * tasks,
            "claims_per_s": ((peers * tasks) as f64 / race_s).round(),
            "every_task_claimed_exactly_once": exactly_once,
            "claim_p50_ms": ms(&claims, 0.5), "claim_p99_ms": ms(&claims, 0.99),
        },
        "streams": {
            "published": published, "publish_per_s": (published as f64 / pub_s).round(),
            "read_pages_of_1000": read, "read_s": (read_s * 1000.0).round() / 1000.0,
            "replayed_by_subscription": got, "replay_s": (replay_s * 1000.0).round() / 1000.0,
        },
        "broker_cpu_s": bench.broker.stats().cpu_s,
    })
}
