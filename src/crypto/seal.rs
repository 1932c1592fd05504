//! Sealing message payloads end to end.
//!
//! DM: the two peers' static X25519 keys give a pair key,
//! `HKDF-SHA256(ikm = X25519(s, R), salt = min(S, R) ‖ max(S, R), info = "claudemesh/dm/v1")`,
//! the same in both directions, so only the two of them can open it. It is computed once per
//! peer pair and cached ([`PairKeys`]); each message then costs one AEAD call.
//! Group/broadcast: key = HKDF-SHA256(ikm = mesh key, info = "claudemesh/group/v1").
//! Both use XChaCha20-Poly1305 with a random 24-byte nonce (safe to pick at random under a
//! long-lived key); the associated data binds the message id, the sender's peer key and the
//! target, so the broker cannot re-address or re-attribute a payload, and a DM cannot be
//! replayed in the other direction.

use super::{CryptoError, Identity};
use crate::proto::{Blob, Id16, Key, Sealed, Target};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;

/// What is inside a sealed envelope (encoded as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain {
    pub text: String,
    pub sent_at_ms: u64,
    /// Set on a message the broker delivers later for its sender (`schedules`); absent on
    /// an ordinary message, whose bytes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<PlainSchedule>,
}

/// What a scheduled message says about its schedule, sealed with it (so the broker cannot
/// make an ordinary message look scheduled, or a one-time one recurring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainSchedule {
    /// The schedule's id (the id the payload is sealed under).
    pub id: Id16,
    /// When a one-time schedule is due (the sender's clock); `None` for recurring ones,
    /// whose firing's due minute is in its message id.
    #[serde(default)]
    pub due_at_ms: Option<u64>,
    /// Delivered at every match of a cron expression, each firing under its own id.
    #[serde(default)]
    pub recurring: bool,
    /// Its times are on the mesh's simulation clock (absent on wall-time schedules).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mesh_time: bool,
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

fn seal_with(cipher: &XChaCha20Poly1305, plain: &Plain, aad: &[u8], nonce: [u8; 24]) -> Sealed {
    let msg = encode_plain(plain);
    // Encryption with a valid key and an in-memory buffer does not fail.
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &msg, aad })
        .unwrap_or_default();
    Sealed {
        nonce: Blob(nonce.to_vec().into()),
        ct: Blob(ct.into()),
    }
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    sealed: &Sealed,
    aad: &[u8],
) -> Result<Plain, CryptoError> {
    if sealed.nonce.0.len() != 24 {
        return Err(CryptoError::Malformed("nonce must be 24 bytes"));
    }
    let pt = cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce.0),
            Payload {
                msg: &sealed.ct.0,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)?;
    serde_json::from_slice(&pt).map_err(|_| CryptoError::Malformed("payload is not a message"))
}

/// The DM key shared by `me` and the peer whose X25519 key is `their_x`.
pub fn pair_cipher(me: &Identity, their_x: &Key) -> XChaCha20Poly1305 {
    let mine = me.x_public();
    let (lo, hi) = if mine.0 <= their_x.0 {
        (mine, *their_x)
    } else {
        (*their_x, mine)
    };
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&lo.0);
    salt[32..].copy_from_slice(&hi.0);
    aead_key(&me.dh(their_x), Some(&salt), b"claudemesh/dm/v1")
}

/// A per-identity cache of pair keys (one X25519 per peer pair, not per message).
pub struct PairKeys {
    me: Identity,
    cache: HashMap<Key, XChaCha20Poly1305>,
}

/// Cap on cached pair keys; the cache is simply cleared when it grows past this.
const PAIR_CACHE_MAX: usize = 4096;

