//! What survives a restart of `tidings serve`, graceful (SIGTERM) or not (`kill -9`).
//!
//! Proves that presence state and status text, presence lists and their answers
//! (accepted, pending, denied) survive a graceful restart; that a `next_batch` from
//! before a restart stays valid and yields exactly what changed since it (changes from
//! before and after the restart, not users who did not change); that a user whose
//! `offline_after_ms` ran out while the server was down comes back `offline` at once;
//! and that after `kill -9` accounts, tokens, device kinds and acceptances are still
//! there and old tokens still sync.

use std::time::Duration;

use tidings_sytest::paths::{list_path, status_path};
use tidings_sytest::{
    ServerOptions, Session, TestServer, Value, assert_matrix_error, encode_component, eventually, json,
};
use tokio::time::Instant;

const PW: &str = "restart-pw-1";

/// `watcher` asks to watch `target`, who answers `allow` (or nothing with `None`).
async fn ask(watcher: &Session, target: &Session, allow: Option<bool>) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target.user_id]})).await;
    assert_eq!(got, (200, json!({})));
    if let Some(allow) = allow {
        let path = format!("/_tidings/client/v1/presence/requests/{}", encode_component(&watcher.user_id));
        assert_eq!(target.post(&path, json!({"allow": allow})).await, (200, json!({})));
    }
}

