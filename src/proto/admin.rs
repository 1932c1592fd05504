//! The admin socket's requests and replies (a unix socket in the broker's data dir, one JSON
//! object per line each way): shared by the broker (`broker::admin`) and the operator's CLI
//! (`client::admin`).

use super::{Id16, Key, Role};
use serde::{Deserialize, Serialize};

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
