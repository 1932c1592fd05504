//! Signed invites: `claudemesh://join/<payload>.<signature>#<mesh key>`.
//!
//! The payload (JSON, base64url) names the broker, mesh, owner key, role, expiry and use
//! limit, and commits to the mesh key by hash. The owner signs the exact payload bytes.
//! The part after `#` is the mesh key; it is never sent to the broker. Changing either part
//! is detected: the signature covers the payload, and the payload's commit covers the key.

use super::{hash, verify, Identity};
use crate::proto::{Id16, Key, Role, Sig};
use crate::util::{b64, unb64};
use serde::{Deserialize, Serialize};

pub const LINK_PREFIX: &str = "claudemesh://join/";
const SIGN_DOMAIN: &[u8] = b"claudemesh/invite/v1\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePayload {
    pub v: u32,
    /// Base URL of the broker, e.g. `http://127.0.0.1:7900`.
    pub broker: String,
    pub mesh_id: Key,
    pub mesh: String,
    pub owner: Key,
    pub invite_id: Id16,
    pub role: Role,
    pub expires_ms: u64,
    pub max_uses: Option<u32>,
    /// SHA-256 commitment to the mesh key (see [`key_commit`]).
    pub key_commit: Key,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    #[error("not a claudemesh invite: {0}")]
    Malformed(&'static str),
    #[error("invite signature is invalid (the invite was altered)")]
    BadSignature,
    #[error("invite secret does not match its signed part (the invite was altered)")]
    KeyMismatch,
    #[error("invite has no secret part (everything after '#' is missing)")]
    MissingSecret,
    #[error("invite expired at {0}")]
    Expired(String),
}

/// A parsed, signature-checked invite.
#[derive(Debug, Clone)]
pub struct Invite {
    pub payload: InvitePayload,
    /// `<payload>.<signature>`, what is sent to the broker.
    pub signed_part: String,
    pub mesh_key: Option<[u8; 32]>,
}

pub fn key_commit(mesh_key: &[u8; 32]) -> Key {
    Key(hash("claudemesh/mesh-key-commit/v1", &[mesh_key]))
}

/// Create an invite link signed by the mesh owner.
pub fn create(owner: &Identity, payload: &InvitePayload, mesh_key: &[u8; 32]) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let sig = owner.sign(&[SIGN_DOMAIN, &bytes].concat());
    format!(
        "{LINK_PREFIX}{}.{}#{}",
        b64(&bytes),
        b64(&sig.0),
        b64(mesh_key)
    )
}

/// Parse and verify the signed part `<payload>.<signature>` (what the broker sees).
/// The signature is checked against the owner key inside the payload; the broker must also
/// check that key is the mesh's owner.
pub fn parse_signed(signed: &str) -> Result<InvitePayload, InviteError> {
    let (p, s) = signed
        .trim()
        .split_once('.')
        .ok_or(InviteError::Malformed("missing '.'"))?;
    let payload_bytes = unb64(p).ok_or(InviteError::Malformed("payload is not base64url"))?;
    let sig: [u8; 64] = unb64(s)
        .and_then(|v| v.try_into().ok())
        .ok_or(InviteError::Malformed(
            "signature is not 64 base64url bytes",
        ))?;
    let payload: InvitePayload = serde_json::from_slice(&payload_bytes)
        .map_err(|_| InviteError::Malformed("payload is not invite JSON"))?;
    verify(
        &payload.owner,
        &[SIGN_DOMAIN, &payload_bytes].concat(),
        &Sig(sig),
    )
    .map_err(|_| InviteError::BadSignature)?;
    Ok(payload)
}

