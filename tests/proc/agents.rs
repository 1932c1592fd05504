//! Other coding agents as peers, with the real CLIs: OpenAI Codex CLI, Google Gemini CLI and
//! opencode (npm packages that `.ci/run` installs, pinned, into `~/.cache/claudemesh/<name>`),
//! each set up with `claudemesh install --client NAME` in an isolated HOME and driven by a
//! scripted stand-in for its model API (tests/fake_api) against a real broker.
//!
//! These clients exit 0 even when a tool call failed, so every test checks delivery at the
//! recipient (and what the model was shown), never the exit code alone.
//!
//! Where the binaries are: `CLAUDEMESH_TEST_CODEX` / `_GEMINI` / `_OPENCODE`, else the cache
//! above. Without one its tests say "skipped" — except under CI (`CI` set), where a missing
//! binary fails them.

use crate::common;
use crate::fake_api;

use claudemesh::client::{Client, Dest};
use claudemesh::proto::{DeliveryState, Id16, Priority};
use common::*;
use fake_api::{conversation_text, FakeApi, Reply, Wire};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Codex,
    Gemini,
    Opencode,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Codex => "codex",
            Kind::Gemini => "gemini",
            Kind::Opencode => "opencode",
        }
    }

    fn wire(self) -> Wire {
        match self {
            Kind::Codex => Wire::Responses,
            Kind::Gemini => Wire::Gemini,
            Kind::Opencode => Wire::Chat,
        }
    }

    fn bin(self) -> Option<PathBuf> {
        let var = format!("CLAUDEMESH_TEST_{}", self.name().to_uppercase());
        let p = std::env::var_os(&var).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h).join(format!(
                    ".cache/claudemesh/{0}/node_modules/.bin/{0}",
                    self.name()
                ))
            })
        });
        match p.filter(|p| p.exists()) {
            Some(p) => Some(p),
            None if std::env::var_os("CI").is_some() => panic!(
                "the real {} binary is missing: .ci/run installs it (or set {var})",
                self.name()
            ),
            None => {
                eprintln!(
                    "skipped: no {} binary (run .ci/run once, or set {var})",
                    self.name()
                );
                None
            }
        }
    }
}

/// One agent user: its own HOME (with the client's config), working dir and claudemesh home.
struct User {
    kind: Kind,
    bin: PathBuf,
    root: PathBuf,
    mesh_home: PathBuf,
}

