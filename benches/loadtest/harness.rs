//! The load harness: a broker as a separate process, N real clients (the project's client
//! library, real sockets, real end-to-end crypto), and four workloads — `ref`, `idle`,
//! `durable`, `fanout`. Each prints a human table and, as its last line, one JSON object.
//!
//! Shared by the `loadtest` binary (benches/loadtest/main.rs), `cargo bench` (benches/quick.rs)
//! and the fast check in the test suite (tests/proc/loadtest_ref.rs).
#![allow(dead_code)]

use claudemesh::client::config::{Home, MeshConfig};
use claudemesh::client::{enroll, Client, ClientOptions, Dest, Inbound, InboxMessage};
use claudemesh::proto::{Codec, PeerInfo, Priority, Role};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ process facts

/// Resident set size and its peak (KiB), and CPU seconds (user + system) of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub cpu_s: f64,
}

pub fn proc_stats(pid: &str) -> ProcStats {
    let mut s = ProcStats::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for l in status.lines() {
            let num = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if l.starts_with("VmRSS:") {
                s.rss_kb = num();
            } else if l.starts_with("VmHWM:") {
                s.hwm_kb = num();
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
        if let Some(rest) = stat.rsplit_once(')').map(|x| x.1) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            s.cpu_s = (ut + st) / tick;
        }
    }
    s
}

/// Raise this process's open-file limit to its hard limit (children inherit it).
pub fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return r.rlim_cur;
        }
    }
    0
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {:.0} GiB",
        mem as f64 / 1024.0 / 1024.0
    )
}

// ------------------------------------------------------------------ the broker process

/// How to start a broker process: a program and the arguments before `--listen ...`.
#[derive(Clone)]
pub struct BrokerSpec {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

pub struct Broker {
    child: Child,
    pub pid: String,
    pub port: u16,
    pub data: PathBuf,
}

impl Broker {
    pub fn start(spec: &BrokerSpec, data: &Path) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Broker::start_on(spec, data, port, &["--rate-limit", "1000000"])
    }

    /// Start on a given port with extra `serve` flags (restarts reuse the port).
    pub fn start_on(spec: &BrokerSpec, data: &Path, port: u16, extra: &[&str]) -> Broker {
        let child = Command::new(&spec.program)
            .args(&spec.prefix)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .env("CLAUDEMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start broker");
        let pid = child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && data.join("admin.sock").exists())
        {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Broker {
            child,
            pid,
            port,
            data: data.to_path_buf(),
        }
    }

