//! Replays the checked-in fuzz corpora (and any crash artifacts) through the fuzz targets,
//! so every input that once mattered is re-checked in every test run.

use claudemesh::crypto::hello::{make_hello, HelloParams};
use claudemesh::crypto::{invite, seal, Identity};
use claudemesh::proto::*;
use std::path::Path;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let a = Identity::from_secrets([1; 32], [2; 32]);
    let b = Identity::from_secrets([3; 32], [4; 32]);
    let id = Id16([5; 16]);
    let plain = seal::Plain {
        text: "seed".into(),
        sent_at_ms: 1,
        schedule: None,
    };
    let dm = seal::seal_dm_fixed(&a, &b.public(), &b.x_public(), &id, &plain, [7; 24]);
    let grp = seal::seal_group_fixed(
        &[6; 32],
        &a.public(),
        &Target::Broadcast,
        &id,
        &plain,
        [8; 24],
    );
    let h = make_hello(
        &a,
        &a.derive(b"m", "cli"),
        &HelloParams {
            mesh_id: Key([9; 32]),
            name: "alice",
            session_id: "cli",
            hostname: "h",
            cwd: "/",
            push: true,
            status: Status::Idle,
        },
        1_764_374_400_000,
    );
    let req = |id, body: Request| ClientFrame::Req(Req { id, body });
    let send = req(
        1,
        Request::Msg(msg::Request::Send {
            msg_id: id,
            priority: Priority::Next,
            reply_to: None,
            envelopes: vec![
                Envelope {
                    to: Target::Peer(b.public()),
                    sealed: dm.clone(),
                },
                Envelope {
                    to: Target::Group("eng".into()),
                    sealed: grp.clone(),
                },
            ],
        }),
    );
    let deliver = ServerFrame::Deliver(Delivery {
        msg_id: id,
        from: a.public(),
        from_xpk: a.x_public(),
        from_name: "alice".into(),
        to: "bob".into(),
        target: Target::Peer(b.public()),
        priority: Priority::Now,
        reply_to: Some(id),
        sealed: dm.clone(),
        sent_at_ms: 1,
        expires_at_ms: 2,
    });
    let frames: Vec<ClientFrame> = vec![
        ClientFrame::Hello(h.clone()),
        send,
        ClientFrame::Ack { ids: vec![id] },
        req(2, Request::Msg(msg::Request::Pull { limit: 10 })),
        req(
            3,
            Request::Msg(msg::Request::SetStatus {
                status: Status::Dnd,
            }),
        ),
        req(
            4,
            Request::Peers(peers::Request::Resolve {
                names: vec!["bob".into()],
            }),
        ),
        req(
            5,
            Request::Peers(peers::Request::JoinGroup {
                group: "eng/web".into(),
                role: "lead".into(),
            }),
        ),
        req(6, Request::Conn(conn::Request::Ping {})),
    ];
    let owner = Identity::from_secrets([10; 32], [11; 32]);
    let payload = invite::InvitePayload {
        v: 1,
        broker: "http://127.0.0.1:7900".into(),
        mesh_id: Key([9; 32]),
        mesh: "team".into(),
        owner: owner.public(),
        invite_id: id,
        role: Role::Member,
        expires_ms: 2_000_000_000_000,
        max_uses: Some(3),
        key_commit: invite::key_commit(&[6; 32]),
    };
    let link = invite::create(&owner, &payload, &[6; 32]);
    let mut out = Vec::new();
    for f in &frames {
        out.push(("frame_json", serde_json::to_vec(f).unwrap()));
        out.push(("frame_binary", postcard::to_allocvec(f).unwrap()));
    }
    // Every request kind of every capability, and a subscription feed.
    for (i, q) in examples::requests().into_iter().enumerate() {
        let f = req(100 + i as u64, q);
        out.push(("frame_json", serde_json::to_vec(&f).unwrap()));
        out.push(("frame_binary", postcard::to_allocvec(&f).unwrap()));
    }
    let feed = ServerFrame::Feed(examples::feed());
    out.push(("frame_json", serde_json::to_vec(&feed).unwrap()));
    out.push(("frame_binary", postcard::to_allocvec(&feed).unwrap()));
    out.push(("frame_json", serde_json::to_vec(&deliver).unwrap()));
    out.push(("frame_binary", postcard::to_allocvec(&deliver).unwrap()));
    out.push(("invite", link.clone().into_bytes()));
    out.push((
        "invite",
        link.split('#').next().unwrap().as_bytes().to_vec(),
    ));
    out.push(("open_sealed", postcard::to_allocvec(&dm).unwrap()));
    out.push(("open_sealed", postcard::to_allocvec(&grp).unwrap()));
    out.push(("hello", postcard::to_allocvec(&h).unwrap()));
    out.push(("hello", serde_json::to_vec(&h).unwrap()));
    out.push(("json_requests", br#"{"cmd":"mesh_list"}"#.to_vec()));
    out.push((
        "json_requests",
        serde_json::to_vec(&JoinRequest {
            invite: link
                .split('#')
                .next()
                .unwrap()
                .trim_start_matches("claudemesh://join/")
                .into(),
            name: "bob".into(),
            member_pk: b.public(),
            member_xpk: b.x_public(),
            peer_pk: b.public(),
            peer_xpk: b.x_public(),
            peer_cert: Sig([1; 64]),
            ts_ms: 1,
            sig: Sig([2; 64]),
        })
        .unwrap(),
    ));
    out
}

#[test]
fn fuzz_corpora_replay_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    if std::env::var("CLAUDEMESH_WRITE_SEEDS").is_ok() {
        for (i, (target, bytes)) in seeds().into_iter().enumerate() {
            let dir = root.join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{i:03}")), bytes).unwrap();
        }
    }
    let mut replayed = 0;
    for (name, f) in claudemesh::fuzzing::TARGETS {
        for sub in ["corpus", "artifacts"] {
            let dir = root.join(sub).join(name);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                f(&data);
                replayed += 1;
            }
        }
        // Seeds are replayed even before any corpus is written.
    }
    for (target, bytes) in seeds() {
        let f = claudemesh::fuzzing::TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .unwrap()
            .1;
        f(&bytes);
        // Truncations and bit flips of every seed, too.
        for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            f(&bytes[..cut.min(bytes.len())]);
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut m = bytes.clone();
            m[i] ^= 0x55;
            f(&m);
        }
    }
    assert!(
        replayed >= claudemesh::fuzzing::TARGETS.len(),
        "corpora are checked in (found {replayed} files)"
    );
}
