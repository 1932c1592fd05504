//! Shared contexts end to end (real in-process broker, real clients, real redb): found by
//! another session with a ranking that says what matched, replaced by a second share,
//! kept across a restart after their session left, bad input.

use crate::common::*;
use claudemesh::proto::ErrorCode;

#[tokio::test]
async fn a_shared_context_is_found_by_another_session_best_first_with_what_matched() {
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
    let shared = a
        .share_context(
            "Read the parser end to end: it recurses once per nesting level.",
            v(&["src/parser.rs", "src/lexer/token.rs"]),
            v(&["nested groups are parsed recursively, at most 64 deep"]),
            v(&["parser"]),
        )
        .await
        .unwrap();
    assert_eq!(shared.version, 1);
    let e = event(&b, "context_shared")
        .await
        .expect("the mesh hears of it");
    assert!(e.text.contains(&shared.id.hex()), "{}", e.text);
    c.share_context(
        "CI caches cargo's target dir; the parser is not involved.",
        v(&[".github/workflows/ci.yml"]),
        vec![],
        v(&["ci"]),
    )
    .await
    .unwrap();
    let hits = b
        .get_context("how does the parser handle nested groups?", None)
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].context.id, shared.id);
    assert_eq!(hits[0].context.member_name, "alice");
    assert!(hits[0].context.online);
    assert!(hits[0].score > hits[1].score);
    assert!(hits[0].matched.contains(&"tags".to_string()), "{hits:?}");
    assert_eq!(hits[1].matched, vec!["summary".to_string()]);
    // A file name finds who read it.
    let hits = b.get_context("token.rs", Some(1)).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].context.id, shared.id);
    assert!(b.get_context("kubernetes", None).await.unwrap().is_empty());
    let (all, total) = b.list_contexts(None).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(all[0].member_name, "carol", "most recent first");
}

#[tokio::test]
async fn sharing_again_replaces_the_sessions_context_and_keeps_its_id() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let first = a
        .share_context(
            "looked at the lexer",
            v(&["src/lexer.rs"]),
            vec![],
            v(&["lexer"]),
        )
        .await
        .unwrap();
    let second = a
        .share_context("now the type checker", v(&["src/types.rs"]), vec![], vec![])
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.version, 2);
    assert_eq!(second.created_at_ms, first.created_at_ms);
    assert_eq!(
        second.files_read,
        v(&["src/types.rs"]),
        "lists are replaced"
    );
    assert!(b.get_context("lexer", None).await.unwrap().is_empty());
    assert_eq!(b.get_context("checker", None).await.unwrap().len(), 1);
    assert_eq!(b.list_contexts(None).await.unwrap().1, 1, "one per session");
}

#[tokio::test]
async fn contexts_survive_a_restart_and_outlive_their_session() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let shared = a
        .share_context(
            "the flaky test is a port race",
            v(&["tests/net.rs"]),
            v(&["bind to port 0"]),
            v(&["flaky"]),
        )
        .await
        .unwrap();
    a.close().await;
    mesh.restart().await;
    let b = bob.connect().await;
    let hits = b.get_context("flaky port", None).await.unwrap();
    assert_eq!(hits.len(), 1);
    let got = &hits[0].context;
    assert_eq!(got.id, shared.id);
    assert_eq!(got.key_findings, v(&["bind to port 0"]));
    assert!(!got.online, "its session is gone, its context stays");
}

#[tokio::test]
async fn bad_contexts_and_queries_are_refused_with_a_reason_and_change_nothing() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    fn code<T>(r: Result<T, claudemesh::client::ClientError>) -> Option<ErrorCode> {
        r.err().and_then(|e| e.code())
    }
    assert_eq!(
        code(a.share_context("  ", vec![], vec![], vec![]).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(
            a.share_context(&"x".repeat(9000), vec![], vec![], vec![])
                .await
        ),
        Some(ErrorCode::TooLarge)
    );
    let many: Vec<String> = (0..201).map(|i| format!("f{i}.rs")).collect();
    assert_eq!(
        code(a.share_context("ok", many, vec![], vec![]).await),
        Some(ErrorCode::TooLarge)
    );
    assert_eq!(
        code(a.share_context("ok", vec![], vec![], v(&[""])).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(a.get_context("the of and", None).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(a.get_context(&"word ".repeat(300), None).await),
        Some(ErrorCode::TooLarge)
    );
    assert_eq!(a.list_contexts(None).await.unwrap().1, 0);
}