    /// SIGKILL the broker and wait for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stats(&self) -> ProcStats {
        proc_stats(&self.pid)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn health(&self) -> Value {
        match claudemesh::client::http::request(&self.url(), "GET", "/health", None).await {
            Ok((200, b)) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => Value::Null,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker with one mesh and `members` enrolled members.
pub struct Bench {
    pub tmp: tempfile::TempDir,
    pub broker: Broker,
    pub members: Vec<(Home, MeshConfig)>,
}

impl Bench {
    pub async fn start(spec: &BrokerSpec, members: usize) -> Bench {
        Bench::start_with(spec, members, &["--rate-limit", "1000000"]).await
    }

    /// Like [`Bench::start`], with the broker's `serve` flags given explicitly.
    pub async fn start_with(spec: &BrokerSpec, members: usize, flags: &[&str]) -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let broker = Broker::start_on(spec, &data, port, flags);
        let owner = Home {
            dir: tmp.path().join("owner"),
        };
        let om = enroll::create_mesh(&owner, &data, "bench").await.unwrap();
        let link = enroll::make_invite(
            &data,
            &om,
            Role::Member,
            claudemesh::util::now_ms() + 86_400_000,
            None,
        )
        .await
        .unwrap();
        let mut joins = Vec::new();
        for i in 0..members {
            let home = Home {
                dir: tmp.path().join(format!("m{i}")),
            };
            let link = link.clone();
            joins.push(tokio::spawn(async move {
                let (mc, _) = enroll::join(&home, &link, &format!("m{i}")).await.unwrap();
                (home, mc)
            }));
        }
        let mut out = Vec::new();
        for j in joins {
            out.push(j.await.unwrap());
        }
        Bench {
            tmp,
            broker,
            members: out,
        }
    }

    /// Client options for session `s` of member `m` (named `m<m>` for session "cli", else
    /// `m<m>-<s>`).
    pub fn opts(&self, m: usize, session: &str) -> ClientOptions {
        let (home, mc) = &self.members[m];
        let name = if session == "cli" {
            mc.name.clone()
        } else {
            format!("{}-{session}", mc.name)
        };
        let mut o = ClientOptions::for_session(home, mc, session, &name);
        o.seen_path = None;
        o.codec = Codec::Binary;
        o.request_timeout = Duration::from_secs(120);
        o
    }

    /// One connected client per member (their default peers).
    pub async fn connect_all(&self) -> Vec<Arc<Client>> {
        let mut tasks = Vec::new();
        for m in 0..self.members.len() {
            let o = self.opts(m, "cli");
            tasks.push(tokio::spawn(async move {
                Client::connect(o, Duration::from_secs(60)).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(Arc::new(t.await.unwrap().expect("connect")));
        }
        out
    }
}

// ------------------------------------------------------------------ measuring

pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    (h.max() as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Payload text: `<sender>:<seq>:<send time µs since start>:` then padding.
fn payload(sender: usize, seq: u64, t0: Instant, pad: usize) -> String {
    let mut s = format!("{sender}:{seq}:{}:", t0.elapsed().as_micros());
    if s.len() < pad {
        s.extend(std::iter::repeat_n('x', pad - s.len()));
    }
    s
}

fn parse_payload(text: &str) -> Option<(usize, u64, u64)> {
    let mut it = text.split(':');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Shared receive-side bookkeeping.
pub struct Received {
    pub count: AtomicU64,
    pub dups: AtomicU64,
    pub e2e: Mutex<Histogram<u64>>,
    seen: Mutex<std::collections::HashSet<(usize, u64, usize)>>,
    pub last_us: AtomicU64,
}

impl Received {
    pub fn new() -> Arc<Self> {
        Arc::new(Received {
            count: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            e2e: Mutex::new(hist()),
            seen: Mutex::new(Default::default()),
            last_us: AtomicU64::new(0),
        })
    }

    fn record(&self, receiver: usize, m: &InboxMessage, t0: Instant) {
        let Some((sender, seq, sent_us)) = parse_payload(&m.text) else {
            return;
        };
        let now = t0.elapsed().as_micros() as u64;
        if !self.seen.lock().unwrap().insert((sender, seq, receiver)) {
            self.dups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = self
            .e2e
            .lock()
            .unwrap()
            .record(now.saturating_sub(sent_us).max(1));
        self.last_us.fetch_max(now, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Receive, record and ack everything a client is pushed, until the client closes.
pub fn spawn_receiver(
    c: Arc<Client>,
    idx: usize,
    rx: Arc<Received>,
    t0: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(first) = c.recv().await {
            let mut batch = vec![first];
            batch.extend(c.drain().await);
            let mut ids = Vec::with_capacity(batch.len());
            for x in batch {
                if let Inbound::Message(m) = x {
                    rx.record(idx, &m, t0);
                    ids.push(m.msg_id);
                }
            }
            c.ack(&ids);
        }
    })
}

async fn wait_for(count: &AtomicU64, want: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while count.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn print_table(title: &str, rows: &[(&str, String)]) {
    println!("{title}");
    for (k, v) in rows {
        println!("  {k:<34} {v}");
    }
}

fn rnd(n: usize) -> usize {
    (claudemesh::util::random_u64() % n as u64) as usize
}

// ------------------------------------------------------------------ workloads

/// `ref`: N peers × M DMs to random other peers, all at once (each peer keeps `window` sends
/// outstanding).
pub async fn run_ref(spec: &BrokerSpec, peers: usize, msgs: u64, window: usize) -> Value {
    let bench = Bench::start(spec, peers).await;
    let clients = bench.connect_all().await;
    let infos: Vec<PeerInfo> = {
        let all = clients[0].list_peers().await.unwrap();
        (0..peers)
            .map(|i| {
                all.iter()
                    .find(|p| p.name == format!("m{i}"))
                    .unwrap()
                    .clone()
            })
            .collect()
    };
    let before = bench.broker.stats();
    let harness_before = proc_stats("self");
    let t0 = Instant::now();
    let rx = Received::new();
    let receivers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| spawn_receiver(c.clone(), i, rx.clone(), t0))
        .collect();
    let acks = Arc::new(Mutex::new(hist()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, infos, acks, failed) = (c.clone(), infos.clone(), acks.clone(), failed.clone());
        senders.push(tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(window));
            let mut tasks = Vec::with_capacity(msgs as usize);
            for seq in 0..msgs {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let mut t = rnd(infos.len() - 1);
                if t >= i {
                    t += 1;
                }
                let (c, info, acks, failed) =
                    (c.clone(), infos[t].clone(), acks.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    let text = payload(i, seq, t0, 0);
                    let start = Instant::now();
                    match c
                        .send_resolved(
                            &[Dest::Peer(info.name.clone())],
                            &[info],
                            &text,
                            Priority::Next,
                            None,
                        )
                        .await
                    {
                        Ok(_) => drop(
                            acks.lock()
                                .unwrap()
                                .record(start.elapsed().as_micros().max(1) as u64),
                        ),
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("send failed: {e}");
                        }
                    }
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    let expected = peers as u64 * msgs;
    let all = wait_for(&rx.count, expected, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // late duplicates would show up here
    let wall_s = rx.last_us.load(Ordering::Relaxed) as f64 / 1e6;
    let after = bench.broker.stats();
    let harness_after = proc_stats("self");
    for r in receivers {
        r.abort();
    }
    let received = rx.count.load(Ordering::Relaxed);
    let e2e = rx.e2e.lock().unwrap().clone();
    let ack = acks.lock().unwrap().clone();
    let v = json!({
        "workload": "ref", "peers": peers, "msgs_per_peer": msgs, "window": window,
        "delivered_pct": (received as f64 / expected as f64 * 10000.0).round() / 100.0,
        "duplicates": rx.dups.load(Ordering::Relaxed),
        "send_failures": failed.load(Ordering::Relaxed),
        "ack_p50_ms": ms(&ack, 0.5), "ack_p95_ms": ms(&ack, 0.95), "ack_p99_ms": ms(&ack, 0.99), "ack_max_ms": max_ms(&ack),
        "e2e_p50_ms": ms(&e2e, 0.5), "e2e_p95_ms": ms(&e2e, 0.95), "e2e_p99_ms": ms(&e2e, 0.99), "e2e_max_ms": max_ms(&e2e),
        "wall_s": (wall_s * 100.0).round() / 100.0,
        "broker_peak_rss_mb": (after.hwm_kb as f64 / 1024.0 * 10.0).round() / 10.0,
        "broker_cpu_s": ((after.cpu_s - before.cpu_s) * 100.0).round() / 100.0,
        "harness_cpu_s": ((harness_after.cpu_s - harness_before.cpu_s) * 100.0).round() / 100.0,
        "complete": all,
    });
    print_table(
        &format!("ref: {peers} peers x {msgs} DMs (window {window})"),
        &[
            (
                "delivered",
                format!(
                    "{}% ({received}/{expected}), {} duplicates",
                    v["delivered_pct"], v["duplicates"]
                ),
            ),
            (
                "send->ack p50/p95/p99/max ms",
                format!(
                    "{} / {} / {} / {}",
                    v["ack_p50_ms"], v["ack_p95_ms"], v["ack_p99_ms"], v["ack_max_ms"]
                ),
            ),
            (
                "send->delivery p50/p95/p99/max ms",
                format!(
                    "{} / {} / {} / {}",
                    v["e2e_p50_ms"], v["e2e_p95_ms"], v["e2e_p99_ms"], v["e2e_max_ms"]
                ),
            ),
            ("wall time to last delivery", format!("{} s", v["wall_s"])),
            ("broker peak RSS", format!("{} MB", v["broker_peak_rss_mb"])),
            (
                "broker CPU / harness CPU",
                format!("{} s / {} s", v["broker_cpu_s"], v["harness_cpu_s"]),
            ),
        ],
    );
    v
}

/// `idle`: N connected peers idling, then 100 DMs to prove liveness.
pub async fn run_idle(spec: &BrokerSpec, peers: usize, idle_secs: u64) -> Value {
    let per_member = 100.min(peers);
    let members = peers.div_ceil(per_member);
    let bench = Bench::start(spec, members).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let empty = bench.broker.stats();
    let mut specs = Vec::with_capacity(peers);
    for i in 0..peers {
        specs.push(bench.opts(i / per_member, &format!("s{}", i % per_member)));
    }
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(peers);
    for o in specs {
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let c = Client::connect(o, Duration::from_secs(120)).await;
            (c, start.elapsed())
        }));
    }
    let mut clients = Vec::with_capacity(peers);
    let mut connect = hist();
    let mut failures = 0;
    for t in tasks {
        match t.await.unwrap() {
            (Ok(c), d) => {
                let _ = connect.record(d.as_micros().max(1) as u64);
                clients.push(Arc::new(c));
            }
            (Err(e), _) => {
                failures += 1;
                if failures < 5 {
                    eprintln!("connect failed: {e}");
                }
            }
        }
    }
    let storm_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = bench.broker.health().await["peers_online"]
        .as_u64()
        .unwrap_or(0);
    let loaded = bench.broker.stats();
    let rss_per_conn_kb =
        (loaded.rss_kb.saturating_sub(empty.rss_kb)) as f64 / clients.len().max(1) as f64;
    let cpu0 = bench.broker.stats().cpu_s;
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu_pct =
        (bench.broker.stats().cpu_s - cpu0) / idle_start.elapsed().as_secs_f64() * 100.0;
    // Liveness: 100 DMs between random connected peers.
    let rx = Received::new();
    let t1 = Instant::now();
    let n = clients.len();
    let mut receivers = Vec::new();
    let mut pairs = Vec::new();
    for k in 0..100.min(n) {
        let to = rnd(n);
        let from = (to + 1 + rnd(n - 1)) % n;
        pairs.push((k, from, to));
    }
    let mut targets: Vec<usize> = pairs.iter().map(|p| p.2).collect();
    targets.sort();
    targets.dedup();
    for &t in &targets {
        receivers.push(spawn_receiver(clients[t].clone(), t, rx.clone(), t1));
    }
    for (k, from, to) in &pairs {
        let name = match clients[*to].state() {
            claudemesh::client::ConnState::Connected { name, .. } => name,
            _ => continue,
        };
        let _ = clients[*from]
            .send(
                &[Dest::Peer(name)],
                &payload(*from, *k as u64, t1, 0),
                Priority::Now,
                None,
            )
            .await;
    }
    let live = wait_for(&rx.count, pairs.len() as u64, Duration::from_secs(30)).await;
    for r in receivers {
        r.abort();
    }
    let v = json!({
        "workload": "idle", "peers": peers,
        "connected": connected,
        "connect_failures": failures,
        "rss_per_conn_kb": (rss_per_conn_kb * 10.0).round() / 10.0,
        "broker_rss_empty_mb": (empty.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0,
        "broker_rss_loaded_mb": (loaded.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0,
        "connect_p50_ms": ms(&connect, 0.5), "connect_p99_ms": ms(&connect, 0.99),
        "storm_s": (storm_s * 100.0).round() / 100.0,
        "idle_secs": idle_secs,
        "idle_cpu_pct": (idle_cpu_pct * 100.0).round() / 100.0,
        "liveness_delivered": rx.count.load(Ordering::Relaxed), "liveness_ok": live,
    });
    print_table(
        &format!("idle: {peers} peers"),
        &[
            (
                "connected (broker's count)",
                format!("{connected} ({failures} failed)"),
            ),
            (
                "broker RSS per connection",
                format!(
                    "{} KB (empty {} MB, loaded {} MB)",
                    v["rss_per_conn_kb"], v["broker_rss_empty_mb"], v["broker_rss_loaded_mb"]
                ),
            ),
            (
                "connect->hello_ack p50/p99",
                format!("{} / {} ms", v["connect_p50_ms"], v["connect_p99_ms"]),
            ),
            ("storm (all at once)", format!("{} s", v["storm_s"])),
            (
                "idle broker CPU",
                format!("{}% over {idle_secs} s", v["idle_cpu_pct"]),
            ),
            (
                "liveness DMs delivered",
                format!("{}/{}", v["liveness_delivered"], pairs.len()),
            ),
        ],
    );
    v
}

/// `durable`: every peer keeps W sends outstanding (200-byte sealed payloads) for `secs`.
pub async fn run_durable(spec: &BrokerSpec, peers: usize, windows: &[usize], secs: u64) -> Value {
    let bench = Bench::start(spec, peers).await;
    let clients = bench.connect_all().await;
    let infos: Vec<PeerInfo> = {
        let all = clients[0].list_peers().await.unwrap();
        (0..peers)
            .map(|i| {
                all.iter()
                    .find(|p| p.name == format!("m{i}"))
                    .unwrap()
                    .clone()
            })
            .collect()
    };
    let t0 = Instant::now();
    let rx = Received::new();
    let receivers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| spawn_receiver(c.clone(), i, rx.clone(), t0))
        .collect();
    let mut runs = Vec::new();
    for &w in windows {
        let h0 = bench.broker.health().await;
        let acks = Arc::new(Mutex::new(hist()));
        let acked = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            for _ in 0..w {
                let (c, infos, acks, acked) =
                    (c.clone(), infos.clone(), acks.clone(), acked.clone());
                tasks.push(tokio::spawn(async move {
                    let mut seq = 0u64;
                    while Instant::now() < deadline {
                        let mut t = rnd(infos.len() - 1);
                        if t >= i {
                            t += 1;
                        }
                        let info = infos[t].clone();
                        // ~200 bytes sealed: the text plus the JSON framing.
                        let text = payload(
                            i,
                            (w as u64) << 40 | claudemesh::util::random_u64() >> 24 | seq,
                            t0,
                            150,
                        );
                        seq += 1;
                        let s = Instant::now();
                        if c.send_resolved(
                            &[Dest::Peer(info.name.clone())],
                            &[info],
                            &text,
                            Priority::Now,
                            None,
                        )
                        .await
                        .is_ok()
                        {
                            let _ = acks
                                .lock()
                                .unwrap()
                                .record(s.elapsed().as_micros().max(1) as u64);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let h1 = bench.broker.health().await;
        let commits = h1["store_commits"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(h0["store_commits"].as_u64().unwrap_or(0));
        let stored = h1["store_messages"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(h0["store_messages"].as_u64().unwrap_or(0));
        let ack = acks.lock().unwrap().clone();
        let n = acked.load(Ordering::Relaxed);
        let r = json!({
            "window": w,
            "msgs_per_s": (n as f64 / elapsed).round(),
            "acked": n,
            "ack_p50_ms": ms(&ack, 0.5), "ack_p99_ms": ms(&ack, 0.99), "ack_p999_ms": ms(&ack, 0.999),
            "msgs_per_commit": if commits > 0 { (stored as f64 / commits as f64 * 10.0).round() / 10.0 } else { 0.0 },
        });
        print_table(
            &format!("durable: {peers} peers, window {w}, {secs} s"),
            &[
                (
                    "acked msgs/s (fsync'd commits)",
                    format!("{}", r["msgs_per_s"]),
                ),
                (
                    "ack p50 / p99 / p99.9",
                    format!(
                        "{} / {} / {} ms",
                        r["ack_p50_ms"], r["ack_p99_ms"], r["ack_p999_ms"]
                    ),
                ),
                ("messages per commit", format!("{}", r["msgs_per_commit"])),
            ],
        );
        runs.push(r);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in receivers {
        r.abort();
    }
    let main = runs
        .iter()
        .find(|r| r["window"] == 8)
        .or(runs.last())
        .cloned()
        .unwrap_or_default();
    json!({
        "workload": "durable", "peers": peers,
        "window": main["window"], "msgs_per_s": main["msgs_per_s"], "ack_p50_ms": main["ack_p50_ms"],
        "ack_p99_ms": main["ack_p99_ms"], "msgs_per_commit": main["msgs_per_commit"],
        "runs": runs,
    })
}

/// `fanout`: one sender, `recipients` peers in one group; 1 message/s for `secs`, then a
/// rising rate to find the sustained delivery rate.
pub async fn run_fanout(spec: &BrokerSpec, recipients: usize, secs: u64, ramp_secs: u64) -> Value {
    let total = recipients + 1;
    let per_member = 100.min(total);
    let bench = Bench::start(spec, total.div_ceil(per_member)).await;
    let mut conns = Vec::new();
    for i in 0..total {
        let o = bench.opts(i / per_member, &format!("s{}", i % per_member));
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
    let sender = clients[0].clone();
    let mut joins = Vec::new();
    for c in &clients[1..] {
        let c = c.clone();
        joins.push(tokio::spawn(
            async move { c.join_group("all", "member").await },
        ));
    }
    for j in joins {
        j.await.unwrap().unwrap();
    }
    // Per-message: each recipient's latency, and the last recipient's.
    let t0 = Instant::now();
    let per_msg: Arc<Mutex<std::collections::HashMap<u64, (u64, u32)>>> = Default::default();
    let per_recipient = Arc::new(Mutex::new(hist()));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut receivers = Vec::new();
    for c in clients[1..].iter() {
        let (c, per_msg, per_recipient, delivered) = (
            c.clone(),
            per_msg.clone(),
            per_recipient.clone(),
            delivered.clone(),
        );
        receivers.push(tokio::spawn(async move {
            while let Some(first) = c.recv().await {
                let mut batch = vec![first];
                batch.extend(c.drain().await);
                let mut ids = Vec::new();
                for x in batch {
                    if let Inbound::Message(m) = x {
                        ids.push(m.msg_id);
                        if let Some((_, seq, sent)) = parse_payload(&m.text) {
                            let lat = (t0.elapsed().as_micros() as u64)
                                .saturating_sub(sent)
                                .max(1);
                            let _ = per_recipient.lock().unwrap().record(lat);
                            let mut pm = per_msg.lock().unwrap();
                            let e = pm.entry(seq).or_insert((0, 0));
                            e.0 = e.0.max(lat);
                            e.1 += 1;
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                c.ack(&ids);
            }
        }));
    }
    let dest = [Dest::Group("all".into())];
    let mut seq = 0u64;
    // Phase 1: one message per second.
    for _ in 0..secs {
        let tick = Instant::now();
        sender
            .send(&dest, &payload(0, seq, t0, 0), Priority::Now, None)
            .await
            .unwrap();
        seq += 1;
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    let phase1 = seq;
    wait_for(
        &delivered,
        phase1 * recipients as u64,
        Duration::from_secs(30),
    )
    .await;
    let (last_p50, last_p99) = {
        let pm = per_msg.lock().unwrap();
        let mut h = hist();
        for s in 0..phase1 {
            if let Some((lat, _)) = pm.get(&s) {
                let _ = h.record(*lat);
            }
        }
        (ms(&h, 0.5), ms(&h, 0.99))
    };
    let e2e = per_recipient.lock().unwrap().clone();
    // Phase 2: rising rate, `ramp_secs` per step, until deliveries stop keeping up.
    let mut best_rate = 0.0f64;
    let mut steps = Vec::new();
    let mut rate = 2u64;
    while rate <= 4096 {
        let d0 = delivered.load(Ordering::Relaxed);
        let start = Instant::now();
        let step_first = seq;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut next = Instant::now();
        while start.elapsed() < Duration::from_secs(ramp_secs) {
            sender
                .send(&dest, &payload(0, seq, t0, 0), Priority::Now, None)
                .await
                .unwrap();
            seq += 1;
            next += interval;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                tokio::time::sleep(d).await;
            }
        }
        let sent = seq - step_first;
        let ok = wait_for(
            &delivered,
            d0 + sent * recipients as u64,
            Duration::from_secs(10),
        )
        .await;
        let el = start.elapsed().as_secs_f64();
        let got = delivered.load(Ordering::Relaxed) - d0;
        let dps = got as f64 / el;
        let last_p99_step = {
            let pm = per_msg.lock().unwrap();
            let mut h = hist();
            for s in step_first..seq {
                if let Some((lat, _)) = pm.get(&s) {
                    let _ = h.record(*lat);
                }
            }
            ms(&h, 0.99)
        };
        steps.push(json!({"msgs_per_s": (sent as f64 / ramp_secs as f64).round(), "deliveries_per_s": dps.round(), "last_recipient_p99_ms": last_p99_step, "kept_up": ok}));
        if !ok || last_p99_step > 1000.0 {
            break;
        }
        best_rate = best_rate.max(dps);
        rate *= 2;
    }
    for r in receivers {
        r.abort();
    }
    let v = json!({
        "workload": "fanout", "recipients": recipients,
        "e2e_p50_ms": ms(&e2e, 0.5), "e2e_p99_ms": ms(&e2e, 0.99),
        "last_recipient_p50_ms": last_p50, "last_recipient_p99_ms": last_p99,
        "deliveries_per_s": best_rate.round(),
        "ramp": steps,
    });
    print_table(
        &format!("fanout: 1 sender -> {recipients} recipients in @all"),
        &[
            (
                "per-recipient p50 / p99 (1 msg/s)",
                format!("{} / {} ms", v["e2e_p50_ms"], v["e2e_p99_ms"]),
            ),
            (
                "last recipient p50 / p99",
                format!(
                    "{} / {} ms",
                    v["last_recipient_p50_ms"], v["last_recipient_p99_ms"]
                ),
            ),
            (
                "sustained deliveries/s (ramp)",
                format!("{}", v["deliveries_per_s"]),
            ),
        ],
    );
    v
}

/// All four workloads at sizes that finish in a couple of minutes on 2 cores.
pub async fn run_quick(spec: &BrokerSpec) -> Value {
    let r = run_ref(spec, 100, 200, 8).await;
    let i = run_idle(spec, 2000, 5).await;
    let d = run_durable(spec, 100, &[1, 8, 64], 3).await;
    let f = run_fanout(spec, 1000, 5, 2).await;
    json!({ "workload": "quick", "ref": r, "idle": i, "durable": d, "fanout": f })
}
