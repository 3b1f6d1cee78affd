//! Presence lists with consent, over HTTP against a real `tidings serve`.
//!
//! Proves who may see whose presence: an invitation reaches the target (in
//! `GET /presence/requests` and in `/sync` under `tidings.presence_requests`, all
//! pending ones initially and only new ones incrementally); nothing is visible while a
//! request is pending or denied (GET status is 403 M_FORBIDDEN, the list says
//! `unknown`), also for users that do not exist; `allow` makes presence, status text
//! and device kinds visible; `allow: false` revokes and `drop` withdraws; a third user
//! never sees presence through `/sync`. Also the error answers of the presence-list
//! endpoints (self-invite, unknown users, someone else's list, foreign devices, empty
//! device reports) and that a rejected list change applies nothing.

use std::time::Duration;

use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, assert_matrix_error, encode_component, json};

const PW: &str = "presence-pw-1";

fn devices_path(device_id: &str) -> String {
    format!("/_tidings/client/v1/presence/devices/{}", encode_component(device_id))
}

/// A server with default timers (nothing times out during a test).
async fn server() -> TestServer {
    TestServer::start(ServerOptions::default()).await
}

/// `watcher` asks to watch `targets`; asserts 200 `{}`.
async fn invite(watcher: &Session, targets: &[&str]) {
    let answer = watcher.post(&list_path(&watcher.user_id), json!({"invite": targets})).await;
    assert_eq!(answer, (200, json!({})), "{} inviting {targets:?}", watcher.user_id);
}

/// `target` answers `watcher`'s request; asserts 200 `{}`.
async fn answer(target: &Session, watcher: &str, allow: bool) {
    let got = target.post(&answer_path(watcher), json!({"allow": allow})).await;
    assert_eq!(got, (200, json!({})), "{} answering {watcher} with allow={allow}", target.user_id);
}

/// `watcher` invites `target` and `target` accepts.
async fn accept(watcher: &Session, target: &Session) {
    invite(watcher, &[&target.user_id]).await;
    answer(target, &watcher.user_id, true).await;
}

/// The caller's own presence list entries.
async fn list(session: &Session) -> Vec<Value> {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "GET own list of {}: {body}", session.user_id);
    body["entries"].as_array().unwrap_or_else(|| panic!("no `entries` array: {body}")).clone()
}

/// The entry for `user_id` in `session`'s list, if any.
async fn entry(session: &Session, user_id: &str) -> Option<Value> {
    list(session).await.into_iter().find(|e| e["user_id"] == json!(user_id))
}

/// The user IDs under `tidings.presence_requests.events` of a sync answer (absent = none).
fn sync_requesters(sync: &Value) -> Vec<String> {
    match sync.get("tidings.presence_requests") {
        None => Vec::new(),
        Some(requests) => requests["events"]
            .as_array()
            .unwrap_or_else(|| panic!("`tidings.presence_requests` without an `events` array: {sync}"))
            .iter()
            .map(|r| {
                assert!(r["ts"].is_u64(), "request event without integer `ts`: {sync}");
                r["user_id"].as_str().unwrap_or_default().to_owned()
            })
            .collect(),
    }
}

/// The `m.presence` events of `sender` in a sync answer.
fn presence_events_of(sync: &Value, sender: &str) -> Vec<Value> {
    sync["presence"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|e| e["sender"] == json!(sender)).cloned().collect())
        .unwrap_or_default()
}

/// Asserts that `body` is 403 M_FORBIDDEN and carries no presence.
#[track_caller]
fn assert_forbidden_without_presence(answer: &(u16, Value)) {
    assert_matrix_error(answer, 403, "M_FORBIDDEN");
    assert!(answer.1.get("presence").is_none() && answer.1.get("status_msg").is_none(), "leaks: {}", answer.1);
}

