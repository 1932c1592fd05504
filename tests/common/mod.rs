//! Shared test harness: a real in-process broker on a temp data dir, members enrolled
//! through the real admin socket and `POST /join`, real clients, and a TCP proxy that can
//! cut or stall connections.
#![allow(dead_code)]

use claudemesh::broker::{Config, Server, ServerHandle};
use claudemesh::client::config::{Home, MeshConfig, OwnedMesh};
use claudemesh::client::{enroll, Client, ClientOptions, Inbound, InboxMessage};
use claudemesh::proto::Role;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    c.sweep_interval = Duration::from_millis(100);
    c
}

pub struct Mesh {
    pub tmp: tempfile::TempDir,
    pub server: Option<ServerHandle>,
    pub cfg: Config,
    pub owner_home: Home,
    pub owned: OwnedMesh,
    pub invite: String,
}

impl Mesh {
    /// A broker with one mesh and an unlimited member invite.
    pub async fn start() -> Mesh {
        Mesh::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Mesh {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = test_config(&tmp.path().join("data"));
        tweak(&mut cfg);
        let server = Server::start(cfg.clone()).await.unwrap();
        cfg.listen = server.addr; // restarts reuse the port, so invites stay valid
        let owner_home = Home {
            dir: tmp.path().join("owner"),
        };
        let owned = enroll::create_mesh(&owner_home, &cfg.data_dir, "team")
            .await
            .unwrap();
        let invite = enroll::make_invite(
            &cfg.data_dir,
            &owned,
            Role::Member,
            claudemesh::util::now_ms() + 3_600_000,
            None,
        )
        .await
        .unwrap();
        Mesh {
            tmp,
            server: Some(server),
            cfg,
            owner_home,
            owned,
            invite,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone()
    }

    pub fn server(&self) -> &ServerHandle {
        self.server.as_ref().unwrap()
    }

    /// Enroll a member named `name` with its own client home.
    pub async fn member(&self, name: &str) -> Member {
        let home = Home {
            dir: self.tmp.path().join(format!("home-{name}")),
        };
        let (mc, _) = enroll::join(&home, &self.invite, name).await.unwrap();
        Member {
            home,
            mc,
            name: name.to_string(),
        }
    }

    /// Enroll a mesh admin named `name` (through an admin invite made on the data dir).
    pub async fn admin(&self, name: &str) -> Member {
        let invite = enroll::make_invite(
            &self.data_dir(),
            &self.owned,
            Role::Admin,
            claudemesh::util::now_ms() + 3_600_000,
            None,
        )
        .await
        .unwrap();
        let home = Home {
            dir: self.tmp.path().join(format!("home-{name}")),
        };
        let (mc, _) = enroll::join(&home, &invite, name).await.unwrap();
        Member {
            home,
            mc,
            name: name.to_string(),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Stop and start again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last = None;
        for _ in 0..50 {
            match Server::start(self.cfg.clone()).await {
                Ok(s) => {
                    self.server = Some(s);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("broker did not restart: {last:?}");
    }
}

pub struct Member {
    pub home: Home,
    pub mc: MeshConfig,
    pub name: String,
}

impl Member {
    pub fn opts(&self) -> ClientOptions {
        let mut o = ClientOptions::for_session(&self.home, &self.mc, "cli", &self.name);
        o.request_timeout = WAIT;
        o
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.opts(), WAIT).await.unwrap()
    }

    pub async fn connect_via(&self, addr: SocketAddr) -> Client {
        let mut o = self.opts();
        o.ws_url = format!("ws://{addr}/ws");
        Client::connect(o, WAIT).await.unwrap()
    }
}

/// Owned strings from string literals (paths, tags, findings in requests).
pub fn v(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

/// Next pushed message within `d`, skipping events.
pub async fn next_message(c: &Client, d: Duration) -> Option<InboxMessage> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Some(Inbound::Message(m))) => return Some(m),
            Ok(Some(Inbound::Event(_) | Inbound::Feed(_))) => continue,
            _ => return None,
        }
    }
}

/// The next event of `kind` `c` receives within `WAIT`, skipping everything else.
pub async fn event(c: &Client, kind: &str) -> Option<claudemesh::proto::Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Some(Inbound::Event(e))) if e.kind == kind => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Collect every pushed message arriving within `d`.
pub async fn messages_within(c: &Client, d: Duration) -> Vec<InboxMessage> {
    let mut v = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    while let Some(m) = next_message(
        c,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await
    {
        v.push(m);
    }
    v
}

/// A TCP proxy in front of the broker: `cut()` drops every connection; `stall_upstream()`
/// silently stops forwarding client→broker bytes (an ack lost on the wire).
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<tokio::sync::Notify>,
    stall: Arc<AtomicBool>,
    stall_down: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = Arc::new(tokio::sync::Notify::new());
        let stall = Arc::new(AtomicBool::new(false));
        let stall_down = Arc::new(AtomicBool::new(false));
        let sd2 = stall_down.clone();
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c2, s2, g2) = (cut.clone(), stall.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = l.accept().await else {
                    return;
                };
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (cut, stall, gen, stall_down) =
                    (c2.clone(), s2.clone(), g2.clone(), sd2.clone());
                let my_gen = gen.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let n = match ri.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if stall.load(Ordering::SeqCst) {
                                continue;
                            }
                            if wo.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let n = match ro.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if stall_down.load(Ordering::SeqCst) {
                                continue;
                            }
                            if wi.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let cut_wait = async {
                        loop {
                            cut.notified().await;
                            if gen.load(Ordering::SeqCst) > my_gen {
                                return;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {}, _ = cut_wait => {} }
                });
            }
        });
        Proxy {
            addr,
            cut,
            stall,
            stall_down,
            generation,
        }
    }

    /// Drop every connection open now.
    pub fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn stall_upstream(&self, on: bool) {
        self.stall.store(on, Ordering::SeqCst);
    }

    /// Silently stop forwarding broker→client bytes (a reply lost on the wire).
    pub fn stall_downstream(&self, on: bool) {
        self.stall_down.store(on, Ordering::SeqCst);
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare WebSocket to the broker, speaking JSON text frames (no project client code).
pub async fn raw_ws(addr: SocketAddr) -> RawWs {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws
}

pub async fn send_text(ws: &mut RawWs, text: impl Into<String>) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        text.into().into(),
    ))
    .await
    .unwrap();
}

