//! The operator's admin socket: a unix socket (mode 0600) in the data dir, one JSON request
//! per line, one JSON reply per line. Only local users who can open the file can use it.
//! The requests are `proto::admin`; the operator's side is `client::admin`.

use super::hub::Hub;
pub use crate::proto::admin::{AdminReply, AdminRequest, SOCKET_NAME};
use crate::store::InviteRecord;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

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
