//! Connections that never authenticate cannot pile up: 5,000 silent TCP sockets and 1,000
//! upgrades that dribble their headers, opened at once, are all closed within the header
//! timeout, `/health` counts them meanwhile, and members' DMs keep flowing (p99 < 100 ms).
//! Past the cap on unauthenticated connections, new sockets are closed at accept.

use crate::common::*;
use claudemesh::client::Dest;
use claudemesh::proto::Priority;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(2);
/// How late after the timeout a close may come on this two-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// Wait until the broker closes `s` (EOF or reset); how long that took from `opened`.
async fn closed(mut s: TcpStream, opened: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return opened.elapsed(),
            Ok(_) => {} // an HTTP error response before the close
        }
    }
}

/// Send a request line and then one header byte every 200 ms until the broker hangs up.
async fn dribble(mut s: TcpStream, opened: Instant) -> Duration {
    let _ = s
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: ")
        .await;
    let mut buf = [0u8; 256];
    loop {
        if s.write_all(b"a").await.is_err() {
            return opened.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return opened.elapsed(),
            _ => {}
        }
    }
}

async fn open(addr: std::net::SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.expect("connect");
            (s, Instant::now())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_dribbling_connections_are_closed_in_time_while_members_keep_messaging() {
    let _machine = crate::alone();
    crate::harness::raise_nofile(); // ~12,000 descriptors: both ends live in this process
    let mesh = Mesh::start_with(|c| {
        c.header_timeout = TIMEOUT;
        c.hello_timeout = TIMEOUT;
    })
    .await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let addr = mesh.server().addr;
    let hub = mesh.server().hub.clone();

    let silent = open(addr, 5000).await;
    let slow = open(addr, 1000).await;
    let mut waits = Vec::new();
    for (s, t) in silent {
        waits.push(tokio::spawn(closed(s, t)));
    }
    for (s, t) in slow {
        waits.push(tokio::spawn(dribble(s, t)));
    }
    // A keep-alive HTTP client that idles after its answer, and an upgrade that never
    // says hello: the outer deadline and the hello deadline close them.
    let mut idle_http = TcpStream::connect(addr).await.unwrap();
    let t_http = Instant::now();
    idle_http
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    waits.push(tokio::spawn(closed(idle_http, t_http)));
    let t_ws = Instant::now();
    let silent_ws = raw_ws(addr).await;
    waits.push(tokio::spawn(async move {
        let mut ws = silent_ws;
        let _ = closed_within(&mut ws, Duration::from_secs(30)).await;
        t_ws.elapsed()
    }));
    // The broker accepts from its backlog as fast as it can; /health counts them.
    let deadline = Instant::now() + TIMEOUT;
    let mut counted = 0;
    while Instant::now() < deadline && counted < 5000 {
        counted = counted.max(hub.health().unauthenticated);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        counted >= 5000,
        "/health counted at most {counted} unauthenticated"
    );

    // Members meanwhile: DM round trips, sent one after another.
    let mut rtt = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        a.send(&[Dest::parse("bob")], &format!("m{i}"), Priority::Now, None)
            .await
            .unwrap();
        let m = next_message(&b, WAIT).await.expect("delivered");
        b.ack(&[m.msg_id]);
        rtt.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rtt.sort();
    let p99 = rtt[rtt.len() * 99 / 100];

    let mut latest = Duration::ZERO;
    for w in waits {
        latest = latest.max(w.await.unwrap());
    }
    assert!(
        latest <= TIMEOUT + SLACK,
        "the last unauthenticated socket closed after {latest:?}"
    );
    assert!(
        p99 < Duration::from_millis(100),
        "DM round trip p99 {p99:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hub.health().unauthenticated, 0);
    eprintln!("6,000 unauthenticated sockets closed by {latest:?}; DM p99 {p99:?}");
}

#[tokio::test]
async fn past_the_unauthenticated_cap_new_sockets_are_closed_at_accept_and_members_still_connect() {
    let _machine = crate::shared();
    let mesh = Mesh::start_with(|c| {
        c.header_timeout = Duration::from_secs(30);
        c.max_unauthenticated = 100;
    })
    .await;
    let addr = mesh.server().addr;
    let held = open(addr, 100).await;
    let deadline = Instant::now() + WAIT;
    while mesh.server().hub.health().unauthenticated < 100 {
        assert!(Instant::now() < deadline, "the broker never counted 100");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let extra = open(addr, 20).await;
    for (s, t) in extra {
        let d = closed(s, t).await;
        assert!(
            d < Duration::from_secs(2),
            "an over-cap socket stayed open {d:?}"
        );
    }
    // Places come back when the held sockets go: a member connects.
    drop(held);
    let a = mesh.member("alice").await.connect().await;
    a.ping().await.unwrap();
}
