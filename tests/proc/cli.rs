//! The real binary: `serve` as a child process, and the README walkthrough through the CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker {
    child: Child,
    data: PathBuf,
}

impl Broker {
    fn start(data: &Path, port: u16) -> Broker {
        let child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let b = Broker {
            child,
            data: data.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && data.join("admin.sock").exists()
            {
                return b;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("broker did not start");
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    /// Run the CLI as `who` (its own CLAUDEMESH_HOME).
    fn run(&self, who: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env(
                "CLAUDEMESH_HOME",
                self.tmp.path().join(format!("home-{who}")),
            )
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
    fn ok(&self, who: &str, args: &[&str]) -> String {
        let o = self.run(who, args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    /// Runs a command that must fail; returns its one-line reason.
    fn fails(&self, who: &str, args: &[&str]) -> String {
        let o = self.run(who, args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8(o.stderr).unwrap();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one-line error expected, got: {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        lines[0].to_string()
    }
    fn create_mesh(&self, extra: &[&str]) -> String {
        let data = self.data();
        let mut args = vec![
            "mesh",
            "create",
            "team",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.ok("op", &args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["invite"].as_str().unwrap().to_string()
    }
    fn invite(&self, extra: &[&str]) -> String {
        let data = self.data();
        let mut args = vec![
            "invite",
            "team",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&self.ok("op", &args)).unwrap();
        v["invite"].as_str().unwrap().to_string()
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn readme_walkthrough_serve_create_join_send_inbox() {
    let _machine = crate::shared();
    let env = Env::new();
    let _broker = Broker::start(&env.data(), free_port());
    let invite = env.create_mesh(&[]);
    assert!(invite.starts_with("claudemesh://join/"));
    assert!(env
        .ok("alice", &["join", &invite, "--name", "alice"])
        .contains("joined mesh 'team' as alice"));
    env.ok("bob", &["join", &invite, "--name", "bob"]);

    let out = json(&env.ok("alice", &["send", "bob", "review PR 42 please", "--json"]));
    assert_eq!(out["recipients"], 1);
    let id = out["id"].as_str().unwrap().to_string();

    let inbox = json(&env.ok("bob", &["inbox", "--json"]));
    let msgs = inbox.as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["from"], "alice");
    assert_eq!(m["to"], "bob");
    assert_eq!(m["text"], "review PR 42 please");
    assert_eq!(m["priority"], "next");
    assert!(m["sent_at"].as_str().unwrap().ends_with('Z'));
    // Printed messages were acknowledged: the inbox is now empty.
    assert_eq!(
        json(&env.ok("bob", &["inbox", "--json"])),
        serde_json::json!([])
    );

    // Groups and broadcast through the CLI.
    env.ok("bob", &["group", "join", "eng", "--role", "lead"]);
    env.ok("alice", &["send", "@eng", "standup", "--priority", "now"]);
    env.ok("alice", &["send", "*", "lunch", "--priority", "low"]);
    let texts: Vec<String> = json(&env.ok("bob", &["inbox", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["standup", "lunch"]);

    // Human output, peers, whoami, status, mesh list.
    env.ok("alice", &["send", "bob", "plain text please"]);
    let human = env.ok("bob", &["inbox"]);
    assert!(
        human.contains("alice → bob (next): plain text please"),
        "{human}"
    );
    let peers = json(&env.ok("alice", &["peers", "--json"]));
    let names: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"alice") && names.contains(&"bob"));
    let bob = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bob")
        .unwrap();
    assert_eq!(bob["groups"][0]["group"], "eng");
    let who = json(&env.ok("alice", &["whoami", "--json"]));
    assert_eq!(
        (who[0]["mesh"].as_str(), who[0]["name"].as_str()),
        (Some("team"), Some("alice"))
    );
    let st = json(&env.ok("alice", &["status", "--json"]));
    assert_eq!(st[0]["connected"], true);
    assert!(st[0]["rtt_ms"].as_f64().unwrap() >= 0.0);
    let list = env.ok(
        "op",
        &["mesh", "list", "--data-dir", env.data().to_str().unwrap()],
    );
    assert!(
        list.contains("team") && list.contains("members 2"),
        "{list}"
    );
}

#[test]
fn coordination_verbs_answer_json_state_task_lease_schedule_context_and_info() {
    let _machine = crate::shared();
    let env = Env::new();
    let _broker = Broker::start(&env.data(), free_port());
    let invite = env.create_mesh(&[]);
    env.ok("alice", &["join", &invite, "--name", "alice"]);
    env.ok("bob", &["join", &invite, "--name", "bob"]);

    // state: a write, a read by another member, a lost compare-and-set as a typed answer.
    let w = json(&env.ok(
        "alice",
        &["state", "set", "deploy", r#"{"env":"prod"}"#, "--json"],
    ));
    assert_eq!(w["version"], 1, "{w}");
    let g = json(&env.ok("bob", &["state", "get", "deploy", "--json"]));
    assert_eq!(g["value"]["env"], "prod", "{g}");
    let lost = json(&env.ok(
        "bob",
        &["state", "set", "deploy", "x", "--if-version", "7", "--json"],
    ));
    assert_eq!(
        (&lost["applied"], &lost["current"]["version"]),
        (&serde_json::json!(false), &serde_json::json!(1)),
        "{lost}"
    );

    // tasks: created by alice, claimed and completed by bob, the result seen by alice.
    let t = json(&env.ok("alice", &["task", "create", "fix the flaky test", "--json"]));
    let id = t["id"].as_str().unwrap().to_string();
    let c = json(&env.ok("bob", &["task", "claim", &id, "--json"]));
    assert_eq!(
        (&c["claimed"], &c["task"]["claimed_by"]),
        (&serde_json::json!(true), &serde_json::json!("bob")),
        "{c}"
    );
    env.ok(
        "bob",
        &["task", "complete", &id, "--result", "port 0", "--json"],
    );
    let got = json(&env.ok("alice", &["task", "get", &id, "--json"]));
    assert_eq!(
        (got["status"].as_str(), got["result"].as_str()),
        (Some("completed"), Some("port 0")),
        "{got}"
    );

    // leases: granted, then listed with their holder.
    let r = json(&env.ok(
        "alice",
        &[
            "lease",
            "reserve",
            "src/parser.rs",
            "--reason",
            "refactor",
            "--json",
        ],
    ));
    assert!(r.to_string().contains("src/parser.rs"), "{r}");
    let l = json(&env.ok("bob", &["lease", "list", "--json"]));
    assert!(l.to_string().contains("refactor"), "{l}");

    // schedules: added, listed, cancelled.
    let s = json(&env.ok(
        "alice",
        &[
            "schedule",
            "add",
            "stand-up",
            "--cron",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Berlin",
            "--json",
        ],
    ));
    let sid = s["id"].as_str().unwrap().to_string();
    let all = json(&env.ok("alice", &["schedule", "list", "--json"]));
    assert!(all.to_string().contains(&sid), "{all}");
    env.ok("alice", &["schedule", "cancel", &sid, "--json"]);
    let err = env.fails("alice", &["schedule", "add", "x", "--cron", "61 * * * *"]);
    assert!(err.contains("cron"), "{err}");

    // context: shared by alice, found by bob.
    let shared = json(&env.ok(
        "alice",
        &[
            "context",
            "share",
            "the parser recurses",
            "--file",
            "src/parser.rs",
            "--tag",
            "parser",
            "--json",
        ],
    ));
    let cid = shared["id"].as_str().unwrap().to_string();
    let hits = json(&env.ok("bob", &["context", "get", "parser.rs", "--json"]));
    assert_eq!(hits[0]["context"]["id"], cid.as_str(), "{hits}");

    // clock: none, then set (at a mesh time), shown, a reminder on mesh time.
    assert_eq!(
        json(&env.ok("bob", &["clock", "show", "--json"])),
        serde_json::Value::Null
    );
    let c = json(&env.ok(
        "alice",
        &[
            "clock",
            "set",
            "10",
            "--start",
            "2027-01-04T09:00:00Z",
            "--json",
        ],
    ));
    assert_eq!(
        (c["speed"].as_u64(), c["paused"].as_bool()),
        (Some(10), Some(false)),
        "{c}"
    );
    let shown = env.ok("bob", &["clock", "show"]);
    assert!(
        shown.contains("2027-01-04T09:0") && shown.contains("x10"),
        "{shown}"
    );
    let s = json(&env.ok(
        "alice",
        &[
            "schedule",
            "add",
            "mesh-time stand-up",
            "--in",
            "1h",
            "--mesh-time",
            "--json",
        ],
    ));
    assert_eq!(s["mesh_clock"], true, "{s}");
    let err = env.fails("alice", &["clock", "set", "0"]);
    assert!(err.contains("1..=100"), "{err}");

    // info: the whole mesh in one answer.
    let info = json(&env.ok("bob", &["info", "--json"]));
    assert_eq!(info["contexts"], 1, "{info}");
    assert_eq!(info["schedules"], 1, "{info}");
    assert!(
        info["clock"].as_str().unwrap_or_default().contains("x10"),
        "{info}"
    );
}

#[test]
fn a_message_survives_sigkill_of_the_broker_between_send_and_inbox() {
    let _machine = crate::shared();
    let env = Env::new();
    let port = free_port();
    let mut broker = Broker::start(&env.data(), port);
    let invite = env.create_mesh(&[]);
    env.ok("alice", &["join", &invite, "--name", "alice"]);
    env.ok("bob", &["join", &invite, "--name", "bob"]);
    env.ok("alice", &["send", "bob", "written before the crash"]);
    broker.kill9();
    // While the broker is down the CLI fails with one clear line.
    let e = env.fails("alice", &["send", "bob", "x"]);
    assert!(
        e.contains("cannot reach") || e.contains("not connected"),
        "{e}"
    );
    let _broker = Broker::start(&broker.data, port);
    let inbox = json(&env.ok("bob", &["inbox", "--json"]));
    assert_eq!(inbox[0]["text"], "written before the crash");
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let _machine = crate::shared();
    let env = Env::new();
    let mut broker = Broker::start(&env.data(), free_port());
    let pid = broker.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = broker.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "broker did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !env.data().join("admin.sock").exists(),
        "admin socket removed"
    );
    assert!(env.data().join("claudemesh.redb").exists());
}

#[test]
fn cli_errors_are_one_line_and_non_zero() {
    let _machine = crate::shared();
    let env = Env::new();
    let _broker = Broker::start(&env.data(), free_port());
    let invite = env.create_mesh(&[]);
    env.ok("alice", &["join", &invite, "--name", "alice"]);

    // Name already used.
    let e = env.fails("mallory", &["join", &invite, "--name", "alice"]);
    assert!(e.contains("already used"), "{e}");
    // Expired invite.
    let short = env.invite(&["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(1100));
    let e = env.fails("late", &["join", &short, "--name", "late"]);
    assert!(e.contains("expired"), "{e}");
    // Tampered invite.
    let (signed, _) = invite.split_once('#').unwrap();
    let e = env.fails(
        "t",
        &[
            "join",
            &format!("{signed}#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "--name",
            "t",
        ],
    );
    assert!(e.contains("altered"), "{e}");
    let e = env.fails("t", &["join", "claudemesh://join/nonsense", "--name", "t"]);
    assert!(e.contains("not a claudemesh invite"), "{e}");
    // Used-up invite.
    let one = env.invite(&["--uses", "1"]);
    env.ok("u1", &["join", &one, "--name", "u1"]);
    let e = env.fails("u2", &["join", &one, "--name", "u2"]);
    assert!(e.contains("used up"), "{e}");
    // Unknown target, oversized message.
    let e = env.fails("alice", &["send", "nobody", "hi"]);
    assert!(e.contains("unknown peer 'nobody'"), "{e}");
    let big = "x".repeat(70_000);
    let e = env.fails("alice", &["send", "u1", &big]);
    assert!(e.contains("the limit is 65536 bytes"), "{e}");
    // Bad flags: argh's usage error, non-zero, naming the bad value.
    let o = env.run("alice", &["send", "u1", "hi", "--priority", "urgent"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown priority 'urgent'"));
    let e = env.fails("nobody", &["peers"]);
    assert!(e.contains("not joined"), "{e}");
    // The broker is still fine.
    env.ok("alice", &["send", "u1", "still works"]);
}

#[test]
fn serve_refuses_a_bad_listen_address_with_one_line() {
    let _machine = crate::shared();
    let o = Command::new(BIN)
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid --listen address"), "{err}");
}
