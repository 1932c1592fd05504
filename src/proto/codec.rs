//! Encoding frames as JSON text or postcard binary, and decoding them with clear errors.

use serde::{de::DeserializeOwned, Serialize};

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Binary,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed binary frame: {0}")]
    Binary(#[from] postcard::Error),
    #[error("{0} frame on a {1} connection")]
    WrongKind(&'static str, &'static str),
}

impl Codec {
    /// Pick the codec from a requested `Sec-WebSocket-Protocol` list.
    pub fn negotiate(requested: Option<&str>) -> (Codec, Option<&'static str>) {
        let Some(list) = requested else {
            return (Codec::Json, None);
        };
        let wants = |p: &str| list.split(',').any(|x| x.trim() == p);
        if wants(super::SUBPROTOCOL_BINARY) {
            (Codec::Binary, Some(super::SUBPROTOCOL_BINARY))
        } else if wants(super::SUBPROTOCOL_JSON) {
            (Codec::Json, Some(super::SUBPROTOCOL_JSON))
        } else {
            (Codec::Json, None)
        }
    }

    /// Encode a value. Encoding our own frame types cannot fail; should a serializer ever
    /// report an error we return an empty buffer and log it rather than panic.
    pub fn encode<T: Serialize>(self, v: &T) -> bytes::Bytes {
        let r = match self {
            Codec::Json => serde_json::to_vec(v).map_err(|e| e.to_string()),
            Codec::Binary => postcard::to_allocvec(v).map_err(|e| e.to_string()),
        };
        match r {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::error!(error = %e, "frame encoding failed");
                bytes::Bytes::new()
            }
        }
    }

    pub fn decode<T: DeserializeOwned>(self, data: &[u8]) -> Result<T, DecodeError> {
        match self {
            Codec::Json => Ok(serde_json::from_slice(data)?),
            Codec::Binary => Ok(postcard::from_bytes(data)?),
        }
    }

    /// The id of a request frame whose body did not decode (an unknown kind, a missing or
    /// mistyped argument), so its one reply can still name it: `req.id` in JSON; in
    /// postcard the `req` tag followed by the id, which come before the body.
    pub fn peek_req_id(self, data: &[u8]) -> Option<super::ReqId> {
        match self {
            Codec::Json => {
                #[derive(serde::Deserialize)]
                struct Outer {
                    req: Inner,
                }
                #[derive(serde::Deserialize)]
                struct Inner {
                    id: super::ReqId,
                }
                serde_json::from_slice::<Outer>(data).ok().map(|o| o.req.id)
            }
            Codec::Binary => {
                let (tag, rest) = postcard::take_from_bytes::<u32>(data).ok()?;
                (tag == REQ_TAG).then_some(())?;
                postcard::take_from_bytes::<super::ReqId>(rest)
                    .ok()
                    .map(|(id, _)| id)
            }
        }
    }
}

/// postcard's variant index of `ClientFrame::Req` (hello 0, ack 1, req 2); pinned by the
/// wire snapshot test.
const REQ_TAG: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::*;

    fn sample_send() -> ClientFrame {
        ClientFrame::Req(Req {
            id: 7,
            body: Request::Msg(msg::Request::Send {
                msg_id: Id16([1; 16]),
                priority: Priority::Now,
                reply_to: None,
                envelopes: vec![
                    Envelope {
                        to: Target::Peer(Key([2; 32])),
                        sealed: Sealed {
                            nonce: Blob(vec![4; 24].into()),
                            ct: Blob(vec![5; 40].into()),
                        },
                    },
                    Envelope {
                        to: Target::Broadcast,
                        sealed: Sealed {
                            nonce: Blob(vec![6; 24].into()),
                            ct: Blob(vec![7; 17].into()),
                        },
                    },
                ],
            }),
        })
    }

    #[test]
    fn both_codecs_round_trip_a_send_frame() {
        let f = sample_send();
        for c in [Codec::Json, Codec::Binary] {
            let b = c.encode(&f);
            let back: ClientFrame = c.decode(&b).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn json_frames_use_readable_tags_hex_keys_and_base64_blobs() {
        let v: serde_json::Value =
            serde_json::from_slice(&Codec::Json.encode(&sample_send())).unwrap();
        assert_eq!(v["req"]["id"], 7);
        let send = &v["req"]["body"]["msg"]["send"];
        assert_eq!(send["priority"], "now");
        assert_eq!(send["envelopes"][0]["to"]["peer"], hex::encode([2u8; 32]));
        assert_eq!(send["envelopes"][1]["to"], "broadcast");
        assert_eq!(send["msg_id"], hex::encode([1u8; 16]));
        assert!(send["envelopes"][0]["sealed"]["ct"].is_string());
    }

    #[test]
    fn a_request_whose_body_does_not_decode_still_yields_its_id_in_both_codecs() {
        assert_eq!(
            Codec::Json.peek_req_id(br#"{"req":{"id":41,"body":{"nope":{}}}}"#),
            Some(41)
        );
        assert_eq!(Codec::Json.peek_req_id(br#"{"ack":{"ids":[]}}"#), None);
        let mut b = Codec::Binary.encode(&sample_send()).to_vec();
        b.truncate(3); // tag, id, and a cut body
        assert!(Codec::Binary.decode::<ClientFrame>(&b).is_err());
        assert_eq!(Codec::Binary.peek_req_id(&b), Some(7));
        let ack = Codec::Binary.encode(&ClientFrame::Ack { ids: vec![] });
        assert_eq!(Codec::Binary.peek_req_id(&ack), None);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(Codec::Json.decode::<ClientFrame>(b"{\"req\":{").is_err());
        assert!(Codec::Json.decode::<ClientFrame>(b"\xff\xfe").is_err());
        assert!(Codec::Binary.decode::<ClientFrame>(&[200, 1, 2]).is_err());
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"ack":{"ids":["zz"]}}"#)
            .is_err());
    }

    #[test]
    fn subprotocol_negotiation_prefers_binary_and_defaults_to_json() {
        use crate::proto::{SUBPROTOCOL_BINARY as BIN, SUBPROTOCOL_JSON as JSON};
        assert_eq!(Codec::negotiate(None).0, Codec::Json);
        assert_eq!(
            Codec::negotiate(Some(&format!("{JSON}, {BIN}"))).0,
            Codec::Binary
        );
        assert_eq!(Codec::negotiate(Some("other")), (Codec::Json, None));
        // A client of another release offering a binary encoding this broker does not
        // know, and this release's JSON, gets JSON.
        assert_eq!(
            Codec::negotiate(Some(&format!("claudemesh.v2.postcard, {JSON}"))),
            (Codec::Json, Some(JSON))
        );
        // Only another release's encodings: nothing chosen (the broker then closes with
        // an "upgrade claudemesh" reason).
        assert_eq!(
            Codec::negotiate(Some("claudemesh.v3.postcard, claudemesh.v1.json")),
            (Codec::Json, None)
        );
    }
}
