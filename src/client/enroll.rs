//! Enrollment: creating meshes and invites (operator, on the broker host) and joining with
//! an invite (member, anywhere). Key material is made here, locally; only public keys and
//! the invite's signed part ever reach the broker.

use super::admin::{self, AdminError};
use super::config::{ConfigError, Home, MeshConfig, OwnedMesh};
use super::http::{self, HttpError as HttpClientError};
use crate::crypto::{hello, invite, Identity};
use crate::proto::admin::AdminRequest;
use crate::proto::{HttpError, Id16, JoinReply, JoinRequest, Key, Role};
use crate::util::{now_ms, valid_name};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Invite(#[from] invite::InviteError),
    #[error(transparent)]
    Http(#[from] HttpClientError),
    #[error("join refused: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Create a mesh on the broker whose admin socket lives in `data_dir`. The owner key and
/// the mesh key are made here and saved to `home`'s owned.json; the broker gets public keys.
pub async fn create_mesh(
    home: &Home,
    data_dir: &Path,
    name: &str,
) -> Result<OwnedMesh, EnrollError> {
    if !valid_name(name) {
        return Err(EnrollError::Invalid(format!(
            "invalid mesh name '{name}': use 1-64 of A-Z a-z 0-9 . _ -"
        )));
    }
    let info = admin::call(data_dir, &AdminRequest::Info).await?;
    let owner = Identity::generate();
    let (s, x) = owner.secrets();
    let om = OwnedMesh {
        name: name.to_string(),
        mesh_id: Key(crate::util::random_bytes()),
        owner_secret: Key(s),
        owner_xsecret: Key(x),
        mesh_key: Key(crate::util::random_bytes()),
        broker: info["public_url"].as_str().unwrap_or_default().to_string(),
        created_ms: now_ms(),
    };
    admin::call(
        data_dir,
        &AdminRequest::MeshCreate {
            name: name.to_string(),
            mesh_id: om.mesh_id,
            owner_pk: owner.public(),
        },
    )
    .await?;
    let mut owned = home.load_owned()?;
    owned
        .meshes
        .retain(|m| !(m.name == om.name && m.broker == om.broker));
    owned.meshes.push(om.clone());
    home.save_owned(&owned)?;
    Ok(om)
}

/// Find a mesh this machine owns, by name.
pub fn owned_mesh(home: &Home, name: &str) -> Result<OwnedMesh, EnrollError> {
    home.load_owned()?
        .meshes
        .into_iter()
        .rev()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            EnrollError::Invalid(format!(
                "this machine does not own a mesh named '{name}' (owner keys live in {})",
                home.owned_path().display()
            ))
        })
}

/// Sign an invite and register it with the broker (so uses are counted). Returns the link.
pub async fn make_invite(
    data_dir: &Path,
    om: &OwnedMesh,
    role: Role,
    expires_ms: u64,
    max_uses: Option<u32>,
) -> Result<String, EnrollError> {
    let owner = Identity::from_secrets(om.owner_secret.0, om.owner_xsecret.0);
    let invite_id = Id16::random();
    let info = admin::call(
        data_dir,
        &AdminRequest::InviteRegister {
            mesh: om.name.clone(),
            invite_id,
            role,
            expires_ms,
            max_uses,
        },
    )
    .await?;
    if info["owner_pk"].as_str() != Some(owner.public().hex().as_str()) {
        return Err(EnrollError::Invalid(format!(
            "the broker's mesh '{}' has a different owner key than this machine's copy",
            om.name
        )));
    }
    let payload = invite::InvitePayload {
        v: 1,
        broker: info["public_url"]
            .as_str()
            .unwrap_or(&om.broker)
            .to_string(),
        mesh_id: om.mesh_id,
        mesh: om.name.clone(),
        owner: owner.public(),
        invite_id,
        role,
        expires_ms,
        max_uses,
        key_commit: invite::key_commit(&om.mesh_key.0),
    };
    Ok(invite::create(&owner, &payload, &om.mesh_key.0))
}

/// Join a mesh with an invite link: make member keys (or reuse them when this machine
/// already joined this mesh), enroll over `POST /join`, save the config (0600).
pub async fn join(
    home: &Home,
    link: &str,
    name: &str,
) -> Result<(MeshConfig, JoinReply), EnrollError> {
    let inv = invite::parse_link(link)?;
    inv.payload.check_expiry(now_ms())?;
    let mesh_key = inv.mesh_key.ok_or(invite::InviteError::MissingSecret)?;
    if !valid_name(name) {
        return Err(EnrollError::Invalid(format!(
            "invalid name '{name}': use 1-64 of A-Z a-z 0-9 . _ -"
        )));
    }
    let mut cfg = home.load()?;
    let existing = cfg
        .meshes
        .iter()
        .find(|m| m.mesh_id == inv.payload.mesh_id)
        .cloned();
    let member = existing
        .as_ref()
        .map(MeshConfig::member)
        .unwrap_or_else(Identity::generate);
    let (ms, mx) = member.secrets();
    let mut mc = MeshConfig {
        mesh_id: inv.payload.mesh_id,
        mesh_name: inv.payload.mesh.clone(),
        broker: inv.payload.broker.clone(),
        name: existing
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| name.to_string()),
        role: inv.payload.role,
        member_secret: Key(ms),
        member_xsecret: Key(mx),
        mesh_key: Key(mesh_key),
        joined_ms: existing
            .as_ref()
            .map(|m| m.joined_ms)
            .unwrap_or_else(now_ms),
        tools: existing.as_ref().and_then(|m| m.tools.clone()),
    };
    let peer = mc.peer("cli");
    let ts = now_ms();
    let req = JoinRequest {
        invite: inv.signed_part.clone(),
        name: mc.name.clone(),
        member_pk: member.public(),
        member_xpk: member.x_public(),
        peer_pk: peer.public(),
        peer_xpk: peer.x_public(),
        peer_cert: member.sign(&hello::cert_bytes(
            &mc.mesh_id,
            &peer.public(),
            &peer.x_public(),
        )),
        ts_ms: ts,
        sig: member.sign(&invite::join_bytes(
            &inv.payload.invite_id,
            &member.public(),
            &member.x_public(),
            &peer.public(),
            &mc.name,
            ts,
        )),
    };
    let body = serde_json::to_vec(&req).map_err(|e| EnrollError::Invalid(e.to_string()))?;
    let (status, resp) = http::request(&mc.broker, "POST", "/join", Some(body)).await?;
    if status != 200 {
        let (code, message) = match serde_json::from_slice::<HttpError>(&resp) {
            Ok(e) => (e.error, e.message),
            Err(_) => (
                format!("http_{status}"),
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&resp)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
        };
        return Err(EnrollError::Refused { code, message });
    }
    let reply: JoinReply = serde_json::from_slice(&resp)
        .map_err(|e| EnrollError::Invalid(format!("malformed join reply: {e}")))?;
    mc.name = reply.name.clone();
    mc.role = reply.role;
    cfg.meshes.retain(|m| m.mesh_id != mc.mesh_id);
    cfg.meshes.push(mc.clone());
    home.save(&cfg)?;
    Ok((mc, reply))
}
