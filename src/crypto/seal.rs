//! Sealing message payloads end to end.
//!
//! DM: the sender makes an ephemeral X25519 key; key = HKDF-SHA256(ikm = DH(eph, rcpt) ||
//! DH(sender, rcpt), salt = eph_pub || sender_xpub || rcpt_xpub, info = "claudemesh/dm/v1"),
//! so only the recipient can open it and only the sender's X25519 key could have made it.
//! Group/broadcast: key = HKDF-SHA256(ikm = mesh key, info = "claudemesh/group/v1").
//! Both use XChaCha20-Poly1305 with a random 24-byte nonce; the associated data binds the
//! message id, the sender's peer key and the target, so the broker cannot re-address a payload.

use super::{CryptoError, Identity};
use crate::proto::{Blob, Id16, Key, Sealed, Target};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What is inside a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain {
    pub text: String,
    pub sent_at_ms: u64,
}

fn aad(msg_id: &Id16, from: &Key, to: &Target) -> Vec<u8> {
    let mut a = Vec::with_capacity(96);
    a.extend_from_slice(b"claudemesh/aad/v1");
    a.extend_from_slice(&msg_id.0);
    a.extend_from_slice(&from.0);
    match to {
        Target::Peer(k) => {
            a.push(1);
            a.extend_from_slice(&k.0);
        }
        Target::Group(g) => {
            a.push(2);
            a.extend_from_slice(g.as_bytes());
        }
        Target::Broadcast => a.push(3),
    }
    a
}

fn aead_key(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> XChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    let mut k = [0u8; 32];
    let _ = hk.expand(info, &mut k); // 32 bytes is always a valid HKDF-SHA256 length
    XChaCha20Poly1305::new(&k.into())
}

/// Size of the sealed plaintext for `p` (what the broker's per-message limit applies to).
pub fn plain_len(p: &Plain) -> usize {
    encode_plain(p).len()
}

/// The sealed plaintext is JSON (`{"text":..,"sent_at_ms":..}`), easy for any language.
fn encode_plain(p: &Plain) -> Vec<u8> {
    serde_json::to_vec(p).unwrap_or_default()
}

fn seal_with(cipher: &XChaCha20Poly1305, eph: Option<Key>, plain: &Plain, aad: &[u8]) -> Sealed {
    seal_with_nonce(cipher, eph, plain, aad, crate::util::random_bytes())
}

fn seal_with_nonce(cipher: &XChaCha20Poly1305, eph: Option<Key>, plain: &Plain, aad: &[u8], nonce: [u8; 24]) -> Sealed {
    let msg = encode_plain(plain);
    // Encryption with a valid key and in-memory buffer does not fail.
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &msg, aad })
        .unwrap_or_default();
    Sealed {
        eph,
        nonce: Blob(nonce.to_vec().into()),
        ct: Blob(ct.into()),
    }
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &Sealed, aad: &[u8]) -> Result<Plain, CryptoError> {
    if sealed.nonce.0.len() != 24 {
        return Err(CryptoError::Malformed("nonce must be 24 bytes"));
    }
    let pt = cipher
        .decrypt(XNonce::from_slice(&sealed.nonce.0), Payload { msg: &sealed.ct.0, aad })
        .map_err(|_| CryptoError::Decrypt)?;
    serde_json::from_slice(&pt).map_err(|_| CryptoError::Malformed("payload is not a message"))
}

fn dm_cipher(dh1: [u8; 32], dh2: [u8; 32], eph: &Key, sender_x: &Key, rcpt_x: &Key) -> XChaCha20Poly1305 {
    let mut ikm = [0u8; 64];
    ikm[..32].copy_from_slice(&dh1);
    ikm[32..].copy_from_slice(&dh2);
    let mut salt = [0u8; 96];
    salt[..32].copy_from_slice(&eph.0);
    salt[32..64].copy_from_slice(&sender_x.0);
    salt[64..].copy_from_slice(&rcpt_x.0);
    aead_key(&ikm, Some(&salt), b"claudemesh/dm/v1")
}

/// Seal a DM from `sender` (a peer identity) to the peer with keys (`rcpt_pk`, `rcpt_xpk`).
pub fn seal_dm(sender: &Identity, rcpt_pk: &Key, rcpt_xpk: &Key, msg_id: &Id16, plain: &Plain) -> Sealed {
    let eph = Identity::generate();
    let eph_pub = eph.x_public();
    let cipher = dm_cipher(eph.dh(rcpt_xpk), sender.dh(rcpt_xpk), &eph_pub, &sender.x_public(), rcpt_xpk);
    seal_with(&cipher, Some(eph_pub), plain, &aad(msg_id, &sender.public(), &Target::Peer(*rcpt_pk)))
}

