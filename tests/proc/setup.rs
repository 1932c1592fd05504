//! Setting a machine up, through the real binary: `doctor`, `status` with per-session unread
//! counts, and `service install` (the systemd unit, checked with `systemd-analyze verify`
//! where it exists).

use crate::common;

use claudemesh::client::Dest;
use claudemesh::proto::Priority;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

/// A stand-in `claude` that answers `--version`.
fn fake_claude(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("claude");
    std::fs::write(&p, "#!/bin/sh\necho '9.9.9 (Claude Code)'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

async fn run(home: &Path, cc: &Path, claude: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("CLAUDEMESH_HOME", home)
        .env("CLAUDE_CONFIG_DIR", cc)
        .env("CLAUDEMESH_CLAUDE_BIN", claude)
        .env_remove("RUST_LOG");
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn checks(o: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
        .as_array()
        .unwrap()
        .clone()
}

fn check<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {all:?}"))
}

#[tokio::test]
async fn doctor_passes_every_check_on_a_set_up_machine() {
    let _machine = crate::shared();
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let cc = mesh.tmp.path().join("cc");
    let claude = fake_claude(mesh.tmp.path());
    assert!(run(&bob.home.dir, &cc, &claude, &["install"])
        .await
        .status
        .success());
    let o = run(&bob.home.dir, &cc, &claude, &["doctor"]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for name in [
        "claude: 9.9.9",
        "mcp entry",
        "hooks",
        "permissions",
        "keys: 1 mesh(es): team as bob",
        "broker team",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("✓ {name}"))),
            "missing ✓ {name} in:\n{text}"
        );
    }
    assert!(text.ends_with("all checks passed\n"), "{text}");
}

#[tokio::test]
async fn doctor_names_each_problem_with_its_fix_and_fails() {
    let _machine = crate::shared();
    let mut mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let cc = mesh.tmp.path().join("cc");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bob.home.config_path(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    mesh.stop().await;
    let o = run(
        &bob.home.dir,
        &cc,
        &mesh.tmp.path().join("no-claude"),
        &["doctor", "--json"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let all = checks(&o);
    for (name, fix) in [
        ("claude", "npm install -g @anthropic-ai/claude-code"),
        ("mcp entry", "claudemesh install"),
        ("hooks", "claudemesh install"),
        ("permissions", "chmod 600"),
        ("broker team", "claudemesh serve"),
    ] {
        let c = check(&all, name);
        assert_eq!(c["ok"], false, "{c}");
        assert!(c["fix"].as_str().unwrap().contains(fix), "{c}");
    }
    assert_eq!(check(&all, "keys")["ok"], true);

    // A corrupt Claude config is reported, not a crash.
    std::fs::create_dir_all(&cc).unwrap();
    std::fs::write(cc.join(".claude.json"), "{not json").unwrap();
    let o = run(
        &bob.home.dir,
        &cc,
        &mesh.tmp.path().join("no-claude"),
        &["doctor", "--json"],
    )
    .await;
    let all = checks(&o);
    assert!(check(&all, "claude config")["detail"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
}

#[tokio::test]
async fn status_shows_unread_messages_per_claude_code_session() {
    let _machine = crate::shared();
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    // A session of bob's ran here (the MCP server records it) and ended.
    let sid = "0b0b0b0b-1111-4222-8333-444455556666";
    let name = claudemesh::claude::session::peer_name("bob", sid);
    bob.home
        .record_session(&bob.mc.mesh_id, sid, &name)
        .unwrap();
    let mut o = claudemesh::client::ClientOptions::for_session(&bob.home, &bob.mc, sid, &name);
    o.request_timeout = WAIT;
    let s = claudemesh::client::Client::connect(o, WAIT).await.unwrap();
    s.close().await;
    let a = alice.connect().await;
    a.send(
        &[Dest::parse(&name)],
        "for the session",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    a.send(&[Dest::parse(&name)], "later", Priority::Low, None)
        .await
        .unwrap();
    a.send(
        &[Dest::parse("bob")],
        "for the terminal",
        Priority::Next,
        None,
    )
    .await
    .unwrap();

    let cc = mesh.tmp.path().join("cc");
    let claude = fake_claude(mesh.tmp.path());
    let out = run(&bob.home.dir, &cc, &claude, &["status", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &v[0];
    assert_eq!(row["unread"], 1, "{row}");
    assert_eq!(row["sessions"][0]["session_id"], sid, "{row}");
    assert_eq!(row["sessions"][0]["unread"], 2, "{row}");
    let out = run(&bob.home.dir, &cc, &claude, &["status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("session {name} ({sid}): 2 unread")),
        "{text}"
    );
    // Looking does not consume: the session still gets both.
    let mut o = claudemesh::client::ClientOptions::for_session(&bob.home, &bob.mc, sid, &name);
    o.push = false;
    let s = claudemesh::client::Client::connect(o, WAIT).await.unwrap();
    assert_eq!(s.pull_all().await.unwrap().len(), 2);
}

fn systemd_verify(unit: &Path) -> Option<Output> {
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .ok();
    if o.is_none() {
        eprintln!("skipped: systemd-analyze is not installed");
    }
    o
}

#[test]
fn service_install_writes_a_unit_that_systemd_analyze_accepts() {
    let _machine = crate::shared();
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args([
            "service",
            "install",
            "--no-start",
            "--public-url",
            "https://mesh.example.com",
            "--exe",
            BIN,
            "--unit-dir",
        ])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unit = d.path().join("claudemesh.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(&format!("ExecStart={BIN} serve --listen 127.0.0.1:7900 --data-dir /var/lib/claudemesh --public-url https://mesh.example.com")), "{text}");
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=claudemesh",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
    ] {
        assert!(text.contains(hardening), "{hardening} missing:\n{text}");
    }
    if let Some(v) = systemd_verify(&unit) {
        let msg = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(
            v.status.success() && msg.trim().is_empty(),
            "systemd-analyze verify: {msg}"
        );
    }
    // The shipped unit (systemd/claudemesh.service) passes too, with its binary in place.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/claudemesh.service"
    ))
    .unwrap();
    let shipped_unit = d.path().join("shipped").join("claudemesh.service");
    std::fs::create_dir_all(shipped_unit.parent().unwrap()).unwrap();
    std::fs::write(
        &shipped_unit,
        shipped.replace("/usr/local/bin/claudemesh", BIN),
    )
    .unwrap();
    if let Some(v) = systemd_verify(&shipped_unit) {
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
}

#[test]
fn service_install_dry_run_changes_nothing_and_bad_options_are_refused() {
    let _machine = crate::shared();
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["service", "install", "--dry-run", "--unit-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("--listen 0.0.0.0:7900")
            && text.contains("run `systemctl enable --now claudemesh.service`"),
        "{text}"
    );
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "a dry run writes nothing"
    );
    for (args, want) in [
        (
            vec!["--public-url", "mesh.example.com"],
            "http:// or https://",
        ),
        (vec!["--data-dir", "/srv/mesh"], "under /var/lib"),
        (vec!["--listen", "everywhere"], "--listen"),
    ] {
        let o = Command::new(BIN)
            .args(["service", "install", "--dry-run"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.starts_with("error: ") && e.contains(want),
            "{args:?}: {e}"
        );
    }
}
