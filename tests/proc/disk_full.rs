//! A real full disk: the broker's data dir on a tiny tmpfs. Sends fail with a clear error,
//! the broker stays up, nothing acknowledged is lost, and it recovers when space returns.
//! Needs permission to mount a tmpfs (root, as in CI); elsewhere it says so and passes.

use crate::common;

use claudemesh::broker::Server;
use claudemesh::client::{enroll, Client, ClientOptions, Dest, Home};
use claudemesh::proto::{ErrorCode, Priority, Role};
use std::process::Command;
use std::time::Duration;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_gives_clear_errors_loses_nothing_acknowledged_and_recovers() {
    let _machine = crate::shared();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&data)
        .status()
        .map(|s| s.success());
    if !matches!(ok, Ok(true)) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); the injected-failure test in tests/hostile.rs covers the logic");
        return;
    }
    let _mount = Mount(data.clone());
    let server = Server::start(common::test_config(&data)).await.unwrap();
    let owner = Home {
        dir: tmp.path().join("owner"),
    };
    let om = enroll::create_mesh(&owner, &data, "team").await.unwrap();
    let invite = enroll::make_invite(
        &data,
        &om,
        Role::Member,
        claudemesh::util::now_ms() + 600_000,
        None,
    )
    .await
    .unwrap();
    let member = |n: &'static str| {
        let home = Home {
            dir: tmp.path().join(n),
        };
        let invite = invite.clone();
        async move {
            let (mc, _) = enroll::join(&home, &invite, n).await.unwrap();
            let mut o = ClientOptions::for_session(&home, &mc, "cli", n);
            o.request_timeout = Duration::from_secs(10);
            o
        }
    };
    let (ao, bo) = (member("alice").await, member("bob").await);
    let a = Client::connect(ao, Duration::from_secs(10)).await.unwrap();
    let big = "d".repeat(60_000);
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        match a
            .send(
                &[Dest::parse("bob")],
                &format!("{i}:{big}"),
                Priority::Low,
                None,
            )
            .await
        {
            Ok(_) => acked.push(i),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("the 3 MiB disk filled up");
    assert_eq!(e.code(), Some(ErrorCode::Storage), "{e}");
    assert!(e.to_string().contains("could not store"), "{e}");
    assert!(!acked.is_empty());
    println!(
        "disk filled after {} acknowledged 60 KB messages; error: {e}",
        acked.len()
    );
    // Still serving while the disk is full.
    a.ping().await.unwrap();
    assert!(
        a.list_peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "alice"),
        "peer lists still answer"
    );
    // Space returns.
    assert!(Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let mut recovered = false;
    for _ in 0..20 {
        if a.send(
            &[Dest::parse("bob")],
            "after the disk was grown",
            Priority::Low,
            None,
        )
        .await
        .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "sends work again once there is space");
    // Every acknowledged message is there for bob.
    let b = Client::connect(bo, Duration::from_secs(10)).await.unwrap();
    let mut texts = Vec::new();
    loop {
        let batch = b.pull().await.unwrap();
        if batch.is_empty() {
            break;
        }
        b.ack(&batch.iter().map(|m| m.msg_id).collect::<Vec<_>>());
        texts.extend(
            batch
                .into_iter()
                .map(|m| m.text.split(':').next().unwrap_or("").to_string()),
        );
    }
    for i in &acked {
        assert!(
            texts.contains(&i.to_string()),
            "acknowledged message {i} was lost"
        );
    }
    assert!(texts.iter().any(|t| t == "after the disk was grown"));
    drop((a, b));
    server.shutdown().await;
}
