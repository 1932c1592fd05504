//! The broker: configuration, start-up, the accept loop, housekeeping and graceful shutdown.
//!
//! `Server::start` binds, opens the store, and runs until `ServerHandle::shutdown` (tests) or
//! a signal (`claudemesh serve`). Modules: `hub` (state and delivery), `conn` (one WebSocket),
//! `http` (routes), `admin` (operator socket).

pub mod admin;
pub mod conn;
pub mod ctx;
pub mod dispatch;
pub mod feed;
pub mod gate;
pub mod http;
pub mod hub;
pub mod outbox;

use crate::store::{Op, Store, StoreError};
use hub::Hub;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything a broker can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Base URL put in invites; defaults to `http://<bound address>`.
    pub public_url: String,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_envelopes: usize,
    pub retention: Duration,
    /// Frames per second per peer, sustained, and the burst allowance.
    pub rate_per_s: f64,
    pub rate_burst: f64,
    pub hello_window: Duration,
    pub hello_timeout: Duration,
    pub grace: Duration,
    pub ping_interval: Duration,
    pub dead_after: Duration,
    pub sweep_interval: Duration,
    pub outbound_queue: usize,
    /// A connection whose socket accepts nothing for this long is dropped.
    pub write_timeout: Duration,
    /// How far a connection's rate-limited frames may outnumber its allowed ones before it
    /// is dropped as a flooder.
    pub flood_limit: u32,
    /// From accept to a complete HTTP request (headers read) or WebSocket upgrade: a socket
    /// that is silent or dribbles its headers is closed after this.
    pub header_timeout: Duration,
    /// Connections not yet authenticated (accepted, upgrading, or before their hello),
    /// overall and per source address (loopback exempt from the latter; see `gate`).
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
}

impl Config {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            public_url: String::new(),
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 1024 * 1024,
            max_envelopes: 256,
            retention: Duration::from_secs(7 * 86_400),
            rate_per_s: 2000.0,
            rate_burst: 4000.0,
            hello_window: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(90),
            ping_interval: Duration::from_secs(30),
            dead_after: Duration::from_secs(75),
            sweep_interval: Duration::from_secs(1),
            outbound_queue: 4096,
            write_timeout: Duration::from_secs(30),
            flood_limit: 2000,
            header_timeout: Duration::from_secs(10),
            max_unauthenticated: 8192,
            max_unauthenticated_per_ip: 256,
        }
    }
}

/// Where the broker keeps its data when not told: `/var/lib/claudemesh` for root, else
/// `$XDG_DATA_HOME/claudemesh` or `~/.local/share/claudemesh`.
pub fn default_data_dir() -> PathBuf {
    if crate::util::is_root() {
        return PathBuf::from("/var/lib/claudemesh");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("claudemesh");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/claudemesh")
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot create admin socket in {0}: {1}")]
    Admin(String, std::io::Error),
}

/// A running broker.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Stop accepting, close connections, wait until every pending write is durable.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub struct Server;

impl Server {
    pub async fn start(mut cfg: Config) -> Result<ServerHandle, ServeError> {
        let (store, loaded) = Store::open_with(&cfg.data_dir, crate::cap::TABLES)?;
        let listener = bind(cfg.listen).map_err(|e| ServeError::Bind(cfg.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(cfg.listen, e))?;
        if cfg.public_url.is_empty() {
            cfg.public_url = format!("http://{addr}");
        }
        let admin = admin::bind(&cfg.data_dir)
            .map_err(|e| ServeError::Admin(cfg.data_dir.display().to_string(), e))?;
        let hub = Hub::new(Arc::new(cfg), store.clone(), loaded);
        // Capabilities with work of their own (expiry sweepers, due timers) start now, not
        // at their first request.
        for start in crate::cap::START {
            start(&ctx::Ctx::system(&hub));
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(admin::serve(hub.clone(), admin, rx.clone()));
        let task = tokio::spawn(run(hub.clone(), listener, rx, store));
        tracing::info!(%addr, public_url = %hub.cfg.public_url, data_dir = %hub.cfg.data_dir.display(), "broker listening");
        Ok(ServerHandle {
            addr,
            hub,
            shutdown: tx,
            task,
        })
    }
}

/// Bind with a deep accept backlog: a reconnect storm of thousands of peers must not
/// overflow the kernel's queue (which would cost each overflowed client a 1-3 s SYN retry).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(16_384)
}

/// One TCP connection's HTTP side: requests until it upgrades to a WebSocket or closes.
/// Headers must arrive within `header_timeout`, and the whole exchange up to the upgrade
/// must finish within it too (keep-alive HTTP clients reconnect after that).
async fn serve_http(hub: Arc<Hub>, stream: tokio::net::TcpStream, ticket: Arc<gate::Ticket>) {
    let limit = hub.cfg.header_timeout;
    let t = ticket.clone();
    let h = hub.clone();
    let svc = service_fn(move |req| http::route(h.clone(), req, t.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limit)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if tokio::time::timeout(limit, conn).await.is_err() {
        tracing::debug!("closed a connection that sent no complete request in time");
    }
    drop(ticket);
}

async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    store: Store,
) {
    let mut sweep = tokio::time::interval(hub.cfg.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ticket = match hub.gate.admit(from.ip()) {
                    Ok(t) => Arc::new(t),
                    Err(full) => {
                        tracing::debug!(%from, reason = %full, "connection refused at accept");
                        continue; // dropping the stream closes it
                    }
                };
                let _ = stream.set_nodelay(true);
                let hub = hub.clone();
                tokio::spawn(serve_http(hub, stream, ticket));
            }
            _ = sweep.tick() => hub.sweep(),
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    hub.close_all(Duration::from_secs(3)).await;
    if let Err(e) = store.commit(Op::Flush).await {
        tracing::error!(error = %e, "final flush failed");
    }
    store.close().await;
    let _ = std::fs::remove_file(hub.cfg.data_dir.join(admin::SOCKET_NAME));
    tracing::info!("broker stopped");
}
