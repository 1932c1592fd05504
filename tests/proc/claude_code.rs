//! The real Claude Code binary (npm `@anthropic-ai/claude-code`, which `.ci/run` installs
//! into `~/.cache/claudemesh/claude-code`) with an isolated HOME and CLAUDE_CONFIG_DIR:
//! `claude mcp list` after `claudemesh install`/`uninstall`, and `claude -p` sessions driven
//! by a scripted stand-in for the Anthropic Messages API (tests/fake_api) exchanging
//! messages through a real broker.
//!
//! Where the binary is: `CLAUDEMESH_TEST_CLAUDE`, else the cache above. Without it these
//! tests say "skipped" — except under CI (`CI` set), where a missing binary fails them.

use crate::common;
use crate::fake_api;

use claudemesh::client::Dest;
use claudemesh::proto::Priority;
use common::*;
use fake_api::{conversation_text, FakeApi, Reply};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

fn claude_bin() -> Option<PathBuf> {
    let p = std::env::var_os("CLAUDEMESH_TEST_CLAUDE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h).join(".cache/claudemesh/claude-code/node_modules/.bin/claude")
            })
        });
    match p.filter(|p| p.exists()) {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("the real claude binary is missing: .ci/run installs it (or set CLAUDEMESH_TEST_CLAUDE)")
        }
        None => {
            eprintln!(
                "skipped: no claude binary (run .ci/run once, or set CLAUDEMESH_TEST_CLAUDE)"
            );
            None
        }
    }
}

/// One Claude Code user: its own HOME, CLAUDE_CONFIG_DIR, working dir and claudemesh home.
struct User {
    root: PathBuf,
    claude: PathBuf,
    mesh_home: PathBuf,
    api: Option<String>,
}

impl User {
    fn new(root: &Path, claude: &Path, mesh_home: &Path) -> User {
        for d in ["home", "cc", "work"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        User {
            root: root.to_path_buf(),
            claude: claude.to_path_buf(),
            mesh_home: mesh_home.to_path_buf(),
            api: None,
        }
    }

    fn cc(&self) -> PathBuf {
        self.root.join("cc")
    }

    /// A command with only this user's environment (nothing leaks in from the host).
    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .current_dir(self.root.join("work"))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("CLAUDE_CONFIG_DIR", self.cc())
            .env("CLAUDEMESH_HOME", &self.mesh_home)
            .env("CLAUDEMESH_CLAUDE_BIN", &self.claude)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("ENABLE_TOOL_SEARCH", "false");
        // Only with the stand-in API: an API key alone makes Claude Code try to reach
        // api.anthropic.com (`claude mcp list` then waits ~19 s offline).
        if let Some(u) = &self.api {
            c.env("ANTHROPIC_BASE_URL", u)
                .env("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key");
        }
        c
    }

