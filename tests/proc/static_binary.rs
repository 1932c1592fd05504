//! The single-file deploy: `scripts/build-static` (run by `.ci/run` before the tests) makes
//! target/static/claudemesh. It must need no shared library — no libc, no Rust — so it is run
//! here inside an empty chroot (as root, which CI is): `--help`, then a broker that answers
//! /health. Without the file the test says "skipped", except under CI where it fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn static_binary() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/static/claudemesh");
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("target/static/claudemesh is missing: .ci/run builds it with scripts/build-static");
    }
    eprintln!("skipped: run scripts/build-static first");
    None
}

#[test]
fn the_static_binary_needs_no_shared_libraries_and_serves_from_an_empty_root() {
    let _machine = crate::shared();
    let Some(bin) = static_binary() else { return };
    // The ELF has no interpreter and no needed libraries.
    let out = Command::new("ldd").arg(&bin).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "ldd: {text}"
    );
    if !claudemesh::util::is_root() {
        eprintln!("skipped the chroot part: needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&bin, root.path().join("claudemesh")).unwrap();
    let help = Command::new("chroot")
        .arg(root.path())
        .args(["/claudemesh", "--help"])
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(String::from_utf8_lossy(&help.stdout).contains("claudemesh"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("chroot")
        .arg(root.path())
        .args([
            "/claudemesh",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "/data",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let _ = s.read_to_string(&mut body);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let st = child.wait().unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200") && body.contains("\"status\":\"ok\""),
        "health: {body}"
    );
    assert!(st.success(), "clean exit on SIGTERM: {st}");
    assert!(
        root.path().join("data/claudemesh.redb").exists(),
        "its data dir is inside the empty root"
    );
}
