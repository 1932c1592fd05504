//! `claudemesh launch` against a stand-in `claude` (CLAUDEMESH_CLAUDE_BIN) that records its
//! arguments and environment and exits with a chosen code.

use crate::common;

use common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

fn stub(dir: &std::path::Path, code: i32) -> std::path::PathBuf {
    let p = dir.join("claude");
    let out = dir.join("record.txt");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf 'ARG %s\\n' \"$a\"; done > '{o}'\nenv | grep -E '^(CLAUDEMESH_|MCP_|MAX_MCP)' | sed 's/^/ENV /' >> '{o}'\nexit {code}\n",
            o = out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn record(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let t = std::fs::read_to_string(dir.join("record.txt")).unwrap();
    let args = t
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .map(str::to_string)
        .collect();
    let env = t
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(str::to_string)
        .collect();
    (args, env)
}

#[tokio::test]
async fn launch_runs_claude_with_session_server_channel_and_env_and_passes_the_exit_code() {
    let _machine = crate::shared();
    let mesh = Mesh::start().await;
    let dir = tempfile::tempdir().unwrap();
    let claude = stub(dir.path(), 7);
    let home = mesh.tmp.path().join("home-launch");
    let invite = mesh.invite.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "launch",
                "--join",
                &invite,
                "--name",
                "sam",
                "--groups",
                "eng,web:lead",
                "-y",
                "--",
                "--model",
                "opus",
            ])
            .env("CLAUDEMESH_HOME", &home)
            .env("CLAUDEMESH_CLAUDE_BIN", &claude)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "claude's exit code is passed through: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (args, env) = record(dir.path());
    let sid = &args[args
        .iter()
        .position(|a| a == "--session-id")
        .expect("--session-id")
        + 1];
    assert!(claudemesh::claude::session::valid_session_id(sid));
    let cfg = &args[args.iter().position(|a| a == "--mcp-config").unwrap() + 1];
    let v: serde_json::Value = serde_json::from_str(cfg).unwrap();
    assert_eq!(v["mcpServers"]["claudemesh"]["args"][0], "mcp");
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--dangerously-load-development-channels" && w[1] == "server:claudemesh"));
    assert!(args.contains(&"--dangerously-skip-permissions".to_string()));
    assert!(args.ends_with(&["--model".to_string(), "opus".to_string()]));
    for want in [
        format!("CLAUDEMESH_SESSION_ID={sid}"),
        "CLAUDEMESH_NAME=sam".into(),
        "CLAUDEMESH_GROUPS=eng,web:lead".into(),
        "CLAUDEMESH_MESSAGE_MODE=push".into(),
        "MCP_TIMEOUT=30000".into(),
        "MAX_MCP_OUTPUT_TOKENS=50000".into(),
        "MCP_PROTOCOL_NEGOTIATION=legacy".into(),
    ] {
        assert!(env.contains(&want), "missing {want} in {env:?}");
    }
    // --join enrolled the member first.
    let cfg = claudemesh::client::Home {
        dir: mesh.tmp.path().join("home-launch"),
    }
    .load()
    .unwrap();
    assert_eq!(cfg.meshes[0].name, "sam");
}

#[tokio::test]
async fn launch_resume_keeps_the_session_id_so_the_peer_identity_stays() {
    let _machine = crate::shared();
    let mesh = Mesh::start().await;
    let bob = mesh.member("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let claude = stub(dir.path(), 0);
    let sid = "0b0b0b0b-1111-4222-8333-444455556666";
    let home = bob.home.dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["launch", "-r", sid, "--message-mode", "inbox"])
            .env("CLAUDEMESH_HOME", &home)
            .env("CLAUDEMESH_CLAUDE_BIN", &claude)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (args, env) = record(dir.path());
    assert_eq!(&args[..2], &["--resume".to_string(), sid.to_string()]);
    assert!(!args
        .iter()
        .any(|a| a == "--session-id" || a.contains("development-channels")));
    assert!(env.contains(&format!("CLAUDEMESH_SESSION_ID={sid}")));
    // The same session id derives the same peer keys (identity, groups and queue stay).
    assert_eq!(bob.mc.peer(sid).public(), bob.mc.peer(sid).public());
    assert_ne!(bob.mc.peer(sid).public(), bob.mc.peer("other").public());
}

#[test]
fn launch_without_claude_is_a_clear_error() {
    let _machine = crate::shared();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["launch"])
        .env("CLAUDEMESH_HOME", dir.path())
        .env("CLAUDEMESH_CLAUDE_BIN", dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not joined to any mesh"), "{e}");
}
