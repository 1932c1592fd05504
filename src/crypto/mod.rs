//! Every key operation lives here; nothing else touches raw secret key bytes.
//!
//! - [`Identity`]: an ed25519 signing key plus an X25519 key (members and peers have one each).
//! - [`invite`]: signed invites with expiry, role, use limit, and the mesh key in a secret part.
//! - [`seal`]: DM sealing (X25519 + HKDF-SHA256 + XChaCha20-Poly1305) and mesh-key sealing.
//! - [`hello`]: the signed connection hello and the member→peer certificate.

pub mod hello;
pub mod invite;
pub mod seal;

use crate::proto::{Key, Sig};
use ed25519_dalek::{Signer, Verifier};
use hkdf::Hkdf;
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("bad signature")]
    BadSignature,
    #[error("invalid public key")]
    BadKey,
    #[error("could not decrypt: wrong key or tampered ciphertext")]
    Decrypt,
    #[error("malformed sealed payload: {0}")]
    Malformed(&'static str),
}

/// A keypair owner: ed25519 for signatures, X25519 for sealing.
#[derive(Clone)]
pub struct Identity {
    signing: ed25519_dalek::SigningKey,
    x: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Identity({})", self.public().short())
    }
}

impl Identity {
    pub fn generate() -> Self {
        Self::from_secrets(crate::util::random_bytes(), crate::util::random_bytes())
    }

    pub fn from_secrets(ed_seed: [u8; 32], x_secret: [u8; 32]) -> Self {
        Identity {
            signing: ed25519_dalek::SigningKey::from_bytes(&ed_seed),
            x: x25519_dalek::StaticSecret::from(x_secret),
        }
    }

    /// A deterministic child identity (a session's peer key under a member key):
    /// the same member, mesh and label always give the same keys.
    pub fn derive(&self, salt: &[u8], label: &str) -> Identity {
        let ikm = self.signing.to_bytes();
        let hk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let mut ed = [0u8; 32];
        let mut x = [0u8; 32];
        // 32-byte outputs are always within HKDF-SHA256's limit.
        let _ = hk.expand(
            format!("claudemesh/derive/ed25519/{label}").as_bytes(),
            &mut ed,
        );
        let _ = hk.expand(
            format!("claudemesh/derive/x25519/{label}").as_bytes(),
            &mut x,
        );
        Identity::from_secrets(ed, x)
    }

    /// The ed25519 public key.
    pub fn public(&self) -> Key {
        Key(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 public key.
    pub fn x_public(&self) -> Key {
        Key(x25519_dalek::PublicKey::from(&self.x).to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> Sig {
        Sig(self.signing.sign(msg).to_bytes())
    }

    /// Secret halves, for saving to a 0600 config file.
    pub fn secrets(&self) -> ([u8; 32], [u8; 32]) {
        (self.signing.to_bytes(), self.x.to_bytes())
    }

    pub(crate) fn dh(&self, their_x: &Key) -> [u8; 32] {
        self.x
            .diffie_hellman(&x25519_dalek::PublicKey::from(their_x.0))
            .to_bytes()
    }
}

/// Verify an ed25519 signature by `pk` over `msg`.
pub fn verify(pk: &Key, msg: &[u8], sig: &Sig) -> Result<(), CryptoError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.0).map_err(|_| CryptoError::BadKey)?;
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
        .map_err(|_| CryptoError::BadSignature)
}

/// SHA-256 with a domain-separation prefix.
pub fn hash(domain: &str, parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0u8]);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_identities_are_stable_and_distinct_per_label() {
        let m = Identity::from_secrets([1; 32], [2; 32]);
        let a1 = m.derive(b"mesh", "session-a");
        let a2 = m.derive(b"mesh", "session-a");
        let b = m.derive(b"mesh", "session-b");
        assert_eq!(a1.public(), a2.public());
        assert_eq!(a1.x_public(), a2.x_public());
        assert_ne!(a1.public(), b.public());
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let id = Identity::generate();
        let sig = id.sign(b"hello");
        assert!(verify(&id.public(), b"hello", &sig).is_ok());
        assert_eq!(
            verify(&id.public(), b"hellO", &sig),
            Err(CryptoError::BadSignature)
        );
        let other = Identity::generate();
        assert!(verify(&other.public(), b"hello", &sig).is_err());
    }
}