impl User {
    fn new(kind: Kind, bin: PathBuf, root: &Path, mesh_home: &Path) -> User {
        for d in ["home", "work"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        User {
            kind,
            bin,
            root: root.to_path_buf(),
            mesh_home: mesh_home.to_path_buf(),
        }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// A command with only this user's environment.
    fn cmd(&self, program: &Path) -> Command {
        let home = self.home();
        let mut c = Command::new(program);
        c.env_clear()
            .current_dir(self.work())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("TERM", "dumb")
            .env("CLAUDEMESH_HOME", &self.mesh_home);
        match self.kind {
            Kind::Codex => {
                c.env("CODEX_HOME", home.join(".codex"))
                    .env("LOCAL_API_KEY", "dummy");
            }
            Kind::Gemini => {
                c.env("XDG_CACHE_HOME", home.join(".cache"));
            }
            Kind::Opencode => {
                // opencode installs its provider packages from npm on first use: keep that
                // cache across runs and tests.
                let cache = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default()
                    .join(".cache/claudemesh/opencode-cache");
                c.env("XDG_CACHE_HOME", cache)
                    .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
                    .env("OPENCODE_DISABLE_AUTOUPDATE", "1");
            }
        }
        c
    }

    /// The client's own settings pointing at the stand-in API (written before
    /// `claudemesh install --client`, which must keep them), then the install itself.
    async fn set_up(&self, api: &FakeApi) {
        let home = self.home();
        let url = &api.url;
        match self.kind {
            Kind::Codex => {
                std::fs::create_dir_all(home.join(".codex")).unwrap();
                let cfg = format!(
                    "# written by the test\nmodel = \"test-model\"\nmodel_provider = \"local\"\napproval_policy = \"never\"\n\n\
[model_providers.local]\nname = \"local\"\nbase_url = \"{url}/v1\"\nwire_api = \"responses\"\nenv_key = \"LOCAL_API_KEY\"\n\
request_max_retries = 0\nstream_max_retries = 0\n"
                );
                std::fs::write(home.join(".codex/config.toml"), cfg).unwrap();
            }
            Kind::Gemini => {
                std::fs::create_dir_all(home.join(".gemini")).unwrap();
                let cfg = json!({
                    "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}},
                    "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
                    "privacy": {"usageStatisticsEnabled": false},
                    "telemetry": {"enabled": false}
                });
                std::fs::write(home.join(".gemini/settings.json"), cfg.to_string()).unwrap();
            }
            Kind::Opencode => {
                std::fs::create_dir_all(home.join(".config/opencode")).unwrap();
                let cfg = json!({
                    "autoupdate": false, "share": "disabled", "model": "local/m", "small_model": "local/m",
                    "provider": {"local": {"npm": "@ai-sdk/openai-compatible", "name": "local",
                        "options": {"baseURL": format!("{url}/v1"), "apiKey": "dummy"},
                        "models": {"m": {"name": "m", "tool_call": true}}}}
                });
                std::fs::write(home.join(".config/opencode/opencode.json"), cfg.to_string())
                    .unwrap();
            }
        }
        let out = self
            .run(
                Path::new(BIN),
                &["install", "--client", self.kind.name()],
                &[],
            )
            .await;
        assert!(
            out.status.success(),
            "install --client {}",
            self.kind.name()
        );
    }

    async fn run(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(program);
        c.args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null());
        let what = format!("{} {args:?}", program.display());
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        eprintln!(
            "--- {what}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .take(4000)
                .collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(4000)
                .collect::<String>()
        );
        out
    }

    /// One non-interactive run of the agent with `prompt`.
    async fn prompt(&self, api: &FakeApi, prompt: &str, env: &[(&str, &str)]) -> Output {
        let model_env = [
            ("GEMINI_API_KEY", "dummy"),
            ("GOOGLE_GEMINI_BASE_URL", api.url.as_str()),
        ];
        let mut env = env.to_vec();
        if self.kind == Kind::Gemini {
            env.extend(model_env);
        }
        let args: Vec<&str> = match self.kind {
            Kind::Codex => vec!["exec", "--skip-git-repo-check", "--json", prompt],
            Kind::Gemini => vec!["-p", prompt, "-o", "stream-json", "-m", "gemini-2.5-flash"],
            Kind::Opencode => vec!["run", "--format", "json", prompt],
        };
        let bin = self.bin.clone();
        self.run(&bin, &args, &env).await
    }
}

/// The model's view at the end of a run: everything its last request held.
fn last_seen(api: &FakeApi) -> String {
    api.requests()
        .last()
        .map(conversation_text)
        .unwrap_or_default()
}

/// The reading state of a message at its sender, for one recipient.
async fn state(c: &Client, id: Id16) -> DeliveryState {
    let (rs, unnamed) = c.message_status(id).await.unwrap();
    if unnamed > 0 {
        return DeliveryState::Read;
    }
    rs.first().map(|r| r.state).unwrap_or(DeliveryState::Queued)
}

/// Each step: call `tool` with `args`, or end the turn.
fn script(
    steps: Vec<(&'static str, Value)>,
) -> impl Fn(usize, &Value) -> Reply + Send + Sync + 'static {
    move |step, _| match steps.get(step) {
        Some((tool, args)) => Reply::Tool(tool.to_string(), args.clone()),
        None => Reply::Text("done".into()),
    }
}

/// An agent sends a message to bob and, in a second run in push mode, receives both bob's
/// reply (queued while it was gone) and a message pushed while it runs via check_messages.
/// Returns the agent's peer name (the same in both runs).
async fn round_trip(kind: Kind) -> Option<(Mesh, User, Arc<Client>, String)> {
    let bin = kind.bin()?;
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = Arc::new(bob.connect().await);
    let u = User::new(
        kind,
        bin,
        &mesh.tmp.path().join(format!("u-{}", kind.name())),
        &alice.home.dir,
    );

    // Run 1: whoami, then send to bob (Gemini's model sets wait_for_previous, as Gemini
    // tells it to on dependent calls).
    let mut send = json!({"to": "bob", "text": format!("hello from {}", kind.name())});
    if kind == Kind::Gemini {
        send["wait_for_previous"] = json!(true);
    }
    let api = FakeApi::start_wire(
        kind.wire(),
        script(vec![("whoami", json!({})), ("send_message", send)]),
    )
    .await;
    u.set_up(&api).await;
    u.prompt(&api, "say hello to bob", &[]).await;
    let got = next_message(&b, WAIT).await.unwrap_or_else(|| {
        panic!(
            "{}: bob got nothing; the model saw: {}",
            kind.name(),
            last_seen(&api)
        )
    });
    assert_eq!(got.text, format!("hello from {}", kind.name()));
    let peer = got.from.clone();
    assert!(
        peer.starts_with(&format!("alice-{}-", kind.name())),
        "{peer}"
    );
    let seen1 = last_seen(&api);
    assert!(seen1.contains(&format!("you are \"{peer}\"")), "{seen1}");
    b.ack(&[got.msg_id]);

    // While the agent is gone, bob answers; the answer waits for it.
    let reply = b
        .send(
            &[Dest::parse(&peer)],
            &format!("reply to {}", kind.name()),
            Priority::Next,
            None,
        )
        .await
        .unwrap();

    // Run 2, push mode: after whoami, bob sends again and waits until the broker has
    // handed it to the running session; then the model calls check_messages.
    let (b2, peer2, rt) = (b.clone(), peer.clone(), tokio::runtime::Handle::current());
    let pushed = Arc::new(std::sync::Mutex::new(None));
    let pushed2 = pushed.clone();
    let api2 = FakeApi::start_wire(kind.wire(), move |step, _| match step {
        0 => Reply::Tool("whoami".into(), json!({})),
        1 => {
            let id = rt.block_on(async {
                let r = b2
                    .send(
                        &[Dest::parse(&peer2)],
                        "pushed while running",
                        Priority::Now,
                        None,
                    )
                    .await
                    .unwrap();
                let deadline = tokio::time::Instant::now() + WAIT;
                while state(&b2, r.msg_id).await == DeliveryState::Queued
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r.msg_id
            });
            *pushed2.lock().unwrap() = Some(id);
            Reply::Tool("check_messages".into(), json!({}))
        }
        _ => Reply::Text("done".into()),
    })
    .await;
    u.set_up(&api2).await;
    u.prompt(
        &api2,
        "check your messages",
        &[("CLAUDEMESH_MESSAGE_MODE", "push")],
    )
    .await;
    let seen2 = last_seen(&api2);
    assert!(
        seen2.contains(&format!("you are \"{peer}\"")),
        "the same peer as run 1: {seen2}"
    );
    assert!(
        seen2.contains(&format!("reply to {}", kind.name())),
        "{seen2}"
    );
    assert!(
        seen2.contains("pushed while running"),
        "a message pushed while the client ran is in check_messages: {seen2}"
    );
    assert!(seen2.contains("from peer \"bob\""));
    let pushed_id = pushed.lock().unwrap().expect("the script ran step 1");
    for id in [reply.msg_id, pushed_id] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while state(&b, id).await != DeliveryState::Read {
            assert!(
                tokio::time::Instant::now() < deadline,
                "shown by check_messages but not acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some((mesh, u, b, peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_sends_and_receives_and_five_runs_in_one_directory_are_one_peer() {
    let _machine = crate::shared();
    let Some((_mesh, u, b, peer)) = round_trip(Kind::Codex).await else {
        return;
    };
    // Runs 3 to 5 in the same directory: still the same peer.
    for _ in 0..3 {
        let api = FakeApi::start_wire(Wire::Responses, script(vec![("whoami", json!({}))])).await;
        u.set_up(&api).await;
        u.prompt(&api, "who am I?", &[]).await;
        assert!(
            last_seen(&api).contains(&format!("you are \"{peer}\"")),
            "{}",
            last_seen(&api)
        );
    }
    let codex_peers: Vec<String> = b
        .list_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("alice-codex"))
        .collect();
    assert_eq!(codex_peers, vec![peer], "five runs, one peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_sends_with_wait_for_previous_and_receives() {
    let _machine = crate::shared();
    round_trip(Kind::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_sends_and_receives() {
    let _machine = crate::shared();
    round_trip(Kind::Opencode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_session_in_a_directory_with_a_claude_code_transcript_keeps_its_own_identity_and_messages(
) {
    let _machine = crate::shared();
    let Some(bin) = Kind::Codex.bin() else { return };
    let mesh = Mesh::start().await;
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    let b = bob.connect().await;
    let u = User::new(
        Kind::Codex,
        bin,
        &mesh.tmp.path().join("u-codex"),
        &alice.home.dir,
    );
    // Claude Code has run here: its transcript is the newest in the project dir, and its
    // session (a peer, made by its hook) has a message waiting.
    let claude_session = "c1a0de00-1111-4222-8333-444455556666";
    let work = u.work();
    let project = u
        .home()
        .join(".claude/projects")
        .join(claudemesh::claude::session::project_dir_name(&work));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join(format!("{claude_session}.jsonl")), "{}\n").unwrap();
    let mut hook = u.cmd(Path::new(BIN));
    hook.args(["hook", "working"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = hook.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({"session_id": claude_session}).to_string().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let for_claude = b
        .send(
            &[Dest::parse("alice-c1a0de")],
            "for the claude code session",
            Priority::Now,
            None,
        )
        .await
        .unwrap();

    let api = FakeApi::start_wire(
        Wire::Responses,
        script(vec![("whoami", json!({})), ("check_messages", json!({}))]),
    )
    .await;
    u.set_up(&api).await;
    u.prompt(&api, "check messages", &[]).await;
    let seen = last_seen(&api);
    assert!(seen.contains("you are \"alice-codex-"), "{seen}");
    assert!(seen.contains("No new messages"), "{seen}");
    assert!(
        !seen.contains("for the claude code session") && !seen.contains(claude_session),
        "{seen}"
    );
    assert_ne!(
        state(&b, for_claude.msg_id).await,
        DeliveryState::Read,
        "the Claude Code session's message was taken"
    );
}
