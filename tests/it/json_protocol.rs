//! A client written from docs/PROTOCOL.md alone: plain JSON frames, raw HTTP, and stock
//! crypto crates — no claudemesh client, proto or crypto code. (The operator side — making
//! the mesh and invite — and the second peer use the project, to prove interoperability.)

use crate::common;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use hkdf::Hkdf;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
fn rand<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).unwrap();
    b
}
fn unhex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// `POST path` with a JSON body over a bare TCP socket.
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8(resp).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn aad(msg_id: &[u8], from: &[u8], target: &Value) -> Vec<u8> {
    let mut a = b"claudemesh/aad/v1".to_vec();
    a.extend_from_slice(msg_id);
    a.extend_from_slice(from);
    if let Some(p) = target.get("peer") {
        a.push(1);
        a.extend_from_slice(&unhex32(p.as_str().unwrap()));
    } else if let Some(g) = target.get("group") {
        a.push(2);
        a.extend_from_slice(g.as_str().unwrap().as_bytes());
    } else {
        a.push(3);
    }
    a
}

fn dm_key(dh: [u8; 32], a: &[u8; 32], b: &[u8; 32]) -> XChaCha20Poly1305 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let salt = [&lo[..], &hi[..]].concat();
    let mut k = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), &dh)
        .expand(b"claudemesh/dm/v1", &mut k)
        .unwrap();
    XChaCha20Poly1305::new(&k.into())
}

fn group_key(mesh_key: &[u8; 32]) -> XChaCha20Poly1305 {
    let mut k = [0u8; 32];
    Hkdf::<Sha256>::new(None, mesh_key)
        .expand(b"claudemesh/group/v1", &mut k)
        .unwrap();
    XChaCha20Poly1305::new(&k.into())
}

async fn next_frame(ws: &mut common::RawWs, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v.get(kind).is_some() {
                return v[kind].clone();
            }
            assert!(v.get("error").is_none(), "unexpected error: {v}");
        }
    }
}

