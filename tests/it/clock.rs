//! The mesh clock end to end (real in-process broker, real clients, real redb): ticks of
//! one mesh minute reach every peer, pause and resume, pausing itself while the mesh is
//! empty, kept across a restart (down time is not mesh time), schedules on mesh time, and
//! bad input.

use crate::common::*;
use claudemesh::cap::schedules::client::When;
use claudemesh::proto::{ErrorCode, Priority};
use claudemesh::util::parse_rfc3339;
use std::time::Duration;

fn at(s: &str) -> u64 {
    parse_rfc3339(s).unwrap()
}

#[tokio::test]
async fn a_set_clock_ticks_one_mesh_minute_per_tick_to_every_peer_and_pauses_and_resumes() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    assert_eq!(
        a.get_clock().await.unwrap(),
        None,
        "no clock until one is set"
    );
    let start = at("2027-01-04T09:00:00Z");
    let c = a.set_clock(100, Some(start)).await.unwrap();
    assert_eq!((c.speed, c.tick, c.mesh_time_ms), (100, 0, start));
    assert!(!c.paused && c.next_tick_at_ms.is_some());
    let e = event(&b, "clock_set").await.expect("the mesh hears of it");
    assert!(
        e.text.contains("alice") && e.text.contains("x100"),
        "{}",
        e.text
    );
    let t = event(&b, "clock_tick").await.expect("ticks reach peers");
    assert!(t.text.contains("2027-01-04T09:01:00Z"), "{}", t.text);
    let t = event(&a, "clock_tick").await.expect("and the setter");
    assert!(t.text.contains("tick"), "{}", t.text);
    let now = b.get_clock().await.unwrap().unwrap();
    assert!(now.tick >= 1);
    assert_eq!(now.mesh_time_ms, start + now.tick * 60_000);
    // Paused: mesh time stands still.
    let p = b.pause_clock().await.unwrap();
    assert!(p.paused && !p.auto_paused);
    assert_eq!(p.paused_by.as_deref(), Some("bob"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = a.get_clock().await.unwrap().unwrap();
    assert_eq!(still.tick, p.tick, "no tick while paused");
    assert_eq!(still.next_tick_at_ms, None);
    // Resumed: it goes on from there.
    a.resume_clock().await.unwrap();
    let mut later = still.clone();
    for _ in 0..40 {
        later = a.get_clock().await.unwrap().unwrap();
        if later.tick > still.tick {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(later.tick > still.tick, "ticks again after a resume");
    // A slower speed counts from now; a jump moves mesh time forward only.
    let s = a.set_clock(1, Some(start + 3_600_000)).await.unwrap();
    assert_eq!((s.speed, s.mesh_time_ms), (1, start + 3_600_000));
    let back = a.set_clock(1, Some(start)).await.unwrap_err();
    assert_eq!(back.code(), Some(ErrorCode::BadRequest), "{back}");
    assert!(back.to_string().contains("forward"), "{back}");
}

#[tokio::test]
async fn the_clock_pauses_itself_while_the_mesh_is_empty_and_resumes_when_a_peer_returns() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    a.set_clock(100, None).await.unwrap();
    event(&a, "clock_tick").await.expect("running");
    let before = a.get_clock().await.unwrap().unwrap();
    a.close().await;
    // Five ticks' worth of wall time with nobody there.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let a = alice.connect().await;
    let back = a.get_clock().await.unwrap().unwrap();
    assert!(
        back.tick <= before.tick + 2,
        "mesh time stood still while the mesh was empty: {} then {}",
        before.tick,
        back.tick
    );
    let e = event(&a, "clock_resumed").await;
    let now = a.get_clock().await.unwrap().unwrap();
    assert!(
        e.is_some() || !now.paused,
        "resumes when a peer is back: {now:?}"
    );
    event(&a, "clock_tick").await.expect("and ticks again");
    // A manual pause is not lifted by a peer coming back.
    a.pause_clock().await.unwrap();
    a.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = alice.connect().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = a.get_clock().await.unwrap().unwrap();
    assert!(c.paused && !c.auto_paused, "{c:?}");
}

#[tokio::test]
async fn a_clock_survives_a_restart_and_the_down_time_is_not_mesh_time() {
    let mut mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let start = at("2027-03-01T12:00:00Z");
    a.set_clock(100, Some(start)).await.unwrap();
    event(&a, "clock_tick").await.expect("running");
    event(&a, "clock_tick").await.expect("running");
    let before = a.get_clock().await.unwrap().unwrap();
    a.close().await;
    mesh.stop().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    mesh.restart().await;
    let a = alice.connect().await;
    let after = a.get_clock().await.unwrap().unwrap();
    assert_eq!((after.speed, after.started_at_ms), (100, start));
    assert!(
        after.tick >= before.tick && after.tick <= before.tick + 2,
        "restored where it was: {} then {}",
        before.tick,
        after.tick
    );
    assert_eq!(after.mesh_time_ms, start + after.tick * 60_000);
    let t = event(&a, "clock_tick")
        .await
        .expect("ticks on after the restart");
    assert!(t.text.contains("2027-03-01T12:"), "{}", t.text);
}

#[tokio::test]
async fn a_schedule_on_mesh_time_fires_at_the_tick_that_reaches_it_and_waits_while_paused() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let none = a
        .schedule_on(None, "x", When::In(60), Priority::Next, true)
        .await
        .unwrap_err();
    assert_eq!(none.code(), Some(ErrorCode::Unavailable), "{none}");
    assert!(none.to_string().contains("mesh_set_clock"), "{none}");
    // Paused while the schedule is made, so no tick passes 10:00 before it exists.
    let start = at("2027-01-04T09:57:00Z");
    a.set_clock(100, Some(start)).await.unwrap();
    a.pause_clock().await.unwrap();
    // A daily 10:00 cron on mesh time: at most three ticks away, under 2 s of wall time.
    let s = a
        .schedule_on(
            Some("bob"),
            "stand-up",
            When::Cron {
                expr: "0 10 * * *".into(),
                tz: None,
            },
            Priority::Now,
            true,
        )
        .await
        .unwrap();
    assert!(s.mesh_clock);
    a.resume_clock().await.unwrap();
    let m = next_message(&b, WAIT).await.expect("fires on mesh time");
    assert_eq!(m.text, "stand-up");
    let sch = m.scheduled.expect("marked as scheduled");
    assert!(sch.mesh_time && sch.recurring);
    assert_eq!(sch.due_at, "2027-01-04T10:00:00Z");
    assert_eq!(sch.late_ms, 0);
    let clock = a.get_clock().await.unwrap().unwrap();
    assert!(clock.mesh_time_ms >= at("2027-01-04T10:00:00Z"));
    // While the clock is paused a mesh-time reminder waits; it fires after the resume.
    a.pause_clock().await.unwrap();
    let r = a
        .schedule_on(
            None,
            "one mesh minute on",
            When::In(60),
            Priority::Now,
            true,
        )
        .await
        .unwrap();
    assert!(
        next_message(&a, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing fires while the clock is paused"
    );
    a.resume_clock().await.unwrap();
    let m = next_message(&a, WAIT)
        .await
        .expect("fires after the resume");
    assert_eq!(m.text, "one mesh minute on");
    assert_eq!(m.scheduled.expect("scheduled").schedule_id, r.id);
}

#[tokio::test]
async fn bad_clock_requests_are_refused_with_a_reason_and_change_nothing() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    for speed in [0, 101] {
        let e = a.set_clock(speed, None).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        assert!(e.to_string().contains("1..=100"), "{e}");
    }
    let e = a.pause_clock().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    assert!(e.to_string().contains("set one first"), "{e}");
    assert_eq!(
        a.resume_clock().await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(a.get_clock().await.unwrap(), None);
}