/// Parse a full link (with or without the `claudemesh://join/` prefix) and verify it.
pub fn parse_link(link: &str) -> Result<Invite, InviteError> {
    let rest = link.trim();
    let rest = rest.strip_prefix(LINK_PREFIX).unwrap_or(rest);
    let (signed, secret) = match rest.split_once('#') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let payload = parse_signed(signed)?;
    let mesh_key = match secret {
        Some(s) if !s.is_empty() => {
            let k: [u8; 32] = unb64(s)
                .and_then(|v| v.try_into().ok())
                .ok_or(InviteError::Malformed("secret part is not a 32-byte key"))?;
            if key_commit(&k) != payload.key_commit {
                return Err(InviteError::KeyMismatch);
            }
            Some(k)
        }
        _ => None,
    };
    Ok(Invite {
        payload,
        signed_part: signed.to_string(),
        mesh_key,
    })
}

impl InvitePayload {
    pub fn check_expiry(&self, now_ms: u64) -> Result<(), InviteError> {
        if now_ms >= self.expires_ms {
            return Err(InviteError::Expired(crate::util::rfc3339(self.expires_ms)));
        }
        Ok(())
    }
}

/// Bytes a joining member signs to prove it holds its key.
pub fn join_bytes(
    invite_id: &Id16,
    member_pk: &Key,
    member_xpk: &Key,
    peer_pk: &Key,
    name: &str,
    ts_ms: u64,
) -> Vec<u8> {
    let mut b = b"claudemesh/join/v1\0".to_vec();
    b.extend_from_slice(&invite_id.0);
    b.extend_from_slice(&member_pk.0);
    b.extend_from_slice(&member_xpk.0);
    b.extend_from_slice(&peer_pk.0);
    b.extend_from_slice(&ts_ms.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(owner: &Identity, key: &[u8; 32]) -> InvitePayload {
        InvitePayload {
            v: 1,
            broker: "http://127.0.0.1:7900".into(),
            mesh_id: Key([5; 32]),
            mesh: "team".into(),
            owner: owner.public(),
            invite_id: Id16([6; 16]),
            role: Role::Member,
            expires_ms: 2_000_000_000_000,
            max_uses: Some(3),
            key_commit: key_commit(key),
        }
    }

    #[test]
    fn invite_round_trips_with_its_secret() {
        let owner = Identity::generate();
        let key = [7u8; 32];
        let link = create(&owner, &sample(&owner, &key), &key);
        assert!(link.starts_with(LINK_PREFIX));
        let inv = parse_link(&link).unwrap();
        assert_eq!(inv.mesh_key, Some(key));
        assert_eq!(inv.payload, sample(&owner, &key));
        assert!(!inv.signed_part.contains('#'));
    }

    #[test]
    fn tampered_payload_or_secret_is_detected() {
        let owner = Identity::generate();
        let key = [7u8; 32];
        let link = create(&owner, &sample(&owner, &key), &key);
        let (signed, _) = link.split_once('#').unwrap();
        assert_eq!(
            parse_link(&format!("{signed}#{}", b64(&[8u8; 32]))).unwrap_err(),
            InviteError::KeyMismatch
        );

        // Re-encode the payload with an admin role but keep the old signature.
        let mut p = sample(&owner, &key);
        p.role = Role::Admin;
        let sig = link[LINK_PREFIX.len()..]
            .split('.')
            .nth(1)
            .unwrap()
            .split('#')
            .next()
            .unwrap();
        let forged = format!(
            "{LINK_PREFIX}{}.{sig}#{}",
            b64(&serde_json::to_vec(&p).unwrap()),
            b64(&key)
        );
        assert_eq!(parse_link(&forged).unwrap_err(), InviteError::BadSignature);

        assert!(matches!(
            parse_link("claudemesh://join/garbage"),
            Err(InviteError::Malformed(_))
        ));
        assert!(matches!(parse_link(""), Err(InviteError::Malformed(_))));
    }

    #[test]
    fn expiry_is_enforced() {
        let owner = Identity::generate();
        let p = sample(&owner, &[0; 32]);
        assert!(p.check_expiry(p.expires_ms - 1).is_ok());
        assert!(matches!(
            p.check_expiry(p.expires_ms),
            Err(InviteError::Expired(_))
        ));
    }
}
