//! A real web client in a real browser: Hydrogen (hydrogen-view-sdk, bundled by
//! `sytest/hydrogen/setup.sh`) in Debian's headless Chromium, driven by puppeteer.
//! Two users log in through Hydrogen's own login page and must reach their room list
//! with no fatal error (Hydrogen's start-up calls `keys/upload`, `user/{id}/filter`
//! and `sync`; any failing is fatal to it). Alice has made two rooms and invited Bob,
//! one of them end-to-end encrypted (as the direct chats Element and Hydrogen open
//! are): in each, Bob accepts in Hydrogen, each sends a message through its
//! composer, and each must see the other's text. In the encrypted room that needs
//! the server's whole E2EE side (device keys, one-time keys claimed, room keys sent to
//! the device); the server must have stored only `m.room.encrypted` events there.
//! Screenshots go to `target/artifacts/` (`hydrogen-timeline.png`, and
//! `hydrogen-timeline-1.png` for the encrypted room).
//!
//! Outside CI, a missing node, chromium or bundle skips the test with a loud
//! message; under `CI=true` it is a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tidings_sytest::{ServerOptions, TestServer};

/// The room Alice makes for the two to talk in.
const ROOM_NAME: &str = "Tidings test";
/// The encrypted room she makes too.
const SECRET_ROOM: &str = "Tidings secret";

fn hydrogen_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hydrogen")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What is missing to run the scenario, if anything.
fn missing() -> Option<String> {
    let dir = hydrogen_dir();
    let chromium =
        std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !on_path("node") {
        return Some("node is not on PATH".into());
    }
    if !chromium.is_file() {
        return Some(format!("no chromium at {}", chromium.display()));
    }
    if !dir.join("dist/app.js").is_file() || !dir.join("node_modules/puppeteer-core").is_dir() {
        return Some(format!("Hydrogen is not bundled: run {}", dir.join("setup.sh").display()));
    }
    None
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts")
}

#[tokio::test]
async fn hydrogen_users_log_in_accept_an_invite_and_talk() {
    if let Some(why) = missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but the Hydrogen scenario cannot run: {why}");
        }
        eprintln!("\n*** SKIPPING the Hydrogen scenario: {why} ***\n");
        return;
    }
    let hs = TestServer::start(ServerOptions::named("localhost")).await;
    let alice = hs.register("alice", "alice-password").await;
    let bob = hs.register("bob", "bob-password").await;
    let (status, room) = alice
        .post("/_matrix/client/v3/createRoom", serde_json::json!({"name": ROOM_NAME, "invite": [bob.user_id]}))
        .await;
    assert_eq!(status, 200, "createRoom: {room}");
    let encryption = serde_json::json!({"type": "m.room.encryption", "state_key": "",
                                        "content": {"algorithm": "m.megolm.v1.aes-sha2"}});
    let (status, secret) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            serde_json::json!({"name": SECRET_ROOM, "invite": [bob.user_id], "initial_state": [encryption]}),
        )
        .await;
    assert_eq!(status, 200, "createRoom: {secret}");
    for shot in [
        "hydrogen-alice.png",
        "hydrogen-bob.png",
        "hydrogen-timeline.png",
        "hydrogen-timeline-bob.png",
        "hydrogen-timeline-1.png",
        "hydrogen-timeline-1-bob.png",
        "hydrogen-failed-alice.png",
        "hydrogen-failed-bob.png",
    ] {
        let _ = std::fs::remove_file(artifacts().join(shot)); // only this run's screenshots count
    }
    let child = tokio::process::Command::new("node")
        .arg(hydrogen_dir().join("scenario.mjs"))
        .arg(hs.base_url())
        .arg(artifacts())
        .args(["alice", "alice-password", "bob", "bob-password", ROOM_NAME, SECRET_ROOM])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Hydrogen scenario");
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("the Hydrogen scenario finished within 240 s")
        .expect("the Hydrogen scenario ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "Hydrogen scenario failed ({}):\n{stdout}\n{stderr}", output.status);
    for shot in ["hydrogen-alice.png", "hydrogen-bob.png", "hydrogen-timeline.png", "hydrogen-timeline-1.png"] {
        assert!(artifacts().join(shot).is_file(), "no screenshot {shot}");
    }
    for name in [ROOM_NAME, SECRET_ROOM] {
        let said = format!(r#"{{"room":"{name}","exchanged":true"#);
        assert!(stdout.contains(&said), "the two users did not exchange messages in {name}:\n{stdout}");
    }
    // What the server holds of the encrypted room's talk: ciphertext only.
    let secret_id = secret["room_id"].as_str().expect("room_id");
    let path =
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", tidings_sytest::encode_component(secret_id));
    let (status, page) = bob.get(&path).await;
    assert_eq!(status, 200, "{page}");
    let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
    let sent: Vec<&serde_json::Value> =
        chunk.iter().filter(|e| e["type"] == "m.room.encrypted" || e["type"] == "m.room.message").collect();
    assert!(sent.len() >= 2, "both messages are in the room: {page}");
    for e in sent {
        assert_eq!(e["type"], "m.room.encrypted", "Hydrogen sent ciphertext: {e}");
        assert_eq!(e["content"]["algorithm"], "m.megolm.v1.aes-sha2", "{e}");
    }
}