impl PairKeys {
    pub fn new(me: Identity) -> Self {
        PairKeys {
            me,
            cache: HashMap::new(),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.me
    }

    fn cipher(&mut self, their_x: &Key) -> &XChaCha20Poly1305 {
        if self.cache.len() >= PAIR_CACHE_MAX && !self.cache.contains_key(their_x) {
            self.cache.clear();
        }
        let me = &self.me;
        self.cache
            .entry(*their_x)
            .or_insert_with(|| pair_cipher(me, their_x))
    }

    /// Seal a DM to the peer with keys (`rcpt_pk`, `rcpt_xpk`).
    pub fn seal_dm(
        &mut self,
        rcpt_pk: &Key,
        rcpt_xpk: &Key,
        msg_id: &Id16,
        plain: &Plain,
    ) -> Sealed {
        let aad = aad(msg_id, &self.me.public(), &Target::Peer(*rcpt_pk));
        seal_with(
            self.cipher(rcpt_xpk),
            plain,
            &aad,
            crate::util::random_bytes(),
        )
    }

    /// Open a DM addressed to us from the peer with keys (`from_pk`, `from_xpk`).
    pub fn open_dm(
        &mut self,
        from_pk: &Key,
        from_xpk: &Key,
        msg_id: &Id16,
        sealed: &Sealed,
    ) -> Result<Plain, CryptoError> {
        let aad = aad(msg_id, from_pk, &Target::Peer(self.me.public()));
        open_with(self.cipher(from_xpk), sealed, &aad)
    }
}

/// Seal a DM (uncached; see [`PairKeys`] for repeated use).
pub fn seal_dm(
    sender: &Identity,
    rcpt_pk: &Key,
    rcpt_xpk: &Key,
    msg_id: &Id16,
    plain: &Plain,
) -> Sealed {
    seal_dm_fixed(
        sender,
        rcpt_pk,
        rcpt_xpk,
        msg_id,
        plain,
        crate::util::random_bytes(),
    )
}

/// [`seal_dm`] with a caller-chosen nonce: for test vectors.
#[doc(hidden)]
pub fn seal_dm_fixed(
    sender: &Identity,
    rcpt_pk: &Key,
    rcpt_xpk: &Key,
    msg_id: &Id16,
    plain: &Plain,
    nonce: [u8; 24],
) -> Sealed {
    let aad = aad(msg_id, &sender.public(), &Target::Peer(*rcpt_pk));
    seal_with(&pair_cipher(sender, rcpt_xpk), plain, &aad, nonce)
}

/// Open a DM addressed to `me` (uncached).
pub fn open_dm(
    me: &Identity,
    from_pk: &Key,
    from_xpk: &Key,
    msg_id: &Id16,
    sealed: &Sealed,
) -> Result<Plain, CryptoError> {
    open_with(
        &pair_cipher(me, from_xpk),
        sealed,
        &aad(msg_id, from_pk, &Target::Peer(me.public())),
    )
}

/// The group/broadcast cipher for a mesh key.
pub fn group_cipher(mesh_key: &[u8; 32]) -> XChaCha20Poly1305 {
    aead_key(mesh_key, None, b"claudemesh/group/v1")
}

/// Seal a group or broadcast message with the mesh key.
pub fn seal_group(
    mesh_key: &[u8; 32],
    from_pk: &Key,
    target: &Target,
    msg_id: &Id16,
    plain: &Plain,
) -> Sealed {
    seal_group_fixed(
        mesh_key,
        from_pk,
        target,
        msg_id,
        plain,
        crate::util::random_bytes(),
    )
}

/// [`seal_group`] with a caller-chosen nonce: for test vectors.
#[doc(hidden)]
pub fn seal_group_fixed(
    mesh_key: &[u8; 32],
    from_pk: &Key,
    target: &Target,
    msg_id: &Id16,
    plain: &Plain,
    nonce: [u8; 24],
) -> Sealed {
    seal_with(
        &group_cipher(mesh_key),
        plain,
        &aad(msg_id, from_pk, target),
        nonce,
    )
}

/// Open a group or broadcast message with the mesh key.
pub fn open_group(
    mesh_key: &[u8; 32],
    from_pk: &Key,
    target: &Target,
    msg_id: &Id16,
    sealed: &Sealed,
) -> Result<Plain, CryptoError> {
    open_with(
        &group_cipher(mesh_key),
        sealed,
        &aad(msg_id, from_pk, target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Plain {
        Plain {
            text: "the build is green".into(),
            sent_at_ms: 42,
            schedule: None,
        }
    }

    #[test]
    fn dm_opens_only_for_its_recipient() {
        let a = Identity::generate();
        let b = Identity::generate();
        let c = Identity::generate();
        let id = Id16::random();
        let s = seal_dm(&a, &b.public(), &b.x_public(), &id, &plain());
        assert_eq!(
            open_dm(&b, &a.public(), &a.x_public(), &id, &s).unwrap(),
            plain()
        );
        assert_eq!(
            open_dm(&c, &a.public(), &a.x_public(), &id, &s),
            Err(CryptoError::Decrypt)
        );
        assert!(!s.ct.0.windows(10).any(|w| w == b"build is g"));
    }

    #[test]
    fn cached_pair_keys_interoperate_with_uncached_ones() {
        let a = Identity::generate();
        let b = Identity::generate();
        let mut ka = PairKeys::new(a.clone());
        let mut kb = PairKeys::new(b.clone());
        for _ in 0..3 {
            let id = Id16::random();
            let s = ka.seal_dm(&b.public(), &b.x_public(), &id, &plain());
            assert_eq!(
                kb.open_dm(&a.public(), &a.x_public(), &id, &s).unwrap(),
                plain()
            );
            assert_eq!(
                open_dm(&b, &a.public(), &a.x_public(), &id, &s).unwrap(),
                plain()
            );
            let back = kb.seal_dm(&a.public(), &a.x_public(), &id, &plain());
            assert_eq!(
                ka.open_dm(&b.public(), &b.x_public(), &id, &back).unwrap(),
                plain()
            );
        }
    }

    #[test]
    fn dm_rejects_tampering_readdressing_and_reflection() {
        let a = Identity::generate();
        let b = Identity::generate();
        let id = Id16::random();
        let mut s = seal_dm(&a, &b.public(), &b.x_public(), &id, &plain());
        assert!(open_dm(&b, &a.public(), &a.x_public(), &Id16::random(), &s).is_err());
        let m = Identity::generate();
        assert!(open_dm(&b, &m.public(), &m.x_public(), &id, &s).is_err());
        // Reflected back to its sender as if b had sent it: the AAD direction differs.
        assert!(open_dm(&a, &b.public(), &b.x_public(), &id, &s).is_err());
        let mut ct = s.ct.0.to_vec();
        ct[0] ^= 1;
        s.ct = Blob(ct.into());
        assert_eq!(
            open_dm(&b, &a.public(), &a.x_public(), &id, &s),
            Err(CryptoError::Decrypt)
        );
        s.nonce = Blob(vec![0; 3].into());
        assert!(matches!(
            open_dm(&b, &a.public(), &a.x_public(), &id, &s),
            Err(CryptoError::Malformed(_))
        ));
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