/// Asserts that a list entry shows nothing but the subscription and `unknown`.
#[track_caller]
fn assert_opaque_entry(entry: &Value, subscription: &str) {
    assert_eq!(entry["subscription"], json!(subscription), "{entry}");
    assert_eq!(entry["presence"], json!("unknown"), "{entry}");
    for key in ["status_msg", "last_active_ago", "currently_active", "devices"] {
        assert!(entry.get(key).is_none(), "a non-accepted entry must not show `{key}`: {entry}");
    }
}

#[tokio::test]
async fn invite_reaches_target_in_requests_and_sync() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;

    invite(&alice, &[&bob.user_id]).await;
    assert_eq!(bob.requesters().await, vec![alice.user_id.clone()]);
    assert!(alice.requesters().await.is_empty(), "the watcher is not asked anything");

    let mut stream = bob.syncer();
    let initial = stream.next(0).await;
    assert_eq!(sync_requesters(&initial), vec![alice.user_id.clone()], "initial sync lists pending: {initial}");

    let quiet = stream.next(0).await;
    assert!(sync_requesters(&quiet).is_empty(), "an old request is not repeated incrementally: {quiet}");

    invite(&carol, &[&bob.user_id]).await;
    let new_ones = stream.until(Duration::from_secs(5), |s| Some(sync_requesters(s)).filter(|r| !r.is_empty())).await;
    assert_eq!(new_ones, vec![carol.user_id.clone()], "incremental sync lists only the new request");

    let again = bob.sync(None, 0).await;
    assert_eq!(sync_requesters(&again), vec![alice.user_id.clone(), carol.user_id.clone()], "oldest first: {again}");
    assert_eq!(bob.requesters().await, vec![alice.user_id.clone(), carol.user_id.clone()]);
}

#[tokio::test]
async fn pending_watcher_sees_unknown_and_gets_forbidden() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "online", "status_msg": "private"})).await;
    assert_eq!(put, (200, json!({})));

    invite(&alice, &[&bob.user_id]).await;
    let e = entry(&alice, &bob.user_id).await.expect("bob is on alice's list");
    assert_opaque_entry(&e, "pending");
    assert_forbidden_without_presence(&alice.get(&status_path(&bob.user_id)).await);
}

#[tokio::test]
async fn own_status_is_visible_to_self() {
    let hs = server().await;
    let bob = hs.register("bob", PW).await;
    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "online", "status_msg": "at the radio"})).await;
    assert_eq!(put, (200, json!({})));
    let (status, body) = bob.get(&status_path(&bob.user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["presence"], json!("online"), "{body}");
    assert_eq!(body["status_msg"], json!("at the radio"), "{body}");
    assert_eq!(body["currently_active"], json!(true), "{body}");
    assert!(body["last_active_ago"].is_u64(), "{body}");
}

#[tokio::test]
async fn allow_makes_presence_and_status_msg_visible() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "online", "status_msg": "at the radio"})).await;
    assert_eq!(put, (200, json!({})));

    accept(&alice, &bob).await;
    assert!(bob.requesters().await.is_empty(), "an answered request is no longer pending");

    let e = entry(&alice, &bob.user_id).await.expect("bob is on alice's list");
    assert_eq!(e["subscription"], json!("accepted"), "{e}");
    assert_eq!(e["presence"], json!("online"), "{e}");
    assert_eq!(e["status_msg"], json!("at the radio"), "{e}");
    assert!(e["devices"].is_array() && e["currently_active"].is_boolean(), "{e}");

    let (status, body) = alice.get(&status_path(&bob.user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["presence"], json!("online"), "{body}");
    assert_eq!(body["status_msg"], json!("at the radio"), "{body}");

    let sync = alice.sync(None, 0).await;
    let events = presence_events_of(&sync, &bob.user_id);
    assert_eq!(events.len(), 1, "one event for bob in alice's initial sync: {sync}");
    assert_eq!(events[0]["type"], json!("m.presence"), "{sync}");
    assert_eq!(events[0]["content"]["presence"], json!("online"), "{sync}");
    assert_eq!(events[0]["content"]["status_msg"], json!("at the radio"), "{sync}");
}

