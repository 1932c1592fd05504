//! Entry points for fuzzing every parser a peer (or a pasted invite) can reach. Each must
//! return without panicking for any input. Used by the cargo-fuzz targets in fuzz/ and by
//! tests/fuzz_corpus.rs, which replays the checked-in corpora in every test run.

use crate::crypto::{hello, invite, seal, Identity};
use crate::proto::{
    ClientFrame, Codec, Hello, Id16, JoinRequest, Key, Sealed, ServerFrame, Target,
};

/// A JSON text frame, as the broker (client frames) and the client (server frames) parse it.
pub fn frame_json(data: &[u8]) {
    let _ = Codec::Json.decode::<ClientFrame>(data);
    let _ = Codec::Json.decode::<ServerFrame>(data);
    let _ = Codec::Json.peek_req_id(data);
}

/// A postcard binary frame, both directions; re-encoding what decodes must round-trip.
pub fn frame_binary(data: &[u8]) {
    if let Ok(f) = Codec::Binary.decode::<ClientFrame>(data) {
        let again: ClientFrame = Codec::Binary
            .decode(&Codec::Binary.encode(&f))
            .expect("re-encoded frame decodes");
        assert_eq!(again, f);
    }
    let _ = Codec::Binary.decode::<ServerFrame>(data);
    let _ = Codec::Binary.peek_req_id(data);
}

/// An invite link or its signed part.
pub fn invite(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(inv) = invite::parse_link(s) {
            let _ = inv.payload.check_expiry(0);
        }
        let _ = invite::parse_signed(s);
    }
}

fn fixed_ids() -> (Identity, Identity) {
    (
        Identity::from_secrets([1; 32], [2; 32]),
        Identity::from_secrets([3; 32], [4; 32]),
    )
}

/// A sealed payload (postcard) opened as a DM and as a group message.
pub fn open_sealed(data: &[u8]) {
    let Ok(s) = postcard::from_bytes::<Sealed>(data) else {
        return;
    };
    let (a, b) = fixed_ids();
    let id = Id16([5; 16]);
    let _ = seal::open_dm(&b, &a.public(), &a.x_public(), &id, &s);
    let _ = seal::open_group(&[6; 32], &a.public(), &Target::Broadcast, &id, &s);
    let mut keys = seal::PairKeys::new(b);
    let _ = keys.open_dm(&a.public(), &Key(a.x_public().0), &id, &s);
}

/// A hello (postcard or JSON) through signature and freshness checks.
pub fn hello(data: &[u8]) {
    let parsed = postcard::from_bytes::<Hello>(data)
        .ok()
        .or_else(|| serde_json::from_slice::<Hello>(data).ok());
    if let Some(h) = parsed {
        let _ = hello::hello_bytes(&h);
        let _ = hello::verify_hello(&h, h.ts_ms, 60_000);
        let _ = hello::verify_hello(&h, 1_764_374_400_000, 60_000);
    }
}

/// The `POST /join` body and the admin socket's request line.
pub fn json_requests(data: &[u8]) {
    if let Ok(j) = serde_json::from_slice::<JoinRequest>(data) {
        let _ = invite::parse_signed(&j.invite);
    }
    let _ = serde_json::from_slice::<crate::proto::admin::AdminRequest>(data);
}

/// Every target, by name (for the corpus replay).
/// A fuzz target: its name and body.
pub type FuzzTarget = (&'static str, fn(&[u8]));

pub const TARGETS: &[FuzzTarget] = &[
    ("frame_json", frame_json),
    ("frame_binary", frame_binary),
    ("invite", invite),
    ("open_sealed", open_sealed),
    ("hello", hello),
    ("json_requests", json_requests),
];