#[tokio::test]
async fn a_client_built_from_the_protocol_doc_joins_sends_and_receives() {
    let mesh = common::Mesh::start().await;
    let addr = mesh.server().addr;
    let bob = mesh.member("bob").await;
    let b = bob.connect().await;

    // --- Parse the invite (section 2).
    let rest = mesh.invite.strip_prefix("claudemesh://join/").unwrap();
    let (signed, secret) = rest.split_once('#').unwrap();
    let (payload_b64, _sig) = signed.split_once('.').unwrap();
    let payload: Value = serde_json::from_slice(&b64d(payload_b64)).unwrap();
    let mesh_key: [u8; 32] = b64d(secret).try_into().unwrap();
    let mut h = Sha256::new();
    h.update(b"claudemesh/mesh-key-commit/v1\0");
    h.update(32u64.to_be_bytes());
    h.update(mesh_key);
    assert_eq!(
        hex::encode(h.finalize()),
        payload["key_commit"],
        "key commitment as documented"
    );
    let mesh_id = unhex32(payload["mesh_id"].as_str().unwrap());
    let invite_id = hex::decode(payload["invite_id"].as_str().unwrap()).unwrap();

    // --- Keys (section 1).
    let member = SigningKey::from_bytes(&rand());
    let member_x = x25519_dalek::StaticSecret::from(rand::<32>());
    let peer = SigningKey::from_bytes(&rand());
    let peer_x = x25519_dalek::StaticSecret::from(rand::<32>());
    let (member_pk, peer_pk) = (
        member.verifying_key().to_bytes(),
        peer.verifying_key().to_bytes(),
    );
    let member_xpk = x25519_dalek::PublicKey::from(&member_x).to_bytes();
    let peer_xpk = x25519_dalek::PublicKey::from(&peer_x).to_bytes();
    let cert = member.sign(
        &[
            &b"claudemesh/peer-cert/v1\0"[..],
            &mesh_id,
            &peer_pk,
            &peer_xpk,
        ]
        .concat(),
    );

    // --- POST /join (section 3).
    let ts = now();
    let name = "polyglot";
    let join_sig = member.sign(
        &[
            &b"claudemesh/join/v1\0"[..],
            &invite_id,
            &member_pk,
            &member_xpk,
            &peer_pk,
            &ts.to_be_bytes(),
            name.as_bytes(),
        ]
        .concat(),
    );
    let (status, reply) = http_post(
        addr,
        "/join",
        &json!({"invite": signed, "name": name, "member_pk": hex::encode(member_pk), "member_xpk": hex::encode(member_xpk),
            "peer_pk": hex::encode(peer_pk), "peer_xpk": hex::encode(peer_xpk), "peer_cert": hex::encode(cert.to_bytes()),
            "ts_ms": ts, "sig": hex::encode(join_sig.to_bytes())}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["name"], name);

    // --- Hello (section 4.1).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let ts = now();
    let nonce: [u8; 16] = rand();
    let (session, v) = ("s1", 2u32);
    let mut signed_hello = b"claudemesh/hello/v1\0".to_vec();
    signed_hello.extend_from_slice(&v.to_be_bytes());
    for k in [&mesh_id, &member_pk, &peer_pk, &peer_xpk] {
        signed_hello.extend_from_slice(k);
    }
    for s in [name, session] {
        signed_hello.extend_from_slice(&(s.len() as u32).to_be_bytes());
        signed_hello.extend_from_slice(s.as_bytes());
    }
    signed_hello.extend_from_slice(&ts.to_be_bytes());
    signed_hello.extend_from_slice(&nonce);
    let hello = json!({"hello": {"v": v, "mesh_id": hex::encode(mesh_id), "member_pk": hex::encode(member_pk),
        "peer_pk": hex::encode(peer_pk), "peer_xpk": hex::encode(peer_xpk), "cert": hex::encode(cert.to_bytes()),
        "name": name, "session_id": session, "hostname": "elsewhere", "cwd": "/", "push": true, "status": "idle",
        "ts_ms": ts, "nonce": hex::encode(nonce), "sig": hex::encode(peer.sign(&signed_hello).to_bytes())}});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let ack = next_frame(&mut ws, "hello_ack").await;
    assert_eq!(ack["name"], name);

    // --- Resolve bob and send him a DM (sections 4.2, 5).
    ws.send(Message::Text(
        json!({"req": {"id": 1, "body": {"peers": {"resolve": {"names": ["bob"]}}}}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = next_frame(&mut ws, "reply").await;
    assert_eq!(reply["id"], 1);
    let bob = &reply["body"]["peers"]["resolve"]["results"][0];
    assert_eq!(bob["name"], "bob");
    let bob_pk = unhex32(bob["peer"]["peer_pk"].as_str().unwrap());
    let bob_xpk = unhex32(bob["peer"]["peer_xpk"].as_str().unwrap());
    let msg_id: [u8; 16] = rand();
    let cipher = dm_key(
        peer_x.diffie_hellman(&bob_xpk.into()).to_bytes(),
        &peer_xpk,
        &bob_xpk,
    );
    let target = json!({"peer": hex::encode(bob_pk)});
    let nonce: [u8; 24] = rand();
    let plain = json!({"text": "hello from another language", "sent_at_ms": now()}).to_string();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: &aad(&msg_id, &peer_pk, &target),
            },
        )
        .unwrap();
    // `priority` and `reply_to` left out: they default to "next" and null.
    let send = json!({"req": {"id": 2, "body": {"msg": {"send": {"msg_id": hex::encode(msg_id),
        "envelopes": [{"to": target, "sealed": {"nonce": b64e(&nonce), "ct": b64e(&ct)}}]}}}}});
    ws.send(Message::Text(send.to_string().into()))
        .await
        .unwrap();
    let reply = next_frame(&mut ws, "reply").await;
    let accepted = &reply["body"]["msg"]["send"];
    assert_eq!(
        (reply["id"].as_u64(), accepted["recipients"].as_u64()),
        (Some(2), Some(1))
    );
    let got = common::next_message(&b, common::WAIT)
        .await
        .expect("the project client opens it");
    assert_eq!(
        (got.text.as_str(), got.from.as_str()),
        ("hello from another language", name)
    );

    // --- bob replies with a DM and a broadcast; open both by hand (sections 4.3, 5).
    use claudemesh::client::Dest;
    use claudemesh::proto::Priority;
    b.send(&[Dest::parse(name)], "reply in a DM", Priority::Now, None)
        .await
        .unwrap();
    b.send(&[Dest::Broadcast], "reply to everyone", Priority::Now, None)
        .await
        .unwrap();
    let mut texts = Vec::new();
    for _ in 0..2 {
        let d = next_frame(&mut ws, "deliver").await;
        let msg_id = hex::decode(d["msg_id"].as_str().unwrap()).unwrap();
        let from = unhex32(d["from"].as_str().unwrap());
        let s = &d["sealed"];
        let cipher = if d["target"].get("peer").is_some() {
            let from_x = unhex32(d["from_xpk"].as_str().unwrap());
            dm_key(
                peer_x.diffie_hellman(&from_x.into()).to_bytes(),
                &peer_xpk,
                &from_x,
            )
        } else {
            group_key(&mesh_key)
        };
        let pt = cipher
            .decrypt(
                XNonce::from_slice(&b64d(s["nonce"].as_str().unwrap())),
                Payload {
                    msg: &b64d(s["ct"].as_str().unwrap()),
                    aad: &aad(&msg_id, &from, &d["target"]),
                },
            )
            .expect("opens with the documented construction");
        let plain: Value = serde_json::from_slice(&pt).unwrap();
        texts.push(plain["text"].as_str().unwrap().to_string());
        assert_eq!(d["from_name"], "bob");
        ws.send(Message::Text(
            json!({"ack": {"ids": [d["msg_id"]]}}).to_string().into(),
        ))
        .await
        .unwrap();
    }
    texts.sort();
    assert_eq!(texts, vec!["reply in a DM", "reply to everyone"]);

    // Acked: a pull returns nothing.
    ws.send(Message::Text(
        json!({"req": {"id": 3, "body": {"msg": {"pull": {}}}}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = next_frame(&mut ws, "reply").await;
    assert_eq!(reply["id"], 3);
    let msgs = &reply["body"]["msg"]["pull"]["messages"];
    assert_eq!(msgs.as_array().unwrap().len(), 0);
}
