//! The signed connection hello and the member → peer certificate.
//!
//! Signing inputs are plain concatenations with a domain prefix and u32 big-endian length
//! prefixes for variable fields, so other languages can build them (docs/PROTOCOL.md).

use super::{verify, CryptoError, Identity};
use crate::proto::{Hello, Id16, Key, Status, PROTOCOL_VERSION};

/// Bytes the member key signs to certify a peer (session) key.
pub fn cert_bytes(mesh_id: &Key, peer_pk: &Key, peer_xpk: &Key) -> Vec<u8> {
    let mut b = b"claudemesh/peer-cert/v1\0".to_vec();
    b.extend_from_slice(&mesh_id.0);
    b.extend_from_slice(&peer_pk.0);
    b.extend_from_slice(&peer_xpk.0);
    b
}

fn push_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Bytes the peer key signs in a hello.
pub fn hello_bytes(h: &Hello) -> Vec<u8> {
    let mut b = b"claudemesh/hello/v1\0".to_vec();
    b.extend_from_slice(&h.v.to_be_bytes());
    b.extend_from_slice(&h.mesh_id.0);
    b.extend_from_slice(&h.member_pk.0);
    b.extend_from_slice(&h.peer_pk.0);
    b.extend_from_slice(&h.peer_xpk.0);
    push_str(&mut b, &h.name);
    push_str(&mut b, &h.session_id);
    b.extend_from_slice(&h.ts_ms.to_be_bytes());
    b.extend_from_slice(&h.nonce.0);
    b
}

/// What a session says about itself when it connects.
pub struct HelloParams<'a> {
    pub mesh_id: Key,
    pub name: &'a str,
    pub session_id: &'a str,
    pub hostname: &'a str,
    pub cwd: &'a str,
    pub push: bool,
    pub status: Status,
}

/// Build a signed hello for `peer`, certified by `member`.
pub fn make_hello(member: &Identity, peer: &Identity, p: &HelloParams, ts_ms: u64) -> Hello {
    let mut h = Hello {
        v: PROTOCOL_VERSION,
        mesh_id: p.mesh_id,
        member_pk: member.public(),
        peer_pk: peer.public(),
        peer_xpk: peer.x_public(),
        cert: member.sign(&cert_bytes(&p.mesh_id, &peer.public(), &peer.x_public())),
        name: p.name.to_string(),
        session_id: p.session_id.to_string(),
        hostname: p.hostname.to_string(),
        cwd: p.cwd.to_string(),
        push: p.push,
        status: p.status,
        ts_ms,
        nonce: Id16::random(),
        sig: Default::default(),
    };
    h.sig = peer.sign(&hello_bytes(&h));
    h
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    #[error("hello timestamp is {0} ms away from the broker's clock (allowed: {1} ms)")]
    Stale(u64, u64),
    #[error("peer certificate is not signed by the member key")]
    BadCert,
    #[error("hello signature is invalid")]
    BadSignature,
}

/// Check a hello's freshness, certificate and signature (membership and replay are the
/// broker's job: they need its state).
pub fn verify_hello(h: &Hello, now_ms: u64, window_ms: u64) -> Result<(), HelloError> {
    let skew = now_ms.abs_diff(h.ts_ms);
    if skew > window_ms {
        return Err(HelloError::Stale(skew, window_ms));
    }
    verify_cert(&h.member_pk, &h.mesh_id, &h.peer_pk, &h.peer_xpk, &h.cert)
        .map_err(|_| HelloError::BadCert)?;
    verify(&h.peer_pk, &hello_bytes(h), &h.sig).map_err(|_| HelloError::BadSignature)
}

pub fn verify_cert(
    member_pk: &Key,
    mesh_id: &Key,
    peer_pk: &Key,
    peer_xpk: &Key,
    cert: &crate::proto::Sig,
) -> Result<(), CryptoError> {
    verify(member_pk, &cert_bytes(mesh_id, peer_pk, peer_xpk), cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> HelloParams<'static> {
        HelloParams {
            mesh_id: Key([1; 32]),
            name: "alice",
            session_id: "cli",
            hostname: "box",
            cwd: "/src",
            push: true,
            status: Status::Idle,
        }
    }

    #[test]
    fn fresh_signed_hello_verifies() {
        let m = Identity::generate();
        let p = m.derive(b"x", "cli");
        let h = make_hello(&m, &p, &params(), 1_000_000);
        assert_eq!(verify_hello(&h, 1_000_500, 60_000), Ok(()));
    }

    #[test]
    fn stale_forged_or_uncertified_hellos_fail() {
        let m = Identity::generate();
        let p = m.derive(b"x", "cli");
        let h = make_hello(&m, &p, &params(), 1_000_000);
        assert!(matches!(
            verify_hello(&h, 1_000_000 + 60_001, 60_000),
            Err(HelloError::Stale(..))
        ));
        let mut renamed = h.clone();
        renamed.name = "mallory".into();
        assert_eq!(
            verify_hello(&renamed, 1_000_000, 60_000),
            Err(HelloError::BadSignature)
        );
        // A peer key certified by someone else's member key.
        let other = Identity::generate();
        let mut h2 = make_hello(&other, &p, &params(), 1_000_000);
        h2.member_pk = m.public();
        assert_eq!(
            verify_hello(&h2, 1_000_000, 60_000),
            Err(HelloError::BadCert)
        );
    }
}
