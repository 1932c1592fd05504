//! Meshes, invites and joins: the rare, admin-serialised changes.

use super::{refuse, Hub, MeshState, MeshSummary, NameOwner, PeerState, Refusal};
use crate::crypto::{hello as hello_crypto, invite as invite_crypto};
use crate::proto::*;
use crate::store::*;
use crate::util::{now_ms, valid_name};

impl Hub {
    pub async fn create_mesh(
        &self,
        name: &str,
        mesh_id: Key,
        owner_pk: Key,
    ) -> Result<MeshRecord, Refusal> {
        if !valid_name(name) {
            return refuse(
                ErrorCode::BadRequest,
                format!("invalid mesh name '{name}': use 1-64 of A-Z a-z 0-9 . _ -"),
            );
        }
        let _g = self.admin_lock.lock().await;
        {
            let st = self.lock();
            if st.mesh_by_name.contains_key(name) {
                return refuse(
                    ErrorCode::NameTaken,
                    format!("a mesh named '{name}' already exists"),
                );
            }
            if st.meshes.contains_key(&mesh_id) {
                return refuse(ErrorCode::BadRequest, "mesh id already exists");
            }
        }
        let rec = MeshRecord {
            mesh_id,
            name: name.to_string(),
            owner_pk,
            created_ms: now_ms(),
        };
        self.store.commit(Op::PutMesh(rec.clone())).await?;
        let mut st = self.lock();
        st.mesh_by_name.insert(rec.name.clone(), mesh_id);
        st.meshes.insert(mesh_id, MeshState::new(rec.clone()));
        tracing::info!(mesh = %rec.name, "mesh created");
        Ok(rec)
    }

    pub fn mesh_by_name(&self, name: &str) -> Option<MeshRecord> {
        let st = self.lock();
        st.mesh_by_name
            .get(name)
            .and_then(|id| st.meshes.get(id))
            .map(|m| m.rec.clone())
    }

    pub async fn register_invite(&self, rec: InviteRecord) -> Result<(), Refusal> {
        let _g = self.admin_lock.lock().await;
        if !self.lock().meshes.contains_key(&rec.mesh_id) {
            return refuse(ErrorCode::UnknownMesh, "no such mesh");
        }
        self.store.commit(Op::PutInvite(rec.clone())).await?;
        self.lock().invites.insert(rec.invite_id, rec);
        Ok(())
    }