/// `session` puts its own presence and status text; asserts 200 `{}`.
async fn put_status(session: &Session, presence: &str, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": presence, "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {presence} {msg}");
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

/// `watcher`'s GET status of `user_id`, asserting 200.
async fn status_of(watcher: &Session, user_id: &str) -> Value {
    let (status, body) = watcher.get(&status_path(user_id)).await;
    assert_eq!(status, 200, "GET status of {user_id} by {}: {body}", watcher.user_id);
    body
}

/// The content of `sender`'s `m.presence` event in a sync answer.
fn event_of(sync: &Value, sender: &str) -> Option<Value> {
    sync["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == json!(sender)).map(|e| e["content"].clone())
}

/// The user IDs a sync answer carries presence for.
fn senders(sync: &Value) -> Vec<String> {
    sync["presence"]["events"]
        .as_array()
        .map(|e| e.iter().map(|e| e["sender"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The stream position of a `next_batch` token `s<number>`.
fn position(token: &str) -> u64 {
    token.strip_prefix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not s<number>: {token}"))
}

/// Syncs `session` from `since` (timeout 0) until `sender`'s event satisfies `want`.
async fn sync_until(session: &Session, since: &str, sender: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sync = session.sync(Some(since), 0).await;
        if event_of(&sync, sender).is_some_and(|c| want(&c)) {
            return sync;
        }
        assert!(Instant::now() < deadline, "no matching event of {sender} since {since}: {sync}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn presence_state_and_lists_survive_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;
    let dave = hs.register("dave", PW).await;
    ask(&alice, &bob, Some(true)).await;
    ask(&carol, &bob, None).await;
    ask(&dave, &bob, Some(false)).await;
    put_status(&bob, "unavailable", "gone fishing").await;
    let before = status_of(&alice, &bob.user_id).await;
    assert_eq!(before["presence"], json!("unavailable"), "{before}");

    hs.restart().await;

    let after = status_of(&alice, &bob.user_id).await;
    assert_eq!(after["presence"], json!("unavailable"), "state after restart: {after}");
    assert_eq!(after["status_msg"], json!("gone fishing"), "status_msg after restart: {after}");

    let e = entry(&alice, &bob.user_id).await;
    assert_eq!((&e["subscription"], &e["presence"]), (&json!("accepted"), &json!("unavailable")), "{e}");
    assert_eq!(e["status_msg"], json!("gone fishing"), "{e}");
    let e = entry(&carol, &bob.user_id).await;
    assert_eq!((&e["subscription"], &e["presence"]), (&json!("pending"), &json!("unknown")), "{e}");
    let e = entry(&dave, &bob.user_id).await;
    assert_eq!((&e["subscription"], &e["presence"]), (&json!("denied"), &json!("unknown")), "{e}");
    assert_matrix_error(&dave.get(&status_path(&bob.user_id)).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&carol.get(&status_path(&bob.user_id)).await, 403, "M_FORBIDDEN");

    let (status, body) = bob.get("/_tidings/client/v1/presence/requests").await;
    assert_eq!(status, 200, "{body}");
    let requesters: Vec<&Value> =
        body["requests"].as_array().expect("requests").iter().map(|r| &r["user_id"]).collect();
    assert_eq!(requesters, vec![&json!(carol.user_id)], "only carol still waits: {body}");
}

/// A syncer for `session` past its initial sync whose last incremental sync was empty;
/// returns its token.
async fn quiet_token(session: &Session) -> String {
    let mut stream = session.syncer();
    stream.next(0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sync = stream.next(0).await;
        if senders(&sync).is_empty() {
            return stream.since().expect("token").to_owned();
        }
        assert!(Instant::now() < deadline, "the sync stream never went quiet: {sync}");
    }
}

#[tokio::test]
async fn old_token_yields_changes_from_before_and_after_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let dan = hs.register("dan", PW).await;
    ask(&alice, &bob, Some(true)).await;
    ask(&alice, &dan, Some(true)).await;

    // Alice's token T, after which bob changes before the restart and dan after it.
    let t = quiet_token(&alice).await;
    put_status(&bob, "online", "before restart").await;
    sync_until(&alice, &t, &bob.user_id, |c| c["status_msg"] == json!("before restart")).await;

    hs.restart().await;

    let sync = alice.sync(Some(&t), 0).await;
    let bob_event = event_of(&sync, &bob.user_id).unwrap_or_else(|| panic!("the old token lost bob's change: {sync}"));
    assert_eq!(bob_event["status_msg"], json!("before restart"), "{sync}");
    let new_token = sync["next_batch"].as_str().expect("next_batch");
    assert!(position(new_token) > position(&t), "{t} -> {new_token}");

    put_status(&dan, "unavailable", "after restart").await;
    let sync = sync_until(&alice, &t, &dan.user_id, |c| c["status_msg"] == json!("after restart")).await;
    assert_eq!(event_of(&sync, &dan.user_id).expect("dan")["presence"], json!("unavailable"), "{sync}");
    assert!(event_of(&sync, &bob.user_id).is_some(), "bob changed after T too: {sync}");
}

#[tokio::test]
async fn old_token_after_restart_omits_offline_users_who_did_not_change() {
    let mut hs = TestServer::start(ServerOptions { offline_after_ms: 1500, ..ServerOptions::default() }).await;
    let alice = hs.register("alice", PW).await;
    let carol = hs.register("carol", PW).await;
    let dan = hs.register("dan", PW).await;
    ask(&alice, &carol, Some(true)).await;
    ask(&alice, &dan, Some(true)).await;
    put_status(&carol, "online", "unchanged").await;
    eventually(Duration::from_secs(8), || async {
        status_of(&alice, &carol.user_id).await["presence"] == json!("offline")
    })
    .await;
    let t = quiet_token(&alice).await;

    hs.restart().await;
    put_status(&dan, "online", "after restart").await;
    let sync = sync_until(&alice, &t, &dan.user_id, |c| c["status_msg"] == json!("after restart")).await;
    assert!(event_of(&sync, &carol.user_id).is_none(), "carol did not change since T, yet is sent: {sync}");
}

#[tokio::test]
async fn old_token_after_restart_omits_present_users_who_did_not_change() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let carol = hs.register("carol", PW).await;
    let dan = hs.register("dan", PW).await;
    ask(&alice, &carol, Some(true)).await;
    ask(&alice, &dan, Some(true)).await;
    put_status(&carol, "online", "unchanged").await;
    let t = quiet_token(&alice).await;

    hs.restart().await;
    put_status(&dan, "online", "after restart").await;
    let sync = sync_until(&alice, &t, &dan.user_id, |c| c["status_msg"] == json!("after restart")).await;
    assert!(event_of(&sync, &carol.user_id).is_none(), "carol did not change since T, yet is sent: {sync}");
}

#[tokio::test]
async fn user_whose_time_ran_out_while_down_comes_back_offline() {
    let offline_after_ms = 1500;
    let mut hs = TestServer::start(ServerOptions { offline_after_ms, ..ServerOptions::default() }).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    ask(&alice, &bob, Some(true)).await;
    put_status(&bob, "online", "about to vanish").await;
    let last_request = Instant::now();
    let before = alice.sync(None, 0).await;
    let seen = event_of(&before, &bob.user_id).unwrap_or_else(|| panic!("no bob: {before}"));
    assert_eq!(seen["presence"], json!("online"), "{before}");
    let t = before["next_batch"].as_str().expect("next_batch").to_owned();

    hs.stop().await;
    // The server is down: nothing to poll. Let bob's offline_after_ms run out meanwhile.
    let down_until = last_request + Duration::from_millis(offline_after_ms + 500);
    tokio::time::sleep_until(down_until).await;
    hs.restart().await;

    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("offline"), "bob's time ran out while the server was down: {body}");
    assert_eq!(body["status_msg"], json!("about to vanish"), "status_msg is kept while offline: {body}");
    let sync = alice.sync(Some(&t), 0).await;
    let event = event_of(&sync, &bob.user_id).unwrap_or_else(|| panic!("old token not told bob went offline: {sync}"));
    assert_eq!(event["presence"], json!("offline"), "{sync}");
}

#[tokio::test]
async fn present_user_stays_online_across_a_quick_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    ask(&alice, &bob, Some(true)).await;
    put_status(&bob, "online", "still here").await;

    hs.restart().await;

    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "offline_after_ms (30 s) has not passed: {body}");
    assert_eq!(body["status_msg"], json!("still here"), "{body}");
}

#[tokio::test]
async fn present_users_devices_are_still_shown_after_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    ask(&alice, &bob, Some(true)).await;
    let kind = format!("/_tidings/client/v1/presence/devices/{}", encode_component(&bob.device_id));
    assert_eq!(bob.put(&kind, json!({"kind": "mobile"})).await, (200, json!({})));
    let expected = json!([{"device_id": bob.device_id, "kind": "mobile", "idle": false}]);
    assert_eq!(status_of(&alice, &bob.user_id).await["tidings.devices"], expected);

    hs.restart().await;

    // Bob is restored as present "as if the device were still there": online, so at
    // least one present device, which `tidings.devices` lists.
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "{body}");
    assert_eq!(body["tidings.devices"], expected, "an online user's present device after a restart: {body}");
}

