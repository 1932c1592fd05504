//! The task board end to end (real in-process broker, real clients, real redb): one winner
//! per claim race, dependencies, claimer-only completion, claim leases, history, events,
//! restart, bad input.

use crate::common::*;
use claudemesh::cap::tasks::client::NewTask;
use claudemesh::proto::tasks::TaskStatus;
use claudemesh::proto::{ErrorCode, Id16};
use std::sync::Arc;
use std::time::Duration;

fn new(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_task_is_created_claimed_and_completed_and_its_creator_sees_the_result() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let t = a
        .task_create(NewTask {
            title: "fix the parser".into(),
            body: "see tests/parse.rs".into(),
            assignee: Some("bob".into()),
            priority: Some("high".into()),
            tags: vec!["rust".into()],
            depends_on: vec![],
        })
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Open);
    assert_eq!(t.created_by, "alice");
    let told = event(&b, "task_assigned")
        .await
        .expect("the assignee is told");
    assert!(told.text.contains("fix the parser"), "{}", told.text);
    let c = b.task_claim(t.id, None).await.unwrap();
    assert!(c.claimed);
    assert_eq!(c.task.claimed_by.as_deref(), Some("bob"));
    let e = event(&a, "task_claimed")
        .await
        .expect("the creator is told");
    assert!(e.text.contains("bob"));
    let done = b.task_complete(t.id, "merged in 4f2a").await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    let e = event(&a, "task_completed").await.expect("completion event");
    assert!(e.text.contains("merged in 4f2a"), "{}", e.text);
    let seen = a.task_get(t.id).await.unwrap();
    assert_eq!(seen.result, "merged in 4f2a");
    let actions: Vec<&str> = seen.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions, ["created", "claimed", "completed"]);
    assert_eq!(seen.history[1].by, "bob");
    // Lists filter by status, assignee and tag, without histories.
    let (open, _) = a
        .task_list(Some(TaskStatus::Open), None, None)
        .await
        .unwrap();
    assert!(open.is_empty());
    let (mine, _) = a
        .task_list(None, Some("bob".into()), Some("rust".into()))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert!(mine[0].history.is_empty());
}

#[tokio::test]
async fn two_peers_racing_for_a_claim_have_exactly_one_winner_in_100_trials() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (
        Arc::new(alice.connect().await),
        Arc::new(bob.connect().await),
    );
    for i in 0..100 {
        let t = a.task_create(new(&format!("task {i}"))).await.unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { a2.task_claim(t.id, None).await.unwrap() }),
            tokio::spawn(async move { b2.task_claim(t.id, None).await.unwrap() }),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra.claimed != rb.claimed, "trial {i}: {ra:?} / {rb:?}");
        let winner = if ra.claimed { "alice" } else { "bob" };
        let loser_view = if ra.claimed { &rb.task } else { &ra.task };
        assert_eq!(
            loser_view.claimed_by.as_deref(),
            Some(winner),
            "the loser is told who won"
        );
        assert_eq!(
            a.task_get(t.id).await.unwrap().claimed_by.as_deref(),
            Some(winner)
        );
    }
}

#[tokio::test]
async fn a_task_with_open_dependencies_cannot_be_claimed_until_they_are_completed() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let first = a.task_create(new("schema")).await.unwrap();
    let then = a
        .task_create(NewTask {
            depends_on: vec![first.id],
            ..new("migration")
        })
        .await
        .unwrap();
    let c = a.task_claim(then.id, None).await.unwrap();
    assert!(!c.claimed);
    assert_eq!(c.blocked_by, [first.id]);
    assert_eq!(a.task_get(then.id).await.unwrap().status, TaskStatus::Open);
    assert!(a.task_claim(first.id, None).await.unwrap().claimed);
    a.task_complete(first.id, "").await.unwrap();
    assert!(a.task_claim(then.id, None).await.unwrap().claimed);
}

