//! A real Matrix client against a real server: `sytest/nio/scenario.py` drives
//! matrix-nio 0.26 (its own register, login, set_presence and `sync()` with nio's
//! default long timeout), `sytest/nio/rooms.py` its room methods (create, invite,
//! join, send, messages, a thread); each exits 0 only if every check in it held.
//!
//! The interpreter comes from `TIDINGS_NIO_PYTHON` (set by `sytest/run.sh`, which
//! makes the virtual environment). Without it the test is skipped locally, but under
//! `CI=true` a missing interpreter is a failure, never a skip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tidings_sytest::{ServerOptions, TestServer};

fn interpreter() -> Option<PathBuf> {
    let python = std::env::var_os("TIDINGS_NIO_PYTHON").map(PathBuf::from).filter(|p| p.exists());
    if python.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but TIDINGS_NIO_PYTHON is unset or missing: run the suite through sytest/run.sh");
    }
    python
}

/// Run `sytest/nio/{script}` against `hs` and assert that it exits 0.
async fn run_scenario(python: &std::path::Path, script: &str, hs: &TestServer) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nio").join(script);
    let child = tokio::process::Command::new(python)
        .arg(&script)
        .arg(hs.base_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the nio scenario");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the nio scenario finished within 120 s")
        .expect("the nio scenario ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "nio scenario failed ({}):\n{stdout}\n{stderr}", output.status);
}

#[tokio::test]
async fn matrix_nio_creates_invites_joins_and_talks_in_a_thread() {
    let Some(python) = interpreter() else {
        eprintln!("skipping: TIDINGS_NIO_PYTHON not set (sytest/run.sh sets it)");
        return;
    };
    let hs = TestServer::start(ServerOptions::named("nio-rooms.test")).await;
    run_scenario(&python, "rooms.py", &hs).await;
}

#[tokio::test]
async fn matrix_nio_sees_an_accepted_contacts_presence() {
    let Some(python) = interpreter() else {
        eprintln!("skipping: TIDINGS_NIO_PYTHON not set (sytest/run.sh sets it)");
        return;
    };
    // A short offline_after_ms: nio's own long polls must keep its users present.
    let mut opts = ServerOptions::named("nio.test");
    opts.offline_after_ms = 3_000;
    let hs = TestServer::start(opts).await;
    run_scenario(&python, "scenario.py", &hs).await;
}
