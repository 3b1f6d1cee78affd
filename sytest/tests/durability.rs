//! What the server acknowledged is still there after `kill -9`.
//!
//! Proves that a presence status answered 200 survives a `kill -9` that follows at
//! once (no write-behind window in which an acknowledged status can be lost): after
//! 200 rapid PUTs and an immediate `kill -9`, the user and a watcher see the last
//! one; that presence-list invites and answers made right before `kill -9` are
//! there after the restart; and that a device kind set right before `kill -9` is
//! kept.

use tidings_sytest::paths::{REQUESTS, answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, encode_component, json};

const PW: &str = "durability-pw-1";
/// How many statuses are PUT before the kill.
const PUTS: usize = 200;

/// `watcher` asks to watch `target`; asserts 200 `{}`.
async fn invite(watcher: &Session, target: &Session) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target.user_id]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {}", watcher.user_id, target.user_id);
}

/// `target` answers `watcher`'s request; asserts 200 `{}`.
async fn answer(target: &Session, watcher: &Session, allow: bool) {
    let got = target.post(&answer_path(&watcher.user_id), json!({"allow": allow})).await;
    assert_eq!(got, (200, json!({})), "{} answering {} with {allow}", target.user_id, watcher.user_id);
}

/// `viewer`'s GET status of `user_id`, asserting 200.
async fn status_of(viewer: &Session, user_id: &str) -> Value {
    let (status, body) = viewer.get(&status_path(user_id)).await;
    assert_eq!(status, 200, "GET status of {user_id} by {}: {body}", viewer.user_id);
    body
}

/// The entry for `user_id` in `session`'s own list.
async fn entry(session: &Session, user_id: &str) -> Value {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user_id"] == json!(user_id)).cloned())
        .unwrap_or_else(|| panic!("{user_id} is not on the list of {}: {body}", session.user_id))
}

#[tokio::test]
async fn the_last_acknowledged_status_survives_kill_9() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let bob = hs.register("bob", PW).await;
    let alice = hs.register("alice", PW).await;
    invite(&alice, &bob).await;
    answer(&bob, &alice, true).await;

    let path = status_path(&bob.user_id);
    for n in 0..PUTS {
        let got = bob.put(&path, json!({"presence": "online", "status_msg": format!("seq {n}")})).await;
        assert_eq!(got, (200, json!({})), "PUT status seq {n}");
    }
    hs.kill9().await;
    hs.restart().await;

    let last = format!("seq {}", PUTS - 1);
    let own = status_of(&bob, &bob.user_id).await;
    let seen = status_of(&alice, &bob.user_id).await;
    assert_eq!(
        (own["status_msg"].as_str(), seen["status_msg"].as_str()),
        (Some(last.as_str()), Some(last.as_str())),
        "after kill -9 right after {PUTS} acknowledged PUTs, bob's own view and alice's should show the last one \
         acknowledged; own: {own}; alice's: {seen}"
    );
}

#[tokio::test]
async fn invites_and_answers_just_before_kill_9_survive() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let bob = hs.register("bob", PW).await;
    let alice = hs.register("alice", PW).await;
    let carol = hs.register("carol", PW).await;
    let dave = hs.register("dave", PW).await;
    invite(&alice, &bob).await;
    invite(&dave, &bob).await;
    answer(&bob, &alice, true).await;
    answer(&bob, &dave, false).await;
    invite(&carol, &bob).await;
    hs.kill9().await;
    hs.restart().await;

    let e = entry(&alice, &bob.user_id).await;
    assert_eq!(e["subscription"], json!("accepted"), "an answer acknowledged right before kill -9: {e}");
    status_of(&alice, &bob.user_id).await;
    let e = entry(&dave, &bob.user_id).await;
    assert_eq!(e["subscription"], json!("denied"), "a refusal acknowledged right before kill -9: {e}");
    let e = entry(&carol, &bob.user_id).await;
    assert_eq!(e["subscription"], json!("pending"), "an invite acknowledged right before kill -9: {e}");
    let (status, body) = bob.get(REQUESTS).await;
    assert_eq!(status, 200, "{body}");
    let requesters: Vec<&Value> =
        body["requests"].as_array().expect("requests").iter().map(|r| &r["user_id"]).collect();
    assert_eq!(requesters, vec![&json!(carol.user_id)], "only carol's request waits: {body}");
}

#[tokio::test]
async fn a_device_kind_set_just_before_kill_9_survives() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let bob = hs.register("bob", PW).await;
    let alice = hs.register("alice", PW).await;
    invite(&alice, &bob).await;
    answer(&bob, &alice, true).await;
    let kind = format!("/_tidings/client/v1/presence/devices/{}", encode_component(&bob.device_id));
    assert_eq!(bob.put(&kind, json!({"kind": "mobile"})).await, (200, json!({})));
    hs.kill9().await;
    hs.restart().await;

    // Bob's device is active again (so listed whatever became of his presence),
    // with the kind stored before the kill.
    let (status, body) = bob.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200, "bob's token after kill -9: {body}");
    let body = status_of(&alice, &bob.user_id).await;
    let devices = body["tidings.devices"].as_array().unwrap_or_else(|| panic!("no tidings.devices: {body}"));
    let device = devices
        .iter()
        .find(|d| d["device_id"] == json!(bob.device_id))
        .unwrap_or_else(|| panic!("bob's device is not listed after kill -9: {body}"));
    assert_eq!(device["kind"], json!("mobile"), "device kind after kill -9: {body}");
}