/// Next JSON frame from the broker, or `None` when the connection closed (or nothing came
/// within `d`).
pub async fn recv_json(ws: &mut RawWs, d: Duration) -> Option<serde_json::Value> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match m {
            Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                return serde_json::from_str(t.as_str()).ok()
            }
            Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) => {
                return serde_json::from_slice(&b).ok()
            }
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// True when the broker closes the connection within `d`.
pub async fn closed_within(ws: &mut RawWs, d: Duration) -> bool {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None)
            | Ok(Some(Err(_)))
            | Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A JSON request frame: `{"req": {"id": id, "body": body}}`.
#[allow(dead_code)]
pub fn req_json(id: u64, body: serde_json::Value) -> String {
    serde_json::json!({"req": {"id": id, "body": body}}).to_string()
}

/// A signed JSON hello for `m`'s session `session` under `name`.
pub fn hello_json(m: &Member, name: &str, session: &str) -> String {
    use claudemesh::crypto::hello::{make_hello, HelloParams};
    let h = make_hello(
        &m.mc.member(),
        &m.mc.peer(session),
        &HelloParams {
            mesh_id: m.mc.mesh_id,
            name,
            session_id: session,
            hostname: "h",
            cwd: "/",
            push: true,
            status: claudemesh::proto::Status::Idle,
        },
        claudemesh::util::now_ms(),
    );
    serde_json::to_string(&claudemesh::proto::ClientFrame::Hello(h)).unwrap()
}