    pub fn list_meshes(&self) -> Vec<MeshSummary> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .meshes
            .values()
            .map(|m| MeshSummary {
                name: m.rec.name.clone(),
                mesh_id: m.rec.mesh_id.hex(),
                members: m.members.len(),
                peers: m.peers.len(),
                peers_online: m
                    .peers
                    .iter()
                    .filter(|p| st.peers.get(p).is_some_and(|p| p.online()))
                    .count(),
                created: crate::util::rfc3339(m.rec.created_ms),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Enroll a member with a signed invite (`POST /join`).
    pub async fn join(&self, req: JoinRequest) -> Result<JoinReply, Refusal> {
        let payload = invite_crypto::parse_signed(&req.invite).map_err(|e| Refusal {
            code: ErrorCode::InviteInvalid,
            message: e.to_string(),
        })?;
        let now = now_ms();
        if !valid_name(&req.name) {
            return refuse(
                ErrorCode::BadRequest,
                format!("invalid name '{}': use 1-64 of A-Z a-z 0-9 . _ -", req.name),
            );
        }
        if req.ts_ms.abs_diff(now) > self.cfg.hello_window.as_millis() as u64 {
            return refuse(
                ErrorCode::StaleHello,
                "join request timestamp is outside the allowed window (check the clock)",
            );
        }
        let sig_input = invite_crypto::join_bytes(
            &payload.invite_id,
            &req.member_pk,
            &req.member_xpk,
            &req.peer_pk,
            &req.name,
            req.ts_ms,
        );
        crate::crypto::verify(&req.member_pk, &sig_input, &req.sig).map_err(|_| Refusal {
            code: ErrorCode::BadSignature,
            message: "join request signature is invalid".into(),
        })?;
        hello_crypto::verify_cert(
            &req.member_pk,
            &payload.mesh_id,
            &req.peer_pk,
            &req.peer_xpk,
            &req.peer_cert,
        )
        .map_err(|_| Refusal {
            code: ErrorCode::BadSignature,
            message: "peer certificate is invalid".into(),
        })?;

        let _g = self.admin_lock.lock().await;
        let (member, peer, invite) = {
            let st = self.lock();
            let Some(mesh) = st.meshes.get(&payload.mesh_id) else {
                return refuse(
                    ErrorCode::UnknownMesh,
                    "this broker has no such mesh (was it created on another broker?)",
                );
            };
            if mesh.rec.owner_pk != payload.owner {
                return refuse(
                    ErrorCode::InviteInvalid,
                    "invite is not signed by this mesh's owner",
                );
            }
            let Some(inv) = st.invites.get(&payload.invite_id) else {
                return refuse(ErrorCode::InviteInvalid, "invite is unknown to this broker");
            };
            if inv.revoked {
                return refuse(ErrorCode::InviteInvalid, "invite has been revoked");
            }
            if let Some(existing) = mesh.members.get(&req.member_pk) {
                if existing.revoked {
                    return refuse(
                        ErrorCode::NotMember,
                        "this member was removed from the mesh",
                    );
                }
                return Ok(JoinReply {
                    mesh_id: mesh.rec.mesh_id,
                    mesh_name: mesh.rec.name.clone(),
                    name: existing.name.clone(),
                    role: existing.role,
                    already_member: true,
                });
            }
            let expires = inv.expires_ms.min(payload.expires_ms);
            if now >= expires {
                return refuse(
                    ErrorCode::InviteExpired,
                    format!("invite expired at {}", crate::util::rfc3339(expires)),
                );
            }
            if let Some(max) = inv.max_uses {
                if inv.uses >= max {
                    return refuse(
                        ErrorCode::InviteUsedUp,
                        format!("invite has been used up ({max} of {max} uses)"),
                    );
                }
            }
            if mesh.names.contains_key(&req.name) {
                return refuse(
                    ErrorCode::NameTaken,
                    format!(
                        "the name '{}' is already used in mesh '{}'; pick another with --name",
                        req.name, mesh.rec.name
                    ),
                );
            }
            if st.peers.contains_key(&req.peer_pk) {
                return refuse(ErrorCode::BadRequest, "peer key already registered");
            }
            let member = MemberRecord {
                mesh_id: payload.mesh_id,
                member_pk: req.member_pk,
                member_xpk: req.member_xpk,
                name: req.name.clone(),
                role: inv.role,
                joined_ms: now,
                revoked: false,
            };
            let peer = PeerRecord {
                peer_pk: req.peer_pk,
                peer_xpk: req.peer_xpk,
                mesh_id: payload.mesh_id,
                member_pk: req.member_pk,
                name: req.name.clone(),
                session_id: "cli".into(),
                groups: vec![],
                summary: String::new(),
                hostname: String::new(),
                cwd: String::new(),
                status: Status::Idle,
                last_seen_ms: 0,
                profile: Profile::default(),
                visible: true,
            };
            let mut inv = inv.clone();
            inv.uses += 1;
            (member, peer, inv)
        };
        // One transaction: the use is counted if and only if the member exists.
        self.store
            .commit(Op::Batch(vec![
                Op::PutInvite(invite.clone()),
                Op::PutMember(member.clone()),
                Op::PutPeer(peer.clone()),
            ]))
            .await?;
        let mut st = self.lock();
        st.invites.insert(invite.invite_id, invite);
        let mesh_name = {
            let Some(mesh) = st.meshes.get_mut(&member.mesh_id) else {
                return refuse(ErrorCode::UnknownMesh, "mesh disappeared");
            };
            mesh.names.insert(
                member.name.clone(),
                NameOwner {
                    member: member.member_pk,
                    peer: Some(peer.peer_pk),
                },
            );
            mesh.members.insert(member.member_pk, member.clone());
            mesh.peers.insert(peer.peer_pk);
            mesh.rec.name.clone()
        };
        st.peers
            .insert(peer.peer_pk, PeerState::new(peer, self.cfg.rate_burst));
        tracing::info!(mesh = %mesh_name, member = %member.name, role = member.role.as_str(), "member joined");
        Ok(JoinReply {
            mesh_id: member.mesh_id,
            mesh_name,
            name: member.name,
            role: member.role,
            already_member: false,
        })
    }

    /// Remove a member (operator action): its record is marked revoked, its sessions are
    /// disconnected, and it can neither reconnect nor rejoin. Its name stays reserved.
    pub async fn remove_member(&self, mesh_name: &str, name: &str) -> Result<usize, Refusal> {
        let _g = self.admin_lock.lock().await;
        let rec = {
            let st = self.lock();
            let Some(mesh) = st
                .mesh_by_name
                .get(mesh_name)
                .and_then(|id| st.meshes.get(id))
            else {
                return refuse(
                    ErrorCode::UnknownMesh,
                    format!("no mesh named '{mesh_name}'"),
                );
            };
            let Some(m) = mesh.members.values().find(|m| m.name == name) else {
                return refuse(
                    ErrorCode::UnknownTarget,
                    format!("no member named '{name}' in mesh '{mesh_name}'"),
                );
            };
            if m.revoked {
                return refuse(
                    ErrorCode::BadRequest,
                    format!("'{name}' was already removed"),
                );
            }
            let mut m = m.clone();
            m.revoked = true;
            m
        };
        self.store.commit(Op::PutMember(rec.clone())).await?;
        let mut st = self.lock();
        let st = &mut *st;
        let Some(mesh) = st.meshes.get_mut(&rec.mesh_id) else {
            return Ok(0);
        };
        mesh.members.insert(rec.member_pk, rec.clone());
        let mut closed = 0;
        for pk in mesh.peers.iter() {
            let Some(p) = st.peers.get_mut(pk) else {
                continue;
            };
            if p.rec.member_pk != rec.member_pk {
                continue;
            }
            for c in p
                .push_conn
                .take()
                .into_iter()
                .chain(p.other_conns.drain(..))
            {
                let why = ServerFrame::error(
                    None,
                    ErrorCode::NotMember,
                    "you were removed from the mesh",
                );
                let _ = c.try_send(crate::broker::outbox::encode_msg(c.codec, &why));
                c.kill();
                closed += 1;
            }
        }
        tracing::info!(mesh = %mesh_name, member = %name, connections = closed, "member removed");
        Ok(closed)
    }
}
