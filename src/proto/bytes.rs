//! Byte-string wrappers that serialize as hex/base64 text in JSON and as raw bytes in postcard.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A 32-byte key or id (ed25519/x25519 public key, mesh id). Hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub [u8; 32]);

/// A 16-byte id (message id, invite id, hello nonce). Hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id16(pub [u8; 16]);

/// A 64-byte ed25519 signature. Hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 64]);

/// Opaque bytes (ciphertext, nonces). Base64url (no padding) in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub bytes::Bytes);

impl Key {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn parse_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Key(v.try_into().ok()?))
    }
    /// First 8 hex chars, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl Id16 {
    pub fn random() -> Self {
        Id16(crate::util::random_bytes())
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn parse_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Id16(v.try_into().ok()?))
    }
}

impl Default for Sig {
    fn default() -> Self {
        Sig([0; 64])
    }
}

macro_rules! fixed_serde {
    ($t:ident, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> de::Visitor<'de> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "{} bytes (hex in JSON)", $n)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        let b = hex::decode(v).map_err(|_| E::custom("invalid hex"))?;
                        self.visit_bytes(&b)
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$t, E> {
                        let a: [u8; $n] = v.try_into().map_err(|_| {
                            E::custom(concat!("expected ", stringify!($n), " bytes"))
                        })?;
                        Ok($t(a))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "{}({})",
                    stringify!($t),
                    hex::encode(&self.0[..8.min($n)])
                )
            }
        }
    };
}
fixed_serde!(Key, 32);
fixed_serde!(Id16, 16);
fixed_serde!(Sig, 64);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::util::b64(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes (base64url in JSON)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
                crate::util::unb64(v)
                    .map(|b| Blob(b.into()))
                    .ok_or_else(|| E::custom("invalid base64url"))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(bytes::Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v.into()))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}
