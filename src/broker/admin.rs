//! The operator's admin socket: a unix socket (mode 0600) in the data dir, one JSON request
//! per line, one JSON reply per line. Only local users who can open the file can use it.

use super::hub::Hub;
use crate::proto::{Id16, Key, Role};
use crate::store::InviteRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

pub const SOCKET_NAME: &str = "admin.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Register a mesh whose owner key and mesh key were made by the operator's CLI.
    MeshCreate {
        name: String,
        mesh_id: Key,
        owner_pk: Key,
    },
    /// Record an invite the operator's CLI signed, so joins can be counted and limited.
    InviteRegister {
        mesh: String,
        invite_id: Id16,
        role: Role,
        expires_ms: u64,
        max_uses: Option<u32>,
    },
    MeshList,
    /// Remove a member: disconnect its sessions; it cannot reconnect or rejoin.
    MemberRemove {
        mesh: String,
        name: String,
    },
    /// Broker facts the CLI needs (public URL for invite links).
    Info,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminReply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

fn ok(data: serde_json::Value) -> AdminReply {
    AdminReply {
        ok: true,
        error: None,
        data,
    }
}
fn fail(e: impl ToString) -> AdminReply {
    AdminReply {
        ok: false,
        error: Some(e.to_string()),
        data: serde_json::Value::Null,
    }
}

async fn handle(hub: &Hub, line: &str) -> AdminReply {
    let req: AdminRequest = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return fail(format!("malformed admin request: {e}")),
    };
    match req {
        AdminRequest::MeshCreate {
            name,
            mesh_id,
            owner_pk,
        } => match hub.create_mesh(&name, mesh_id, owner_pk).await {
            Ok(m) => ok(
                serde_json::json!({ "mesh_id": m.mesh_id.hex(), "public_url": hub.cfg.public_url }),
            ),
            Err(e) => fail(e),
        },
        AdminRequest::InviteRegister {
            mesh,
            invite_id,
            role,
            expires_ms,
            max_uses,
        } => {
            let Some(m) = hub.mesh_by_name(&mesh) else {
                return fail(format!("no mesh named '{mesh}'"));
            };
            let rec = InviteRecord {
                invite_id,
                mesh_id: m.mesh_id,
                role,
                expires_ms,
                max_uses,
                uses: 0,
                revoked: false,
                created_ms: crate::util::now_ms(),
            };
            match hub.register_invite(rec).await {
                Ok(()) => ok(
                    serde_json::json!({ "public_url": hub.cfg.public_url, "mesh_id": m.mesh_id.hex(), "owner_pk": m.owner_pk.hex() }),
                ),
                Err(e) => fail(e),
            }
        }
        AdminRequest::MeshList => ok(serde_json::to_value(hub.list_meshes()).unwrap_or_default()),
        AdminRequest::MemberRemove { mesh, name } => match hub.remove_member(&mesh, &name).await {
            Ok(closed) => ok(serde_json::json!({ "disconnected": closed })),
            Err(e) => fail(e),
        },
        AdminRequest::Info => {
            ok(serde_json::json!({ "public_url": hub.cfg.public_url, "version": crate::VERSION }))
        }
    }
}

/// Bind the socket (replacing a stale one) with owner-only permissions.
pub fn bind(dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(SOCKET_NAME);
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn serve(
    hub: Arc<Hub>,
    listener: UnixListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(e) => { tracing::warn!(error = %e, "admin accept failed"); continue } },
            _ = shutdown.changed() => return,
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r.take(1 << 20)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = handle(&hub, &line).await;
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                if w.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// Errors talking to the admin socket (the operator's CLI side).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the broker's admin socket at {0} ({1}); is `claudemesh serve` running with this --data-dir?")]
    Connect(String, std::io::Error),
    #[error("admin socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed admin reply: {0}")]
    Reply(#[from] serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

/// Send one request to a running broker's admin socket.
pub async fn call(data_dir: &Path, req: &AdminRequest) -> Result<serde_json::Value, AdminError> {
    let path = data_dir.join(SOCKET_NAME);
    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| AdminError::Connect(path.display().to_string(), e))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut lines = BufReader::new(r).lines();
    let reply = lines.next_line().await?.unwrap_or_default();
    let reply: AdminReply = serde_json::from_str(&reply)?;
    if reply.ok {
        Ok(reply.data)
    } else {
        Err(AdminError::Refused(
            reply.error.unwrap_or_else(|| "refused".into()),
        ))
    }
}