/// [`seal_dm`] with a caller-chosen ephemeral secret and nonce: for test vectors only.
#[doc(hidden)]
pub fn seal_dm_fixed(sender: &Identity, rcpt_pk: &Key, rcpt_xpk: &Key, msg_id: &Id16, plain: &Plain, eph_secret: [u8; 32], nonce: [u8; 24]) -> Sealed {
    let eph = Identity::from_secrets([0; 32], eph_secret);
    let eph_pub = eph.x_public();
    let cipher = dm_cipher(eph.dh(rcpt_xpk), sender.dh(rcpt_xpk), &eph_pub, &sender.x_public(), rcpt_xpk);
    seal_with_nonce(&cipher, Some(eph_pub), plain, &aad(msg_id, &sender.public(), &Target::Peer(*rcpt_pk)), nonce)
}

/// [`seal_group`] with a caller-chosen nonce: for test vectors only.
#[doc(hidden)]
pub fn seal_group_fixed(mesh_key: &[u8; 32], from_pk: &Key, target: &Target, msg_id: &Id16, plain: &Plain, nonce: [u8; 24]) -> Sealed {
    seal_with_nonce(&group_cipher(mesh_key), None, plain, &aad(msg_id, from_pk, target), nonce)
}

/// Open a DM addressed to `me`, from the peer with keys (`from_pk`, `from_xpk`).
pub fn open_dm(me: &Identity, from_pk: &Key, from_xpk: &Key, msg_id: &Id16, sealed: &Sealed) -> Result<Plain, CryptoError> {
    let eph = sealed.eph.ok_or(CryptoError::Malformed("DM without ephemeral key"))?;
    let cipher = dm_cipher(me.dh(&eph), me.dh(from_xpk), &eph, from_xpk, &me.x_public());
    open_with(&cipher, sealed, &aad(msg_id, from_pk, &Target::Peer(me.public())))
}

fn group_cipher(mesh_key: &[u8; 32]) -> XChaCha20Poly1305 {
    aead_key(mesh_key, None, b"claudemesh/group/v1")
}

/// Seal a group or broadcast message with the mesh key.
pub fn seal_group(mesh_key: &[u8; 32], from_pk: &Key, target: &Target, msg_id: &Id16, plain: &Plain) -> Sealed {
    seal_with(&group_cipher(mesh_key), None, plain, &aad(msg_id, from_pk, target))
}

/// Open a group or broadcast message with the mesh key.
pub fn open_group(mesh_key: &[u8; 32], from_pk: &Key, target: &Target, msg_id: &Id16, sealed: &Sealed) -> Result<Plain, CryptoError> {
    open_with(&group_cipher(mesh_key), sealed, &aad(msg_id, from_pk, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Plain {
        Plain { text: "the build is green".into(), sent_at_ms: 42 }
    }

    #[test]
    fn dm_opens_only_for_its_recipient() {
        let a = Identity::generate();
        let b = Identity::generate();
        let c = Identity::generate();
        let id = Id16::random();
        let s = seal_dm(&a, &b.public(), &b.x_public(), &id, &plain());
        assert_eq!(open_dm(&b, &a.public(), &a.x_public(), &id, &s).unwrap(), plain());
        assert_eq!(open_dm(&c, &a.public(), &a.x_public(), &id, &s), Err(CryptoError::Decrypt));
        // The plaintext does not appear in the ciphertext.
        assert!(!s.ct.0.windows(10).any(|w| w == b"build is g"));
    }

    #[test]
    fn dm_rejects_tampering_and_readdressing() {
        let a = Identity::generate();
        let b = Identity::generate();
        let id = Id16::random();
        let mut s = seal_dm(&a, &b.public(), &b.x_public(), &id, &plain());
        // Wrong message id (the broker re-labelling) fails.
        assert!(open_dm(&b, &a.public(), &a.x_public(), &Id16::random(), &s).is_err());
        // Claimed sender that did not seal it fails.
        let m = Identity::generate();
        assert!(open_dm(&b, &m.public(), &m.x_public(), &id, &s).is_err());
        // Flipped ciphertext bit fails.
        let mut ct = s.ct.0.to_vec();
        ct[0] ^= 1;
        s.ct = Blob(ct.into());
        assert_eq!(open_dm(&b, &a.public(), &a.x_public(), &id, &s), Err(CryptoError::Decrypt));
        // Bad nonce length is a clear error.
        s.nonce = Blob(vec![0; 3].into());
        assert!(matches!(open_dm(&b, &a.public(), &a.x_public(), &id, &s), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn group_messages_open_with_the_mesh_key_and_bind_the_target() {
        let k = [9u8; 32];
        let from = Key([1; 32]);
        let id = Id16::random();
        let t = Target::Group("eng".into());
        let s = seal_group(&k, &from, &t, &id, &plain());
        assert_eq!(open_group(&k, &from, &t, &id, &s).unwrap(), plain());
        assert!(open_group(&[8u8; 32], &from, &t, &id, &s).is_err());
        assert!(open_group(&k, &from, &Target::Broadcast, &id, &s).is_err());
    }
}
