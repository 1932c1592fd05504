//! File leases end to end (real in-process broker, real clients, real redb): conflicts that
//! name the holder, exclusive and shared leases, release, expiry, a holder gone past the
//! grace window, restart, bad input.

use crate::common::*;
use claudemesh::proto::{ErrorCode, Id16};
use std::time::Duration;

#[tokio::test]
async fn a_conflicting_reservation_names_the_holder_and_reserves_nothing() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let mine = a
        .reserve_files(v(&["src/lexer/**"]), None, None, "splitting the lexer")
        .await
        .unwrap();
    assert!(mine.granted);
    let lease = mine.lease.unwrap();
    assert!(lease.exclusive);
    // All or nothing: one overlapping pattern refuses the whole reservation.
    let r = b
        .reserve_files(v(&["README.md", "src/lexer/token.rs"]), None, None, "docs")
        .await
        .unwrap();
    assert!(!r.granted && r.lease.is_none());
    assert_eq!(r.conflicts.len(), 1);
    let c = &r.conflicts[0];
    assert_eq!(
        (c.holder.as_str(), c.reason.as_str()),
        ("alice", "splitting the lexer")
    );
    assert_eq!(c.id, lease.id);
    assert!(c.expires_at_ms > claudemesh::util::now_ms());
    let listed = b.list_reservations(Some("README.md".into())).await.unwrap();
    assert!(listed.is_empty(), "README.md was not reserved");
    // A disjoint reservation is fine, and the holder's own overlapping one too.
    assert!(
        b.reserve_files(v(&["README.md"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
    assert!(
        a.reserve_files(v(&["src/lexer/mod.rs"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
    let on = b
        .list_reservations(Some("src/lexer/mod.rs".into()))
        .await
        .unwrap();
    assert_eq!(on.len(), 2, "both of alice's leases cover it");
    assert!(on.iter().all(|l| l.holder == "alice"));
}

#[tokio::test]
async fn shared_leases_coexist_and_conflict_only_with_exclusive_ones() {
    let mesh = Mesh::start().await;
    let (alice, bob, carol) = (
        mesh.member("alice").await,
        mesh.member("bob").await,
        mesh.member("carol").await,
    );
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    assert!(
        a.reserve_files(v(&["docs/*.md"]), Some(false), None, "reading")
            .await
            .unwrap()
            .granted
    );
    assert!(
        b.reserve_files(v(&["docs/api.md"]), Some(false), None, "reading")
            .await
            .unwrap()
            .granted
    );
    let r = c
        .reserve_files(v(&["docs/api.md"]), Some(true), None, "rewrite")
        .await
        .unwrap();
    assert!(!r.granted);
    let mut holders: Vec<&str> = r.conflicts.iter().map(|l| l.holder.as_str()).collect();
    holders.sort();
    assert_eq!(holders, ["alice", "bob"]);
}

#[tokio::test]
async fn released_leases_free_their_paths_and_only_the_holder_releases_by_id() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let l = a
        .reserve_files(v(&["a.rs", "b.rs"]), None, None, "")
        .await
        .unwrap()
        .lease
        .unwrap();
    let e = b.release_files(vec![], Some(l.id)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    assert!(e.to_string().contains("alice"), "{e}");
    // Releasing a path of one's own lease keeps the rest.
    assert_eq!(a.release_files(v(&["a.rs"]), None).await.unwrap(), [l.id]);
    assert!(
        b.reserve_files(v(&["a.rs"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
    assert!(
        !b.reserve_files(v(&["b.rs"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
    assert!(
        b.release_files(v(&["b.rs"]), None)
            .await
            .unwrap()
            .is_empty(),
        "not bob's"
    );
    assert_eq!(a.release_files(vec![], Some(l.id)).await.unwrap(), [l.id]);
    assert!(
        b.reserve_files(v(&["b.rs"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
}

#[tokio::test]
async fn leases_lapse_at_their_ttl_and_when_their_holder_is_gone_past_the_grace_window() {
    let mesh = Mesh::start_with(|c| c.grace = Duration::from_millis(300)).await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    {
        let a = alice.connect().await;
        assert!(
            a.reserve_files(v(&["x.rs"]), None, Some(3600), "")
                .await
                .unwrap()
                .granted
        );
        assert!(
            b.reserve_files(v(&["y.rs"]), None, Some(1), "")
                .await
                .unwrap()
                .granted
        );
        a.close().await;
    }
    // alice left: past the grace window her lease goes, and bob's own lapses at its TTL.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = b.list_reservations(None).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases stayed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        b.reserve_files(v(&["x.rs"]), None, None, "")
            .await
            .unwrap()
            .granted
    );
}

#[tokio::test]
async fn leases_survive_a_broker_restart() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let l = a
        .reserve_files(v(&["src/**"]), None, None, "refactor")
        .await
        .unwrap()
        .lease
        .unwrap();
    drop(a);
    mesh.restart().await;
    let _a = alice.connect().await;
    let b = bob.connect().await;
    let r = b
        .reserve_files(v(&["src/main.rs"]), None, None, "")
        .await
        .unwrap();
    assert!(!r.granted);
    assert_eq!(r.conflicts[0].id, l.id);
}

#[tokio::test]
async fn bad_lease_requests_get_a_clear_error_and_change_nothing() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let e = a.reserve_files(vec![], None, None, "").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    let e = a.reserve_files(many, None, None, "").await.unwrap_err();
    assert!(e.to_string().contains("64"), "{e}");
    let e = a
        .reserve_files(v(&["a"]), None, Some(0), "")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ttl_s"), "{e}");
    let e = a
        .reserve_files(v(&["./"]), None, None, "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a
        .reserve_files(v(&["a"]), None, None, &"r".repeat(513))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge));
    let e = a
        .release_files(vec![], Some(Id16([1; 16])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let e = a.release_files(vec![], None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    assert!(a.list_reservations(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_pre_edit_hook_warns_about_a_file_another_peer_leased_and_is_silent_otherwise() {
    use claudemesh::claude::hook::{run, HookKind};
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    let project = mesh.tmp.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    b.reserve_files(v(&["src/parser.rs"]), None, None, "splitting the lexer")
        .await
        .unwrap();
    let input = |file: &str| {
        serde_json::json!({
            "session_id": "0c0ffee0-0000-4000-8000-000000000001",
            "hook_event_name": "PreToolUse",
            "tool_name": "Edit",
            "tool_input": {"file_path": project.join(file).to_string_lossy()},
            "cwd": project.join("src").to_string_lossy(),
        })
        .to_string()
    };
    let out = run(&alice.home, HookKind::PreEdit, &input("src/parser.rs"))
        .await
        .expect("a warning");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ctx = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    assert!(
        ctx.contains("src/parser.rs") && ctx.contains("bob") && ctx.contains("splitting the lexer"),
        "{ctx}"
    );
    assert!(
        v.get("hookSpecificOutput")
            .unwrap()
            .get("permissionDecision")
            .is_none(),
        "it never blocks"
    );
    assert!(run(&alice.home, HookKind::PreEdit, &input("src/lexer.rs"))
        .await
        .is_none());
    // Leases are per session: another session of the holder's member is warned too.
    assert!(
        run(&bob.home, HookKind::PreEdit, &input("src/parser.rs"))
            .await
            .is_some(),
        "bob's Claude session is another peer than bob's CLI"
    );
}
