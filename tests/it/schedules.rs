//! Scheduled messages end to end (real in-process broker, real clients, real redb): a
//! reminder to oneself, a message to an offline peer and to a group that fire once, cron
//! times in a time zone, cancel rights, restart, a firing missed while the broker was down
//! (fired on start, late, once), and bad input.

use crate::common::*;
use chrono::TimeZone;
use claudemesh::cap::schedules::client::When;
use claudemesh::cap::schedules::tables::{self, Change};
use claudemesh::proto::{ErrorCode, Id16, Priority};
use claudemesh::store::{Op, Store};
use claudemesh::util::now_ms;
use std::time::Duration;

fn code(e: claudemesh::client::ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test]
async fn a_reminder_to_oneself_fires_once_names_its_schedule_and_tells_its_creator() {
    let mesh = Mesh::start().await;
    let alice = mesh.member("alice").await;
    let a = alice.connect().await;
    let s = a
        .schedule(None, "stand-up in five", When::In(1), Priority::Now)
        .await
        .unwrap();
    assert_eq!(s.to, "me");
    assert_eq!(s.text.as_deref(), Some("stand-up in five"));
    let listed = a.list_scheduled().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, s.id);
    let m = next_message(&a, WAIT).await.expect("the reminder arrives");
    assert_eq!(m.text, "stand-up in five");
    assert_eq!(m.from, "alice");
    assert_eq!(
        m.id, s.id,
        "a one-time schedule is delivered under its own id"
    );
    let sch = m.scheduled.expect("marked as scheduled");
    assert_eq!(sch.schedule_id, s.id);
    assert!(!sch.recurring);
    assert!(sch.late_ms < 5_000, "on time: {} ms late", sch.late_ms);
    let e = event(&a, "schedule_fired").await.expect("creator told");
    assert!(e.text.contains(&s.id), "{}", e.text);
    // Once: gone from the list, and nothing more arrives.
    assert!(a.list_scheduled().await.unwrap().is_empty());
    assert!(next_message(&a, Duration::from_millis(1500))
        .await
        .is_none());
}

#[tokio::test]
async fn a_scheduled_message_waits_for_an_offline_peer_and_the_broker_stores_no_plaintext() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    {
        let b = bob.connect().await;
        b.close().await;
    }
    let secret = "deploy key rotation at noon, tell nobody 7f3e9a";
    let s = a
        .schedule(Some("bob"), secret, When::In(1), Priority::Next)
        .await
        .unwrap();
    assert_eq!(s.to, "bob");
    // bob sees the schedule, not its text.
    event(&a, "schedule_fired")
        .await
        .expect("fired while bob is away");
    let raw = std::fs::read(mesh.data_dir().join("claudemesh.redb")).unwrap();
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the broker's file holds the plaintext"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = bob.connect().await;
    let m = next_message(&b, WAIT).await.expect("queued for bob");
    assert_eq!((m.text.as_str(), m.from.as_str()), (secret, "alice"));
    let sch = m.scheduled.unwrap();
    assert_eq!(sch.schedule_id, s.id);
    assert!(next_message(&b, Duration::from_millis(800)).await.is_none());
}

#[tokio::test]
async fn a_group_schedule_reaches_whoever_is_in_the_group_when_it_fires_and_others_list_it_without_text(
) {
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
    // The group is empty when the schedule is made.
    let s = a
        .schedule(Some("@eng"), "retro now", When::In(2), Priority::Now)
        .await
        .unwrap();
    b.join_group("eng/web", "member").await.unwrap();
    let seen = c.list_scheduled().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].text, None,
        "only its creator reads a schedule's text"
    );
    assert_eq!(seen[0].creator, "alice");
    let m = next_message(&b, WAIT)
        .await
        .expect("sub-group member gets it");
    assert_eq!(m.text, "retro now");
    assert_eq!(m.to, "@eng");
    assert_eq!(m.scheduled.unwrap().schedule_id, s.id);
    assert!(next_message(&c, Duration::from_millis(800)).await.is_none());
}