    async fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut c = self.cmd(program);
        c.args(args);
        let what = format!("{} {args:?}", program.display());
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        eprintln!(
            "--- {what}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `claudemesh launch ... -- -p PROMPT` with MCP tools allowed; inbox mode (print mode
    /// has no channels).
    async fn launch_print(&self, launch_args: &[&str], prompt: &str) -> Output {
        let mut args = vec!["launch"];
        args.extend_from_slice(launch_args);
        args.extend([
            "--message-mode",
            "inbox",
            "--",
            "-p",
            prompt,
            "--output-format",
            "json",
            "--allowedTools",
            "mcp__claudemesh__*",
        ]);
        self.run(Path::new(BIN), &args).await
    }
}

fn mcp_list_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn claude_mcp_list_shows_claudemesh_connected_after_install_and_uninstall_leaves_other_servers(
) {
    let _machine = crate::shared();
    let Some(claude) = claude_bin() else { return };
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let u = User::new(&mesh.tmp.path().join("u-bob"), &claude, &bob.home.dir);
    let other = json!({"type": "stdio", "command": "/nonexistent/other-server", "args": ["--flag"], "env": {"K": "v"}});
    std::fs::write(
        u.cc().join(".claude.json"),
        json!({"mcpServers": {"other": other}, "someSetting": [1, 2]}).to_string(),
    )
    .unwrap();

    let out = u.run(Path::new(BIN), &["install"]).await;
    assert!(out.status.success());
    let out = u.run(&claude, &["mcp", "list"]).await;
    let lines = mcp_list_lines(&out);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("claudemesh: ") && l.ends_with("mcp - ✔ Connected")),
        "claude mcp list shows claudemesh connected: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("other: /nonexistent/other-server --flag - ")),
        "{lines:?}"
    );

    let out = u.run(Path::new(BIN), &["uninstall"]).await;
    assert!(out.status.success());
    let out = u.run(&claude, &["mcp", "list"]).await;
    let lines = mcp_list_lines(&out);
    assert!(
        !lines.iter().any(|l| l.starts_with("claudemesh:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("other: /nonexistent/other-server --flag - ")),
        "{lines:?}"
    );
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(u.cc().join(".claude.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["mcpServers"]["other"], other,
        "the other server's entry is untouched"
    );
    assert_eq!(cfg["someSetting"], json!([1, 2]));
    assert!(cfg["mcpServers"].get("claudemesh").is_none());
}

/// The texts of the results of every call of the tool named `*name_suffix` in a request.
fn tool_result(body: &Value, name_suffix: &str) -> Vec<String> {
    let blocks: Vec<Value> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .cloned()
        .collect();
    let ids: Vec<&Value> = blocks
        .iter()
        .filter(|c| {
            c["type"] == "tool_use" && c["name"].as_str().is_some_and(|n| n.ends_with(name_suffix))
        })
        .map(|c| &c["id"])
        .collect();
    blocks
        .iter()
        .filter(|c| c["type"] == "tool_result" && ids.contains(&&c["tool_use_id"]))
        .map(|c| match &c["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
        .collect()
}

fn tool(name: &str, input: Value) -> Reply {
    Reply::Tool(format!("mcp__claudemesh__{name}"), input)
}

#[tokio::test]
async fn claude_sessions_a_sends_to_b_and_b_sees_it_once_attributed_to_a() {
    let _machine = crate::shared();
    let Some(claude) = claude_bin() else { return };
    let mesh = Mesh::start().await;
    let (alice_m, bob_m) = (mesh.member("alice").await, mesh.member("bob").await);
    let token = format!("token-{}", claudemesh::util::now_ms());

    // B: whoami; then (once A has sent) list_peers, whose result says 1 unread; then
    // check_messages; then done.
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let (ready_tx, sent_rx) = (
        std::sync::Mutex::new(ready_tx),
        std::sync::Mutex::new(sent_rx),
    );
    let b_api = FakeApi::start(move |step, _| match step {
        0 => tool("whoami", json!({})),
        1 => {
            let _ = ready_tx.lock().unwrap().send(());
            let _ = sent_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(90));
            tool("list_peers", json!({}))
        }
        2 => tool("check_messages", json!({})),
        _ => Reply::Text("done".into()),
    })
    .await;
    let t = token.clone();
    let a_api = FakeApi::start(move |step, _| match step {
        0 => tool(
            "send_message",
            json!({"to": "bob", "text": format!("please review {t}")}),
        ),
        _ => Reply::Text("sent".into()),
    })
    .await;

    let mut b = User::new(&mesh.tmp.path().join("u-bob"), &claude, &bob_m.home.dir);
    b.api = Some(b_api.url.clone());
    let mut a = User::new(&mesh.tmp.path().join("u-alice"), &claude, &alice_m.home.dir);
    a.api = Some(a_api.url.clone());
    for u in [&a, &b] {
        assert!(u.run(Path::new(BIN), &["install"]).await.status.success());
    }

    let b_task =
        tokio::spawn(async move { b.launch_print(&["--name", "bob"], "start work").await });
    // Once B is in its session, A sends.
    tokio::task::spawn_blocking(move || {
        ready_rx
            .recv_timeout(Duration::from_secs(90))
            .expect("B reached step 1")
    })
    .await
    .unwrap();
    let a_out = a
        .launch_print(&["--name", "alice"], "ask bob for a review")
        .await;
    assert!(a_out.status.success());
    let a_reqs = a_api.requests();
    let sent = tool_result(a_reqs.last().unwrap(), "send_message").join("");
    assert!(
        sent.contains("sent") && !sent.contains("error"),
        "A's send_message result: {sent}"
    );
    sent_tx.send(()).unwrap();

    let b_out = b_task.await.unwrap();
    assert!(b_out.status.success());
    let reqs = b_api.requests();
    let last = reqs.last().unwrap();
    assert_eq!(
        fake_api::step(last),
        3,
        "B ran whoami, list_peers, check_messages"
    );
    let peers = tool_result(last, "list_peers").join("");
    assert!(
        peers.contains("1 unread message(s) (use check_messages)"),
        "list_peers result: {peers}"
    );
    let got = tool_result(last, "check_messages").join("");
    assert!(
        got.contains(&token),
        "check_messages shows A's message: {got}"
    );
    assert!(
        got.contains("from peer \"alice\""),
        "attributed to A: {got}"
    );
    assert!(
        got.contains("<peer_message>"),
        "framed as untrusted peer text: {got}"
    );
    let all = conversation_text(last);
    assert_eq!(
        all.matches(&token).count(),
        1,
        "A's message is shown to B exactly once:\n{all}"
    );
}

#[tokio::test]
async fn claude_launch_resume_keeps_the_peer_identity_and_queued_messages() {
    let _machine = crate::shared();
    let Some(claude) = claude_bin() else { return };
    let mesh = Mesh::start().await;
    let bob_m = mesh.member("bob").await;
    let alice = mesh.member("alice").await;
    let token = format!("queued-{}", claudemesh::util::now_ms());

    // Each run: whoami, then done.
    let api = FakeApi::start(|step, _| match step {
        0 => tool("whoami", json!({})),
        _ => Reply::Text("done".into()),
    })
    .await;
    let mut b = User::new(&mesh.tmp.path().join("u-bob"), &claude, &bob_m.home.dir);
    b.api = Some(api.url.clone());
    assert!(b.run(Path::new(BIN), &["install"]).await.status.success());

    let out = b.launch_print(&[], "first").await;
    assert!(out.status.success());
    let first = api.requests();
    let who1 = tool_result(first.last().unwrap(), "whoami").join("");
    let sid = serde_json::from_str::<Value>(first[0]["metadata"]["user_id"].as_str().unwrap())
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The session's peer name is derived from the session id: `bob-<first 6>`.
    let name = claudemesh::claude::session::peer_name("bob", &sid);
    assert!(
        who1.contains(&name),
        "whoami names the session peer {name}: {who1}"
    );

    // While B is gone, A sends to it: the broker queues the message.
    let c = alice.connect().await;
    c.send(&[Dest::parse(&name)], &token, Priority::Next, None)
        .await
        .unwrap();

    let out = b.launch_print(&["--resume", &sid], "second").await;
    assert!(out.status.success());
    let second: Vec<Value> = api.requests()[first.len()..].to_vec();
    let last = second.last().unwrap();
    let sid2 = serde_json::from_str::<Value>(last["metadata"]["user_id"].as_str().unwrap())
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sid2, sid, "the resumed session keeps its id");
    // The same peer: whoami gives the same name and key as before.
    let who2 = tool_result(last, "whoami");
    // Name and peer key (the connection state and unread line may differ).
    let identity = |w: &str| -> String {
        w.lines()
            .filter(|l| l.starts_with("session ") || l.contains("you are"))
            .map(|l| l.split(", ").next().unwrap_or(l).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        identity(&who1).contains(&name) && identity(&who1).contains("(peer "),
        "{who1}"
    );
    assert_eq!(
        identity(who2.last().unwrap()),
        identity(&who1),
        "same identity after --resume"
    );
    // The queued message reached the resumed session (hook context on the prompt), once.
    let all = conversation_text(last);
    assert_eq!(
        all.matches(&token).count(),
        1,
        "the queued message is shown once:\n{all}"
    );
    assert!(
        all.contains("UserPromptSubmit hook additional context"),
        "delivered by the prompt hook:\n{all}"
    );
    // `install` registered the server and `launch` passed it again: one server, not two.
    let tools: Vec<&str> = last["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        tools
            .iter()
            .filter(|t| **t == "mcp__claudemesh__whoami")
            .count(),
        1,
        "{tools:?}"
    );
    assert!(all.contains("from peer \"alice\""), "{all}");
}

/// A tool result's sentence: Claude Code hands the model `structuredContent` (which holds
/// the sentence as `summary`) when a result has one, else the text.
fn summary(s: &str) -> String {
    serde_json::from_str::<Value>(s)
        .ok()
        .and_then(|v| v["summary"].as_str().map(str::to_string))
        .unwrap_or_else(|| s.to_string())
}

/// The first task or lease id (32 hex digits) in `s`.
fn hex_id(s: &str) -> Option<String> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(31)).find_map(|i| {
        let w = &s[i..i + 32];
        let edge = |j: usize| b.get(j).is_none_or(|c| !c.is_ascii_hexdigit());
        (w.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            && (i == 0 || edge(i - 1))
            && edge(i + 32))
        .then(|| w.to_string())
    })
}

#[tokio::test]
async fn claude_sessions_share_a_task_state_and_a_lease_a_creates_b_claims_and_completes_a_sees_it()
{
    let _machine = crate::shared();
    let Some(claude) = claude_bin() else { return };
    let mesh = Mesh::start().await;
    let (alice_m, bob_m) = (mesh.member("alice").await, mesh.member("bob").await);
    let token = format!("t{}", claudemesh::util::now_ms());

    // A: create a task, publish its plan in state, lease the file it is about.
    let t = token.clone();
    let a_api = FakeApi::start(move |step, _| match step {
        0 => tool(
            "create_task",
            json!({"title": format!("fix the parser {t}"), "tags": ["rust"]}),
        ),
        1 => tool(
            "set_state",
            json!({"key": format!("plan/{t}"), "value": {"owner": "alice", "step": 1}}),
        ),
        2 => tool(
            "reserve_files",
            json!({"paths": ["src/parser.rs"], "reason": format!("reading {t}")}),
        ),
        _ => Reply::Text("set up".into()),
    })
    .await;
    let mut a = User::new(&mesh.tmp.path().join("u-alice"), &claude, &alice_m.home.dir);
    a.api = Some(a_api.url.clone());
    let mut b = User::new(&mesh.tmp.path().join("u-bob"), &claude, &bob_m.home.dir);
    for u in [&a, &b] {
        assert!(u.run(Path::new(BIN), &["install"]).await.status.success());
    }
    assert!(a
        .launch_print(&["--name", "alice"], "set up the work")
        .await
        .status
        .success());
    let a_last = a_api.requests().last().unwrap().clone();
    let created = summary(&tool_result(&a_last, "create_task").join(""));
    let id = hex_id(&created).unwrap_or_else(|| panic!("create_task names the id: {created}"));
    let set = summary(&tool_result(&a_last, "set_state").join(""));
    assert!(set.contains("set plan/"), "set_state result: {set}");
    let reserved = summary(&tool_result(&a_last, "reserve_files").join(""));
    assert!(
        reserved.contains("reserved"),
        "reserve_files result: {reserved}"
    );

    // B: find the open task, claim it, run into A's lease, read A's plan, complete it.
    let t = token.clone();
    let b_api = FakeApi::start(move |step, body| match step {
        0 => tool("list_tasks", json!({"status": "open"})),
        1 => {
            let listed = summary(&tool_result(body, "list_tasks").join(""));
            let id = hex_id(&listed).unwrap_or_default();
            tool("claim_task", json!({"id": id}))
        }
        2 => tool("reserve_files", json!({"paths": ["src/*.rs"]})),
        3 => tool("get_state", json!({"key": format!("plan/{t}")})),
        4 => {
            let listed = summary(&tool_result(body, "list_tasks").join(""));
            let id = hex_id(&listed).unwrap_or_default();
            tool(
                "complete_task",
                json!({"id": id, "result": format!("fixed {t} in 4f2a")}),
            )
        }
        _ => Reply::Text("done".into()),
    })
    .await;
    b.api = Some(b_api.url.clone());
    assert!(b
        .launch_print(&["--name", "bob"], "pick up work")
        .await
        .status
        .success());
    let b_last = b_api.requests().last().unwrap().clone();
    assert!(summary(&tool_result(&b_last, "list_tasks").join("")).contains(&id));
    let claimed = summary(&tool_result(&b_last, "claim_task").join(""));
    assert!(claimed.starts_with("claimed"), "B won the claim: {claimed}");
    let lease = summary(&tool_result(&b_last, "reserve_files").join(""));
    assert!(
        lease.contains("not reserved") && lease.contains("alice") && lease.contains(&token),
        "B is told A holds the file, and why: {lease}"
    );
    let plan = summary(&tool_result(&b_last, "get_state").join(""));
    assert!(
        plan.contains("\"owner\":\"alice\""),
        "B reads A's state: {plan}"
    );
    let done = summary(&tool_result(&b_last, "complete_task").join(""));
    assert!(done.starts_with("completed"), "{done}");

    // A again: the task shows B's result.
    let tid = id.clone();
    let a2_api = FakeApi::start(move |step, _| match step {
        0 => tool("get_task", json!({"id": tid})),
        _ => Reply::Text("seen".into()),
    })
    .await;
    a.api = Some(a2_api.url.clone());
    assert!(a
        .launch_print(&["--name", "alice"], "check the task")
        .await
        .status
        .success());
    let seen = summary(&tool_result(a2_api.requests().last().unwrap(), "get_task").join(""));
    assert!(
        seen.contains("completed") && seen.contains(&format!("fixed {token} in 4f2a")),
        "A sees B's result: {seen}"
    );
    assert!(
        seen.contains("claimed") && seen.contains("bob"),
        "with its history: {seen}"
    );
}