#[tokio::test]
async fn kill9_keeps_accounts_tokens_and_acceptances() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;
    ask(&alice, &bob, Some(true)).await;
    ask(&carol, &bob, None).await;
    let kind = format!("/_tidings/client/v1/presence/devices/{}", encode_component(&bob.device_id));
    assert_eq!(bob.put(&kind, json!({"kind": "desktop"})).await, (200, json!({})));
    let old = alice.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();

    hs.kill9().await;
    hs.restart().await;

    for session in [&alice, &bob, &carol] {
        let (status, body) = session.get("/_matrix/client/v3/account/whoami").await;
        assert_eq!(status, 200, "token of {} after kill -9: {body}", session.user_id);
        assert_eq!(body["user_id"], json!(session.user_id), "{body}");
    }
    let relogin = hs.login("bob", PW).await;
    assert_eq!(relogin.user_id, bob.user_id);

    let e = entry(&alice, &bob.user_id).await;
    assert_eq!(e["subscription"], json!("accepted"), "acceptance after kill -9: {e}");
    let body = status_of(&alice, &bob.user_id).await;
    let devices = body["tidings.devices"].as_array().unwrap_or_else(|| panic!("no tidings.devices: {body}"));
    let bobs = devices.iter().find(|d| d["device_id"] == json!(bob.device_id)).expect("bob's first device");
    assert_eq!(bobs["kind"], json!("desktop"), "device kind after kill -9: {body}");
    let e = entry(&carol, &bob.user_id).await;
    assert_eq!(e["subscription"], json!("pending"), "{e}");

    let (status, sync) = alice.sync_with(&[("since", old.as_str()), ("timeout", "0")]).await;
    assert_eq!(status, 200, "a token from before kill -9 is still valid: {sync}");
    let new = sync["next_batch"].as_str().expect("next_batch");
    assert!(position(new) >= position(&old), "{old} -> {new}");
}