#[tokio::test]
async fn only_the_claimer_completes_or_unclaims_and_a_completed_task_stays_completed() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let t = a.task_create(new("review")).await.unwrap();
    let e = b.task_complete(t.id, "").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    assert!(e.to_string().contains("claim"), "{e}");
    assert!(a.task_claim(t.id, None).await.unwrap().claimed);
    let e = b.task_complete(t.id, "").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    let e = b.task_unclaim(t.id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    // The claimer gives it up: it is open, bob takes it, and alice hears of it.
    assert_eq!(a.task_unclaim(t.id).await.unwrap().status, TaskStatus::Open);
    assert!(b.task_claim(t.id, None).await.unwrap().claimed);
    b.task_complete(t.id, "ok").await.unwrap();
    let again = a.task_claim(t.id, None).await.unwrap();
    assert!(!again.claimed, "a completed task is not claimed");
    assert_eq!(again.task.status, TaskStatus::Completed);
    let e = b.task_complete(t.id, "twice").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    assert_eq!(
        a.task_get(t.id).await.unwrap().result,
        "ok",
        "nothing changed"
    );
}

#[tokio::test]
async fn a_task_for_a_group_is_claimed_only_by_its_working_members_and_its_lead_or_an_admin_may_finish_it(
) {
    let mesh = Mesh::start().await;
    let [a, b, o, w, l] = {
        let mut v = Vec::new();
        for n in ["alice", "bob", "olga", "wei", "lena"] {
            v.push(mesh.member(n).await.connect().await);
        }
        <[_; 5]>::try_from(v).ok().unwrap()
    };
    o.join_group("eng", "observer").await.unwrap();
    w.join_group("eng/web", "member").await.unwrap();
    l.join_group("eng", "lead").await.unwrap();
    let t = a
        .task_create(NewTask {
            assignee: Some("@eng".into()),
            ..new("ship the login page")
        })
        .await
        .unwrap();
    assert_eq!(t.assignee.as_deref(), Some("@eng"));
    let e = event(&w, "task_assigned")
        .await
        .expect("the group's members are told");
    assert!(e.text.contains("@eng"), "{}", e.text);
    // Not in the group, or only watching it: refused, nothing changes.
    for (who, c) in [("bob", &b), ("olga", &o)] {
        let e = c.task_claim(t.id, None).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{who}: {e}");
        assert!(e.to_string().contains("join @eng"), "{e}");
    }
    assert_eq!(a.task_get(t.id).await.unwrap().status, TaskStatus::Open);
    // A sub-group member works in the group: it claims.
    assert!(w.task_claim(t.id, None).await.unwrap().claimed);
    // The lead may unclaim it (a stuck claim), not a plain member of the mesh.
    let e = b.task_unclaim(t.id).await.unwrap_err();
    assert!(e.to_string().contains("a lead of @eng"), "{e}");
    assert_eq!(l.task_unclaim(t.id).await.unwrap().status, TaskStatus::Open);
    assert!(w.task_claim(t.id, None).await.unwrap().claimed);
    let done = l.task_complete(t.id, "reviewed and shipped").await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    // A mesh admin claims and completes group tasks and others' tasks alike.
    let root = mesh.admin("root").await.connect().await;
    let t2 = a
        .task_create(NewTask {
            assignee: Some("@eng".into()),
            ..new("rotate the keys")
        })
        .await
        .unwrap();
    assert!(root.task_claim(t2.id, None).await.unwrap().claimed);
    let t3 = a.task_create(new("bob's job")).await.unwrap();
    assert!(b.task_claim(t3.id, None).await.unwrap().claimed);
    assert_eq!(
        root.task_complete(t3.id, "done by an admin")
            .await
            .unwrap()
            .status,
        TaskStatus::Completed
    );
    // A bad group name is refused.
    let e = a
        .task_create(NewTask {
            assignee: Some("@no such group".into()),
            ..new("x")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
}

#[tokio::test]
async fn a_lapsed_claim_lease_returns_the_task_to_open_with_an_event_also_after_a_restart() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let t = a.task_create(new("flaky test")).await.unwrap();
    let c = b.task_claim(t.id, Some(1)).await.unwrap();
    assert!(c.claimed && c.task.lease_until_ms.is_some());
    let e = event(&a, "task_lease_expired").await.expect("lapse event");
    assert!(e.text.contains("bob"), "{}", e.text);
    let now = a.task_get(t.id).await.unwrap();
    assert_eq!(now.status, TaskStatus::Open);
    assert_eq!(now.history.last().unwrap().action, "lease_expired");
    // A lease that runs out while the broker is down lapses when it is back.
    let t2 = a.task_create(new("another")).await.unwrap();
    assert!(b.task_claim(t2.id, Some(1)).await.unwrap().claimed);
    let done = a.task_create(new("kept")).await.unwrap();
    assert!(b.task_claim(done.id, None).await.unwrap().claimed);
    drop((a, b));
    mesh.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    mesh.restart().await;
    let a = alice.connect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.task_get(t2.id).await.unwrap().status != TaskStatus::Open {
        assert!(tokio::time::Instant::now() < deadline, "lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = a.task_get(done.id).await.unwrap();
    assert_eq!(
        (kept.status, kept.claimed_by.as_deref()),
        (TaskStatus::Claimed, Some("bob"))
    );
    assert_eq!(a.task_list(None, None, None).await.unwrap().0.len(), 3);
}

#[tokio::test]
async fn bad_task_requests_get_a_clear_error_and_change_nothing() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let nobody = Id16([3; 16]);
    for e in [
        a.task_get(nobody).await.unwrap_err(),
        a.task_claim(nobody, None).await.unwrap_err(),
        a.task_complete(nobody, "").await.unwrap_err(),
        a.task_watch(nobody, true).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    }
    let e = a.task_create(new("")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    let e = a.task_create(new(&"t".repeat(257))).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge));
    let e = a
        .task_create(NewTask {
            priority: Some("asap".into()),
            ..new("x")
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("urgent"), "{e}");
    let e = a
        .task_create(NewTask {
            depends_on: vec![nobody],
            ..new("x")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let e = a
        .task_create(NewTask {
            assignee: Some("ghost".into()),
            ..new("x")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTarget));
    let t = a.task_create(new("ok")).await.unwrap();
    let e = a.task_claim(t.id, Some(0)).await.unwrap_err();
    assert!(e.to_string().contains("lease_s"), "{e}");
    let e = a.task_unclaim(t.id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "not claimed");
    let (all, _) = a.task_list(None, None, None).await.unwrap();
    assert_eq!(all.len(), 1, "only the good task was stored");
    assert_eq!(all[0].status, TaskStatus::Open);
}

#[tokio::test]
async fn mesh_info_tells_what_the_mesh_holds_in_one_call() {
    use claudemesh::cap::streams::client::Limits;
    use claudemesh::proto::Json;
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    b.join_group("eng", "lead").await.unwrap();
    b.set_summary("on the parser").await.unwrap();
    b.state_set(
        "deploy/status",
        Json::parse("\"green\"").unwrap(),
        None,
        None,
    )
    .await
    .unwrap();
    let t = b.task_create(new("write the docs")).await.unwrap();
    let done = b.task_create(new("old")).await.unwrap();
    b.task_claim(done.id, None).await.unwrap();
    b.task_complete(done.id, "").await.unwrap();
    b.stream_create("build", Limits::default()).await.unwrap();
    b.reserve_files(vec!["src/parser.rs".into()], None, None, "")
        .await
        .unwrap();
    let reminder = b
        .schedule(
            None,
            "ship it",
            claudemesh::cap::schedules::client::When::In(3600),
            claudemesh::proto::Priority::Next,
        )
        .await
        .unwrap();
    b.share_context("read the parser", vec![], vec![], vec![])
        .await
        .unwrap();
    let i = a.mesh_info().await;
    assert!(i.unavailable.is_empty(), "{:?}", i.unavailable);
    assert_eq!(i.peers_online, ["bob (on the parser)"]);
    assert_eq!(i.groups, ["@eng (1)"]);
    assert_eq!(
        (i.state_keys, i.state_keys_shown.clone()),
        (1, vec!["deploy/status".to_string()])
    );
    assert_eq!(
        (i.tasks_open, i.tasks_claimed, i.tasks_completed),
        (1, 0, 1)
    );
    assert!(i.open_tasks_shown[0].contains(&t.id.hex()));
    assert_eq!(i.streams, ["build (0 messages)"]);
    assert_eq!(i.leases, ["bob: src/parser.rs"]);
    assert_eq!(i.schedules, 1);
    assert!(
        i.schedules_shown[0].starts_with(&reminder.id),
        "{:?}",
        i.schedules_shown
    );
    assert_eq!(i.contexts, 1);
    assert_eq!(i.contexts_shown, ["bob: read the parser"]);
    let text = claudemesh::cap::mesh::client::text("team", &i);
    assert!(
        text.contains("tasks: 1 open, 0 claimed, 1 completed"),
        "{text}"
    );
}