#[tokio::test]
async fn status_of_unknown_or_unaccepted_users_is_forbidden_not_not_found() {
    let hs = server().await;
    let stranger = hs.register("stranger", PW).await;
    let bob = hs.register("bob", PW).await;
    for user in [hs.user_id("nobody"), bob.user_id.clone(), "@x:elsewhere.test".to_owned()] {
        let answer = stranger.get(&status_path(&user)).await;
        assert_forbidden_without_presence(&answer);
    }
}

#[tokio::test]
async fn deny_marks_denied_and_stays_forbidden() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    invite(&alice, &[&bob.user_id]).await;
    answer(&bob, &alice.user_id, false).await;

    let e = entry(&alice, &bob.user_id).await.expect("a denied request stays on the list");
    assert_opaque_entry(&e, "denied");
    assert_forbidden_without_presence(&alice.get(&status_path(&bob.user_id)).await);
    assert!(bob.requesters().await.is_empty(), "a denied request is no longer pending");
    let sync = alice.sync(None, 0).await;
    assert!(presence_events_of(&sync, &bob.user_id).is_empty(), "denied: no presence in sync: {sync}");
}

#[tokio::test]
async fn invite_after_denial_asks_again() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    invite(&alice, &[&bob.user_id]).await;
    answer(&bob, &alice.user_id, false).await;
    invite(&alice, &[&bob.user_id]).await;
    assert_opaque_entry(&entry(&alice, &bob.user_id).await.expect("on the list"), "pending");
    assert_eq!(bob.requesters().await, vec![alice.user_id.clone()]);
}

#[tokio::test]
async fn revoking_an_accepted_watcher_hides_presence_again() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    accept(&alice, &bob).await;

    let mut stream = alice.syncer();
    stream.until(Duration::from_secs(5), |s| presence_events_of(s, &bob.user_id).pop()).await;
    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "online", "status_msg": "visible"})).await;
    assert_eq!(put, (200, json!({})));
    stream
        .until(Duration::from_secs(5), |s| {
            presence_events_of(s, &bob.user_id).into_iter().find(|e| e["content"]["status_msg"] == json!("visible"))
        })
        .await;

    answer(&bob, &alice.user_id, false).await;
    assert_forbidden_without_presence(&alice.get(&status_path(&bob.user_id)).await);
    assert_opaque_entry(&entry(&alice, &bob.user_id).await.expect("still listed"), "denied");

    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "unavailable", "status_msg": "secret"})).await;
    assert_eq!(put, (200, json!({})));
    let sync = stream.next(1500).await;
    assert!(presence_events_of(&sync, &bob.user_id).is_empty(), "a revoked watcher still gets bob: {sync}");
    let initial = alice.sync(None, 0).await;
    assert!(presence_events_of(&initial, &bob.user_id).is_empty(), "revoked, yet in initial sync: {initial}");
}

#[tokio::test]
async fn drop_removes_the_entry_and_the_request() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;

    invite(&alice, &[&bob.user_id, &carol.user_id]).await;
    answer(&carol, &alice.user_id, true).await;
    assert_eq!(alice.get(&status_path(&carol.user_id)).await.0, 200, "accepted watcher may see carol");

    let got = alice.post(&list_path(&alice.user_id), json!({"drop": [bob.user_id, carol.user_id]})).await;
    assert_eq!(got, (200, json!({})));
    assert!(list(&alice).await.is_empty(), "both dropped: {:?}", list(&alice).await);
    assert!(bob.requesters().await.is_empty(), "a withdrawn request is gone");
    assert_forbidden_without_presence(&alice.get(&status_path(&carol.user_id)).await);
    assert_matrix_error(&bob.post(&answer_path(&alice.user_id), json!({"allow": true})).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn inviting_oneself_is_invalid_param() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let answer = alice.post(&list_path(&alice.user_id), json!({"invite": [alice.user_id]})).await;
    assert_matrix_error(&answer, 400, "M_INVALID_PARAM");
    assert!(list(&alice).await.is_empty());
}

