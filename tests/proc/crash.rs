//! Crash safety: a broker under continuous load is SIGKILLed at random moments and restarted
//! on the same data dir. Every send the broker acknowledged must reach its recipient exactly
//! once at the application level, and the store must open cleanly afterwards.
//! Run: `cargo test --release --test proc crash` (part of the normal suite).

use crate::harness;

use claudemesh::client::{Client, Dest, Inbound};
use claudemesh::proto::{PeerInfo, Priority};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PEERS: usize = 6;
const LOAD_SECS: u64 = 12;
const MIN_KILLS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_repeated_sigkill_exactly_once() {
    let _machine = crate::alone();
    let spec = harness::BrokerSpec {
        program: env!("CARGO_BIN_EXE_claudemesh").into(),
        prefix: vec!["serve".into()],
    };
    let bench = harness::Bench::start(&spec, PEERS).await;
    let port = bench.broker.port;
    let data = bench.broker.data.clone();
    let broker = Arc::new(Mutex::new(Some(bench.broker)));
    // Re-borrow the members (Bench is partially moved above).
    let members = bench.members;
    let mut clients = Vec::new();
    for (home, mc) in &members {
        let mut o = claudemesh::client::ClientOptions::for_session(home, mc, "cli", &mc.name);
        o.seen_path = None;
        o.request_timeout = Duration::from_secs(20);
        clients.push(Arc::new(
            Client::connect(o, Duration::from_secs(30)).await.unwrap(),
        ));
    }
    let infos: Vec<PeerInfo> = {
        let all = clients[0].list_peers().await.unwrap();
        (0..PEERS)
            .map(|i| {
                all.iter()
                    .find(|p| p.name == format!("m{i}"))
                    .unwrap()
                    .clone()
            })
            .collect()
    };

    // Receivers: count every text surfaced to the application.
    let received: Arc<Mutex<HashMap<String, u32>>> = Default::default();
    let mut receivers = Vec::new();
    for c in &clients {
        let (c, received) = (c.clone(), received.clone());
        receivers.push(tokio::spawn(async move {
            while let Some(first) = c.recv().await {
                let mut batch = vec![first];
                batch.extend(c.drain().await);
                let mut ids = Vec::new();
                for x in batch {
                    if let Inbound::Message(m) = x {
                        *received.lock().unwrap().entry(m.text.clone()).or_default() += 1;
                        ids.push(m.msg_id);
                    }
                }
                c.ack(&ids);
            }
        }));
    }

    // Senders: record what the broker acknowledged, and everything attempted.
    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let attempted: Arc<Mutex<HashSet<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for lane in 0..2 {
            let (c, infos, acked, attempted, stop) = (
                c.clone(),
                infos.clone(),
                acked.clone(),
                attempted.clone(),
                stop.clone(),
            );
            senders.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut t = (claudemesh::util::random_u64() % (PEERS as u64 - 1)) as usize;
                    if t >= i {
                        t += 1;
                    }
                    let text = format!("s{i}-{lane}-{n}");
                    n += 1;
                    attempted.lock().unwrap().insert(text.clone());
                    let info = infos[t].clone();
                    match c
                        .send_resolved(
                            &[Dest::Peer(info.name.clone())],
                            &[info],
                            &text,
                            Priority::Now,
                            None,
                        )
                        .await
                    {
                        Ok(_) => {
                            acked.lock().unwrap().insert(text);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
    }

    // The killer: SIGKILL at random moments, restart on the same data dir and port.
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (broker, kills, spec, data, stop) = (
            broker.clone(),
            kills.clone(),
            spec.clone(),
            data.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let wait = 600 + claudemesh::util::random_u64() % 1200;
                std::thread::sleep(Duration::from_millis(wait));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut b = broker.lock().unwrap();
                if let Some(old) = b.as_mut() {
                    old.kill9();
                }
                *b = None;
                kills.fetch_add(1, Ordering::Relaxed);
                *b = Some(harness::Broker::start_on(
                    &spec,
                    &data,
                    port,
                    &["--rate-limit", "1000000"],
                ));
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(LOAD_SECS)).await;
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    for s in senders {
        s.await.unwrap();
    }

    // Everything acknowledged arrives, exactly once.
    let acked = acked.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let r = received.lock().unwrap();
            acked.iter().filter(|t| !r.contains_key(*t)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = received.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    let dups: Vec<_> = r.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "shown more than once: {dups:?}");
    let unknown: Vec<_> = r.keys().filter(|t| !attempted.contains(*t)).collect();
    assert!(
        unknown.is_empty(),
        "received messages nobody sent: {unknown:?}"
    );
    let kills = kills.load(Ordering::Relaxed);
    assert!(kills >= MIN_KILLS, "only {kills} kills");
    assert!(
        acked.len() > 100,
        "too little load got through: {}",
        acked.len()
    );
    println!(
        "kills {kills}, acknowledged {}, attempted {}, delivered {}, unacknowledged-but-delivered {}",
        acked.len(),
        attempted.len(),
        r.len(),
        r.keys().filter(|t| !acked.contains(*t)).count()
    );

    // The store opens cleanly: kill once more, then open the file directly.
    for h in receivers {
        h.abort();
    }
    drop(clients);
    if let Some(mut b) = broker.lock().unwrap().take() {
        b.kill9();
    }
    let db =
        redb::Database::create(data.join("claudemesh.redb")).expect("store opens after SIGKILL");
    drop(db);
    let (store, loaded) = claudemesh::store::Store::open(&data).expect("store loads after SIGKILL");
    assert_eq!(loaded.meshes.len(), 1);
    store.close().await;
}
