//! Presence over time, with short timers (1.5 s) so each rule shows within seconds.
//!
//! Proves the per-device rules of INTERFACE.md: a device that stops making requests
//! makes its user `offline` after `offline_after_ms` (a watcher's `/sync` says so); a
//! device that only long-polls stays present but goes `unavailable` after
//! `idle_after_ms`; an `idle_ms` report makes the user `unavailable` at once with
//! `last_active_ago` moved back, and `idle_ms: 0` undoes it; with two devices the user is
//! as present as the most present one; `set_presence` on `/sync` applies; an explicit
//! `PUT status` wins over `set_presence=online` until the next PUT, across an absence.
//!
//! Presence is always read by an accepted watcher, never by the user (whose own
//! requests would count as activity).

use std::time::Duration;

use tidings_sytest::paths::status_path;
use tidings_sytest::{ServerOptions, Session, TestServer, Value, encode_component, eventually, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const PW: &str = "timers-pw-1";
/// `idle_after_ms` and `offline_after_ms` of the short-timer servers.
const SHORT_MS: u64 = 1500;

fn devices_path(device_id: &str) -> String {
    format!("/_tidings/client/v1/presence/devices/{}", encode_component(device_id))
}

/// A server with the given idle and offline timers.
async fn server(idle_after_ms: u64, offline_after_ms: u64) -> TestServer {
    TestServer::start(ServerOptions { idle_after_ms, offline_after_ms, ..ServerOptions::default() }).await
}

/// Registers `alice` (the watcher) and `bob` (the watched), with alice accepted.
async fn watcher_and_target(hs: &TestServer) -> (Session, Session) {
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let got = alice
        .post(
            &format!("/_tidings/client/v1/presence/list/{}", encode_component(&alice.user_id)),
            json!({"invite": [bob.user_id]}),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    let got = bob
        .post(
            &format!("/_tidings/client/v1/presence/requests/{}", encode_component(&alice.user_id)),
            json!({"allow": true}),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    (alice, bob)
}

/// `watcher`'s GET status of `user_id`, asserting 200.
async fn status_of(watcher: &Session, user_id: &str) -> Value {
    let (status, body) = watcher.get(&status_path(user_id)).await;
    assert_eq!(status, 200, "GET status of {user_id} by {}: {body}", watcher.user_id);
    body
}

/// Polls `watcher`'s view of `user_id` until its `presence` is `state`; returns it.
async fn wait_presence(watcher: &Session, user_id: &str, state: &str, deadline: Duration) -> Value {
    eventually(deadline, || async {
        let body = status_of(watcher, user_id).await;
        if body["presence"] == json!(state) { Ok(body) } else { Err(body) }
    })
    .await
}

/// `session` puts its own status; asserts 200 `{}`.
async fn put_status(session: &Session, presence: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": presence})).await;
    assert_eq!(got, (200, json!({})), "PUT status {presence}");
}

/// A device report; asserts 200 `{}`.
async fn report(session: &Session, device_id: &str, body: Value) {
    let got = session.put(&devices_path(device_id), body.clone()).await;
    assert_eq!(got, (200, json!({})), "PUT devices/{device_id} {body}");
}

/// Keeps `session` long-polling `/sync` (1 s polls) until the handle is aborted.
fn keep_syncing(session: &Session) -> JoinHandle<()> {
    let mut stream = session.syncer();
    tokio::spawn(async move {
        loop {
            stream.next(1000).await;
        }
    })
}

/// The device IDs in a presence content's `tidings.devices`, sorted.
fn device_ids(content: &Value) -> Vec<String> {
    let mut ids: Vec<String> = content["tidings.devices"]
        .as_array()
        .map(|d| d.iter().map(|d| d["device_id"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The `idle` flag of `device_id` in a presence content.
fn device_idle(content: &Value, device_id: &str) -> Option<bool> {
    content["tidings.devices"].as_array()?.iter().find(|d| d["device_id"] == json!(device_id))?["idle"].as_bool()
}

#[tokio::test]
async fn silent_user_goes_offline_after_offline_after_ms() {
    let hs = server(300_000, SHORT_MS).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    // Bob's last request: from here on his device is silent. (The clock starts before
    // it: the server counts from when the request arrived, not from its answer.)
    let last_request = Instant::now();
    put_status(&bob, "online").await;

    let mut stream = alice.syncer();
    let initial = stream.next(0).await;
    let seen_online = find_event(&initial, &bob.user_id).unwrap_or_else(|| panic!("no event for bob: {initial}"));
    assert_eq!(seen_online["presence"], json!("online"), "{initial}");
    assert_eq!(device_ids(&seen_online), vec![bob.device_id.clone()], "{seen_online}");

    let offline = stream
        .until(Duration::from_secs(10), |s| find_event(s, &bob.user_id).filter(|c| c["presence"] == json!("offline")))
        .await;
    let elapsed = last_request.elapsed();
    assert!(elapsed >= Duration::from_millis(SHORT_MS - 100), "offline too early, after {elapsed:?}: {offline}");
    assert!(elapsed < Duration::from_millis(SHORT_MS + 3000), "offline too late, after {elapsed:?}");
    assert!(offline.get("currently_active").is_none(), "currently_active only when online: {offline}");
    assert!(device_ids(&offline).is_empty(), "an offline user has no present device: {offline}");
}

/// The content of `sender`'s `m.presence` event in a sync answer.
fn find_event(sync: &Value, sender: &str) -> Option<Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["sender"] == json!(sender) && e["type"] == json!("m.presence"))
        .map(|e| e["content"].clone())
}

#[tokio::test]
async fn syncing_only_device_goes_unavailable_but_stays_present() {
    let hs = server(SHORT_MS, SHORT_MS).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let last_request = Instant::now();
    put_status(&bob, "online").await;
    let syncing = keep_syncing(&bob);

    let body = wait_presence(&alice, &bob.user_id, "unavailable", Duration::from_secs(8)).await;
    let elapsed = last_request.elapsed();
    assert!(elapsed >= Duration::from_millis(SHORT_MS - 100), "idle too early ({elapsed:?}): {body}");
    assert_eq!(device_idle(&body, &bob.device_id), Some(true), "{body}");
    assert!(body.get("currently_active").is_none(), "{body}");

    // Long polls keep the device present well past offline_after_ms: never offline.
    let until = Instant::now() + Duration::from_millis(2 * SHORT_MS);
    while Instant::now() < until {
        let body = status_of(&alice, &bob.user_id).await;
        assert_eq!(body["presence"], json!("unavailable"), "a syncing device keeps its user present: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    syncing.abort();
    wait_presence(&alice, &bob.user_id, "offline", Duration::from_secs(8)).await;
}

#[tokio::test]
async fn idle_report_makes_unavailable_at_once_and_zero_undoes_it() {
    let hs = server(300_000, 300_000).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    put_status(&bob, "online").await;
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("online"));

    report(&bob, &bob.device_id, json!({"idle_ms": 5000})).await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("unavailable"), "an idle report applies at once: {body}");
    let ago = body["last_active_ago"].as_u64().unwrap_or_else(|| panic!("no last_active_ago: {body}"));
    assert!(ago >= 5000, "last_active_ago moves back to the start of idleness: {body}");
    assert!(ago < 60_000, "{body}");
    assert_eq!(device_idle(&body, &bob.device_id), Some(true), "{body}");

    report(&bob, &bob.device_id, json!({"idle_ms": 0})).await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "idle_ms 0 is active again: {body}");
    assert_eq!(body["currently_active"], json!(true), "{body}");
    assert!(body["last_active_ago"].as_u64().is_some_and(|ago| ago < 5000), "{body}");
    assert_eq!(device_idle(&body, &bob.device_id), Some(false), "{body}");
}

#[tokio::test]
async fn user_is_as_present_as_the_most_present_device() {
    let hs = server(300_000, 300_000).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let bob2 = hs.login("bob", PW).await;
    assert_ne!(bob.device_id, bob2.device_id);
    put_status(&bob, "online").await;
    report(&bob2, &bob2.device_id, json!({"kind": "mobile"})).await;

    // One device idle, the other active: online.
    report(&bob, &bob.device_id, json!({"idle_ms": 10_000})).await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "one active device suffices: {body}");
    let mut both = vec![bob.device_id.clone(), bob2.device_id.clone()];
    both.sort();
    assert_eq!(device_ids(&body), both, "{body}");
    assert_eq!(device_idle(&body, &bob.device_id), Some(true), "{body}");
    assert_eq!(device_idle(&body, &bob2.device_id), Some(false), "{body}");

    // Both idle: unavailable.
    report(&bob2, &bob2.device_id, json!({"idle_ms": 10_000})).await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("unavailable"), "all devices idle: {body}");
    assert_eq!(device_idle(&body, &bob2.device_id), Some(true), "{body}");

    // A device may report for another device of its user; the report makes the phone
    // active again (and the request the calling device): online.
    report(&bob, &bob2.device_id, json!({"idle_ms": 0})).await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "{body}");
    assert_eq!(device_idle(&body, &bob2.device_id), Some(false), "{body}");
}

#[tokio::test]
async fn absent_active_device_leaves_the_idle_syncing_one() {
    let hs = server(300_000, SHORT_MS).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let phone = hs.login("bob", PW).await;
    let syncing = keep_syncing(&bob);
    // The syncing device says it is idle; the phone makes one request and goes silent.
    report(&bob, &bob.device_id, json!({"idle_ms": 10_000})).await;
    put_status(&phone, "online").await;
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("online"), "the phone is active: {body}");

    let body = wait_presence(&alice, &bob.user_id, "unavailable", Duration::from_secs(8)).await;
    assert_eq!(device_ids(&body), vec![bob.device_id.clone()], "only the syncing device is present: {body}");

    syncing.abort();
    let body = wait_presence(&alice, &bob.user_id, "offline", Duration::from_secs(8)).await;
    assert!(device_ids(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn set_presence_on_sync_applies() {
    let hs = server(300_000, 300_000).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    // Bob is active (his answer to alice was a request) and has put no status.
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("online"));
    let (status, body) = bob.sync_with(&[("set_presence", "unavailable"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("unavailable"));

    let (status, body) = bob.sync_with(&[("set_presence", "online"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("online"));

    let (status, body) = bob.sync_with(&[("set_presence", "offline"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("offline"));
}

#[tokio::test]
async fn explicit_unavailable_wins_over_set_presence_online_until_the_next_put() {
    let hs = server(300_000, SHORT_MS).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    put_status(&bob, "unavailable").await;
    let (status, body) = bob.sync_with(&[("set_presence", "online"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{body}");
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("unavailable"), "explicit PUT wins over set_presence: {body}");

    // A PUT online lifts the explicit choice.
    put_status(&bob, "online").await;
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("online"));

    // An explicit choice outlasts an absence: only the next PUT ends it (INTERFACE.md).
    put_status(&bob, "unavailable").await;
    wait_presence(&alice, &bob.user_id, "offline", Duration::from_secs(8)).await;
    let (status, body) = bob.sync_with(&[("set_presence", "online"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{body}");
    let body = status_of(&alice, &bob.user_id).await;
    assert_eq!(body["presence"], json!("unavailable"), "the explicit state holds until the next PUT: {body}");
    put_status(&bob, "online").await;
    assert_eq!(status_of(&alice, &bob.user_id).await["presence"], json!("online"));
}