#[tokio::test]
async fn inviting_a_missing_local_user_is_not_found_and_applies_nothing() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;
    invite(&alice, &[&carol.user_id]).await;

    let ghost = hs.user_id("ghost");
    let body = json!({"invite": [bob.user_id, ghost], "drop": [carol.user_id]});
    assert_matrix_error(&alice.post(&list_path(&alice.user_id), body).await, 404, "M_NOT_FOUND");

    let entries = list(&alice).await;
    assert_eq!(entries.len(), 1, "only carol, still pending: {entries:?}");
    assert_opaque_entry(&entries[0], "pending");
    assert_eq!(entries[0]["user_id"], json!(carol.user_id));
    assert!(bob.requesters().await.is_empty(), "bob was not asked");
    assert_eq!(carol.requesters().await, vec![alice.user_id.clone()], "carol's request was not dropped");
}

#[tokio::test]
async fn someone_elses_list_is_forbidden() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;

    assert_matrix_error(&alice.get(&list_path(&bob.user_id)).await, 403, "M_FORBIDDEN");
    let post = alice.post(&list_path(&bob.user_id), json!({"invite": [carol.user_id]})).await;
    assert_matrix_error(&post, 403, "M_FORBIDDEN");
    assert!(list(&bob).await.is_empty(), "the refused POST changed bob's list");
    assert!(carol.requesters().await.is_empty(), "the refused POST asked carol");
}

#[tokio::test]
async fn third_user_never_sees_presence_through_sync() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;
    let dave = hs.register("dave", PW).await;
    accept(&alice, &bob).await;
    invite(&carol, &[&bob.user_id]).await; // pending
    invite(&dave, &[&bob.user_id]).await;
    answer(&bob, &dave.user_id, false).await; // denied

    let mut alice_stream = alice.syncer();
    alice_stream.next(0).await;
    let mut outsiders = Vec::new();
    for outsider in [&carol, &dave] {
        let mut stream = outsider.syncer();
        let initial = stream.next(0).await;
        assert!(presence_events_of(&initial, &bob.user_id).is_empty(), "{}: {initial}", outsider.user_id);
        outsiders.push(stream);
    }

    let waits: Vec<_> = outsiders.into_iter().map(|mut s| tokio::spawn(async move { s.next(1500).await })).collect();
    let put = bob.put(&status_path(&bob.user_id), json!({"presence": "unavailable", "status_msg": "busy"})).await;
    assert_eq!(put, (200, json!({})));

    // Positive control: the accepted watcher does get the change.
    alice_stream
        .until(Duration::from_secs(5), |s| {
            presence_events_of(s, &bob.user_id).into_iter().find(|e| e["content"]["status_msg"] == json!("busy"))
        })
        .await;
    for wait in waits {
        let sync = wait.await.expect("outsider sync task");
        assert!(presence_events_of(&sync, &bob.user_id).is_empty(), "an outsider got bob's presence: {sync}");
    }
    for outsider in [&carol, &dave] {
        let initial = outsider.sync(None, 0).await;
        assert!(presence_events_of(&initial, &bob.user_id).is_empty(), "{}: {initial}", outsider.user_id);
    }
}

#[tokio::test]
async fn remote_invite_stays_pending_and_unknown() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let remote = "@x:elsewhere.test";
    invite(&alice, &[remote]).await;
    let e = entry(&alice, remote).await.expect("the remote user is on the list");
    assert_opaque_entry(&e, "pending");
    assert_forbidden_without_presence(&alice.get(&status_path(remote)).await);
}

