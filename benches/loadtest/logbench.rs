//! `log`: the store's per-mesh append-only log on its own (no broker, no network): appends/s
//! with W concurrent appenders sharing the group commit, then reads from sequence offsets.

use claudemesh::proto::Key;
use claudemesh::store::log::{self, LogId, Retention};
use claudemesh::store::Store;
use serde_json::{json, Value};
use std::time::Instant;

pub async fn run(appends: u64, writers: u64, payload: usize) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("store");
    let id = LogId::new(Key([7; 32]), "bench");
    let logs = store.logs().clone();
    let per = appends / writers.max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, logs, id) = (store.clone(), logs.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let subject = format!("w{w}.k{}", i % 100);
                logs.append_wait(
                    &store,
                    &id,
                    &subject,
                    vec![7; payload],
                    Retention::default(),
                )
                .await
                .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("appender");
    }
    let append_s = t.elapsed().as_secs_f64();
    let total = per * writers;
    let commits = store
        .stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);

    // Read the whole log from the start in pages of 1,000.
    let t = Instant::now();
    let (mut from, mut read) = (1u64, 0u64);
    loop {
        let page = log::read_from(&store, &id, from, 1000, usize::MAX).expect("read");
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        read += page.len() as u64;
    }
    let scan_s = t.elapsed().as_secs_f64();
    // 1,000 reads of 100 records at random offsets (a watcher resuming).
    let t = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = 1 + x % total.max(1);
        let page = log::read_from(&store, &id, at, 100, usize::MAX).expect("read");
        assert!(!page.is_empty());
    }
    let offset_us = t.elapsed().as_secs_f64() * 1e6 / 1000.0;
    let latest_t = Instant::now();
    for k in 0..1000 {
        let _ = log::latest(&store, &id, &format!("w0.k{}", k % 100)).expect("latest");
    }
    let latest_us = latest_t.elapsed().as_secs_f64() * 1e6 / 1000.0;
    store.close().await;
    let v = json!({
        "workload": "log", "appends": total, "writers": writers, "payload_bytes": payload,
        "appends_per_s": (total as f64 / append_s).round(),
        "commits": commits,
        "scan_records_per_s": (read as f64 / scan_s).round(),
        "read_100_at_offset_us": offset_us.round(),
        "latest_us": (latest_us * 10.0).round() / 10.0,
    });
    eprintln!(
        "log: {total} appends by {writers} writers: {} appends/s in {commits} commits; scan {} records/s; 100 records at an offset {} µs; latest {} µs",
        v["appends_per_s"], v["scan_records_per_s"], v["read_100_at_offset_us"], v["latest_us"]
    );
    v
}