#[tokio::test]
async fn a_cron_schedule_is_due_at_its_next_match_in_its_time_zone() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    let cron = When::Cron {
        expr: "30 8 * * *".into(),
        tz: Some("Europe/Berlin".into()),
    };
    let s = a
        .schedule(None, "daily plan", cron, Priority::Next)
        .await
        .unwrap();
    // The next 08:30 in Berlin, worked out here with chrono-tz.
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let now = tz.timestamp_millis_opt(now_ms() as i64).unwrap();
    let mut day = now.date_naive();
    let expect = loop {
        let t = tz
            .from_local_datetime(&day.and_hms_opt(8, 30, 0).unwrap())
            .single()
            .unwrap();
        if t > now {
            break t.timestamp_millis() as u64;
        }
        day = day.succ_opt().unwrap();
    };
    assert_eq!(s.next_due_ms, expect);
    assert_eq!(s.cron.as_deref(), Some("30 8 * * *"));
    assert_eq!(s.tz.as_deref(), Some("Europe/Berlin"));
    assert_eq!(&s.id[24..], "00000000", "a recurring id ends in zero bytes");
}

#[tokio::test]
async fn a_schedule_is_cancelled_by_its_creator_or_an_admin_and_no_one_else() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let root = mesh.admin("root").await.connect().await;
    let one = a
        .schedule(None, "one", When::In(3600), Priority::Next)
        .await
        .unwrap();
    let two = a
        .schedule(None, "two", When::In(3600), Priority::Next)
        .await
        .unwrap();
    let id = |s: &str| Id16::parse_hex(s).unwrap();
    let e = b.cancel_scheduled(id(&one.id)).await.unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    a.cancel_scheduled(id(&one.id)).await.unwrap();
    root.cancel_scheduled(id(&two.id)).await.unwrap();
    assert!(a.list_scheduled().await.unwrap().is_empty());
    let e = a.cancel_scheduled(id(&one.id)).await.unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    // Cancelled means never delivered.
    assert!(next_message(&a, Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn pending_schedules_survive_a_restart_and_a_firing_missed_while_down_comes_late_once() {
    let mut mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let a = alice.connect().await;
    let b = bob.connect().await;
    let every5 = When::Cron {
        expr: "*/5 * * * *".into(),
        tz: None,
    };
    let rec = a
        .schedule(Some("bob"), "status report please", every5, Priority::Now)
        .await
        .unwrap();
    let once = a
        .schedule(Some("bob"), "one-off", When::In(3600), Priority::Now)
        .await
        .unwrap();
    a.close().await;
    b.close().await;
    mesh.stop().await;
    // While the broker is down, the recurring schedule's due time passes: make it three
    // minutes ago in its file (as if the broker had been down since).
    let due = (now_ms() / 60_000 - 3) * 60_000;
    set_due(&mesh, &rec.id, due).await;
    mesh.restart().await;
    let b = bob.connect().await;
    let m = next_message(&b, WAIT).await.expect("fired on start");
    assert_eq!(m.text, "status report please");
    let sch = m.scheduled.unwrap();
    assert!(sch.recurring);
    assert_eq!(sch.schedule_id, rec.id);
    assert_eq!(sch.due_at_ms, due);
    assert!(sch.late_ms >= 170_000, "late by {} ms", sch.late_ms);
    assert_ne!(m.id, rec.id, "each firing has its own id");
    assert_eq!(&m.id[..24], &rec.id[..24]);
    b.ack(&[m.msg_id]);
    let a = alice.connect().await;
    let listed = a.list_scheduled().await.unwrap();
    assert_eq!(listed.len(), 2, "both still pending");
    let r = listed.iter().find(|s| s.id == rec.id).unwrap();
    assert_eq!(r.fired, 1);
    assert!(r.next_due_ms > now_ms());
    assert_eq!(r.text.as_deref(), Some("status report please"));
    assert!(listed.iter().any(|s| s.id == once.id));
    // Once, even when the broker stopped after sending a firing and before advancing its
    // schedule: put the schedule back to that due time, as such a crash leaves it.
    // Wait until the broker has bob's ack (its creator sees the firing read).
    let mut read = false;
    for _ in 0..100 {
        let (st, _) = a.message_status(m.msg_id).await.unwrap();
        if st
            .iter()
            .all(|r| r.state == claudemesh::proto::msg::DeliveryState::Read)
            && !st.is_empty()
        {
            read = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read, "bob's ack reached the broker");
    a.close().await;
    b.close().await;
    mesh.stop().await;
    set_due(&mesh, &rec.id, due).await;
    mesh.restart().await;
    let b = bob.connect().await;
    let again = next_message(&b, Duration::from_millis(1500)).await;
    assert!(again.is_none(), "{again:?}");
    let a = alice.connect().await;
    let listed = a.list_scheduled().await.unwrap();
    let r = listed.iter().find(|s| s.id == rec.id).unwrap();
    assert!(
        r.next_due_ms > now_ms(),
        "advanced past the repeated firing"
    );
}

/// Set schedule `id`'s next due time in the stopped broker's file.
async fn set_due(mesh: &Mesh, id: &str, due: u64) {
    let (store, _) = Store::open_with(&mesh.data_dir(), claudemesh::cap::TABLES).unwrap();
    let mut r = tables::load(&store)
        .unwrap()
        .into_iter()
        .find(|r| r.schedule.id.hex() == id)
        .unwrap();
    r.schedule.next_due_ms = due;
    let change = Change {
        put: vec![r],
        remove: vec![],
    };
    store.commit(Op::Cap(Box::new(change))).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn bad_schedules_are_refused_with_a_reason_and_nothing_is_kept() {
    let mesh = Mesh::start().await;
    let a = mesh.member("alice").await.connect().await;
    let refused = |r: Result<_, claudemesh::client::ClientError>| match r {
        Ok(_) => panic!("accepted"),
        Err(claudemesh::client::ClientError::Refused { code, message }) => (code, message),
        Err(e) => panic!("{e}"),
    };
    let (c, m) = refused(
        a.schedule(None, "x", When::At(now_ms() - 600_000), Priority::Next)
            .await,
    );
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("past"), "{m}");
    let bad_cron = When::Cron {
        expr: "every day".into(),
        tz: None,
    };
    let (c, m) = refused(a.schedule(None, "x", bad_cron, Priority::Next).await);
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("5-field"), "{m}");
    let bad_tz = When::Cron {
        expr: "0 9 * * *".into(),
        tz: Some("Atlantis/Capital".into()),
    };
    let (c, m) = refused(a.schedule(None, "x", bad_tz, Priority::Next).await);
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("time zone"), "{m}");
    let never = When::Cron {
        expr: "0 0 30 2 *".into(),
        tz: None,
    };
    let (c, m) = refused(a.schedule(None, "x", never, Priority::Next).await);
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("never"), "{m}");
    let e = a
        .schedule(Some("nobody"), "x", When::In(5), Priority::Next)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
    // Two of the three times at once (the MCP tool's and CLI's parameters).
    let e =
        claudemesh::cap::schedules::mcp::when(Some("2026-12-04T09:00:00Z"), Some(5), None, None)
            .unwrap_err();
    assert!(e.contains("exactly one"), "{e}");
    assert!(claudemesh::cap::schedules::mcp::when(Some("soon"), None, None, None).is_err());
    assert!(a.list_scheduled().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_members_schedules_are_dropped_unsent() {
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let (a, b) = (alice.connect().await, bob.connect().await);
    let s = a
        .schedule(
            Some("bob"),
            "from a former member",
            When::In(1),
            Priority::Now,
        )
        .await
        .unwrap();
    claudemesh::client::admin::call(
        &mesh.data_dir(),
        &claudemesh::proto::admin::AdminRequest::MemberRemove {
            mesh: "team".into(),
            name: "alice".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        next_message(&b, Duration::from_millis(2500))
            .await
            .is_none(),
        "nothing is sent in the name of a removed member"
    );
    let left = b.list_scheduled().await.unwrap();
    assert!(left.iter().all(|x| x.id != s.id), "{left:?}");
}