#[tokio::test]
async fn answering_a_request_that_does_not_exist_is_not_found() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    for watcher in [alice.user_id.clone(), hs.user_id("ghost"), "@x:elsewhere.test".to_owned()] {
        for allow in [true, false] {
            let got = bob.post(&answer_path(&watcher), json!({"allow": allow})).await;
            assert_matrix_error(&got, 404, "M_NOT_FOUND");
        }
    }
    assert!(list(&alice).await.is_empty(), "answering created an entry on alice's list");
}

#[tokio::test]
async fn setting_someone_elses_status_is_forbidden() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let got = alice.put(&status_path(&bob.user_id), json!({"presence": "unavailable", "status_msg": "hacked"})).await;
    assert_matrix_error(&got, 403, "M_FORBIDDEN");
    let (status, body) = bob.get(&status_path(&bob.user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["status_msg"], json!("hacked"), "{body}");
    assert_ne!(body["presence"], json!("unavailable"), "{body}");
}

#[tokio::test]
async fn device_kind_is_shown_to_watchers() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    accept(&alice, &bob).await;

    let got = bob.put(&devices_path(&bob.device_id), json!({"kind": "mobile"})).await;
    assert_eq!(got, (200, json!({})));
    let expected = json!({"device_id": bob.device_id, "kind": "mobile", "idle": false});

    let e = entry(&alice, &bob.user_id).await.expect("bob on alice's list");
    let devices = e["devices"].as_array().unwrap_or_else(|| panic!("no `devices` array: {e}"));
    assert!(devices.contains(&expected), "list entry devices: {e}");

    let (status, body) = alice.get(&status_path(&bob.user_id)).await;
    assert_eq!(status, 200, "{body}");
    let devices = body["tidings.devices"].as_array().unwrap_or_else(|| panic!("no `tidings.devices`: {body}"));
    assert!(devices.contains(&expected), "GET status tidings.devices: {body}");
}

#[tokio::test]
async fn device_kind_defaults_to_unknown() {
    let hs = server().await;
    let bob = hs.register("bob", PW).await;
    let (status, body) = bob.get(&status_path(&bob.user_id)).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({"device_id": bob.device_id, "kind": "unknown", "idle": false});
    assert_eq!(body["tidings.devices"], json!([expected]), "{body}");
}

#[tokio::test]
async fn device_report_for_a_device_not_the_callers_is_not_found() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    for device in [alice.device_id.as_str(), "NOSUCHDEVICE"] {
        let got = bob.put(&devices_path(device), json!({"kind": "desktop"})).await;
        assert_matrix_error(&got, 404, "M_NOT_FOUND");
        let got = bob.put(&devices_path(device), json!({"idle_ms": 1000})).await;
        assert_matrix_error(&got, 404, "M_NOT_FOUND");
    }
    let (status, body) = alice.get(&status_path(&alice.user_id)).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!([{"device_id": alice.device_id, "kind": "unknown", "idle": false}]);
    assert_eq!(body["tidings.devices"], expected, "bob's refused report changed alice's device: {body}");
}

#[tokio::test]
async fn device_report_without_fields_is_bad_request() {
    let hs = server().await;
    let bob = hs.register("bob", PW).await;
    let got = bob.put(&devices_path(&bob.device_id), json!({})).await;
    assert_matrix_error(&got, 400, "M_MISSING_PARAM");
    let got = bob.put(&devices_path(&bob.device_id), json!({"idle_ms": null, "kind": null})).await;
    assert_matrix_error(&got, 400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn poll_switch_answers_empty_object() {
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    for enabled in [true, false, true] {
        let got = alice.put("/_tidings/client/v1/presence/poll", json!({"enabled": enabled})).await;
        assert_eq!(got, (200, json!({})), "enabled={enabled}");
    }
    let got = alice.put("/_tidings/client/v1/presence/poll", json!({})).await;
    assert_matrix_error(&got, 400, "M_BAD_JSON");
}
