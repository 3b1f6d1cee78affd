//! `/sync` as a long poll over presence, timed against a real `tidings serve`.
//!
//! Proves that a long poll wakes within about a second of a change the caller may see
//! and carries it; that with nothing visible it waits out its `timeout` and returns no
//! presence; that an initial sync and a `full_state` sync return at once whatever the
//! timeout; that unknown query parameters are ignored; that `next_batch` (`s<number>`)
//! moves forward with changes; that changes of users the caller does not watch, and
//! `last_active` moving by less than 60 s, do not wake it; and that several rapid
//! changes of one user arrive as one event with the newest state.

use std::time::Duration;

use tidings_sytest::paths::status_path;
use tidings_sytest::{ServerOptions, Session, Syncer, TestServer, Value, encode_component, eventually, json};
use tokio::time::Instant;

const PW: &str = "sync-pw-1";

async fn server() -> TestServer {
    TestServer::start(ServerOptions::default()).await
}

/// Registers `alice` (the watcher) and `bob`, with alice accepted to watch bob.
async fn watcher_and_target(hs: &TestServer) -> (Session, Session) {
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let list = format!("/_tidings/client/v1/presence/list/{}", encode_component(&alice.user_id));
    assert_eq!(alice.post(&list, json!({"invite": [bob.user_id]})).await, (200, json!({})));
    let answer = format!("/_tidings/client/v1/presence/requests/{}", encode_component(&alice.user_id));
    assert_eq!(bob.post(&answer, json!({"allow": true})).await, (200, json!({})));
    (alice, bob)
}

/// `session` sets its status text (state online); asserts 200 `{}`.
async fn set_status_msg(session: &Session, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": "online", "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {msg}");
}

/// The `m.presence` events of `sender`.
fn events_of(sync: &Value, sender: &str) -> Vec<Value> {
    sync["presence"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no `presence.events` array: {sync}"))
        .iter()
        .filter(|e| e["sender"] == json!(sender))
        .cloned()
        .collect()
}

/// All `m.presence` events of a sync answer.
fn all_events(sync: &Value) -> Vec<Value> {
    sync["presence"]["events"].as_array().unwrap_or_else(|| panic!("no `presence.events` array: {sync}")).clone()
}

/// The stream position of a `next_batch` token `s<number>`.
fn position(sync: &Value) -> u64 {
    let token = sync["next_batch"].as_str().unwrap_or_else(|| panic!("no string next_batch: {sync}"));
    token
        .strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("next_batch is not s<number>: {token}"))
}

/// Waits until the server reports a long poll parked (`tidings_sync_waiting` in the
/// admin metrics is at least 1): the positive sign that a spawned `/sync` arrived and
/// waits, instead of a pause that hopes it did.
async fn wait_parked(admin: &Session) {
    eventually(Duration::from_secs(5), || async {
        let (status, body) = admin.get("/_tidings/admin/v1/metrics").await;
        let text = body.as_str().unwrap_or_default().to_owned();
        let waiting = text
            .lines()
            .find_map(|l| l.strip_prefix("tidings_sync_waiting "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        match waiting {
            Some(n) if status == 200 && n >= 1.0 => Ok(()),
            _ => Err((status, text)),
        }
    })
    .await;
}

/// A syncer for `session` past its initial sync, with nothing left to deliver: the
/// last incremental sync it made carried no presence.
async fn quiet_syncer(session: &Session) -> Syncer {
    let mut stream = session.syncer();
    stream.next(0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sync = stream.next(0).await;
        if all_events(&sync).is_empty() {
            return stream;
        }
        assert!(Instant::now() < deadline, "the sync stream of {} never went quiet: {sync}", session.user_id);
    }
}

#[tokio::test]
async fn long_poll_wakes_soon_after_a_visible_change() {
    let hs = server().await;
    let admin = hs.create_admin("admin", PW).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let mut stream = quiet_syncer(&alice).await;

    let started = Instant::now();
    let poll = tokio::spawn(async move { stream.next(10_000).await });
    // The poll is parked in the server before anything changes.
    wait_parked(&admin).await;
    assert!(!poll.is_finished(), "the long poll returned with nothing to say");
    set_status_msg(&bob, "woke you").await;
    let changed = Instant::now();
    let sync = poll.await.expect("sync task");
    let woke = changed.elapsed();
    let total = started.elapsed();

    assert!(woke < Duration::from_millis(1500), "woken {woke:?} after the change (timeout 10 s)");
    assert!(total < Duration::from_secs(3), "{total:?}");
    let events = events_of(&sync, &bob.user_id);
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["content"]["status_msg"], json!("woke you"), "{sync}");
}

#[tokio::test]
async fn long_poll_with_nothing_visible_waits_for_the_timeout() {
    let hs = server().await;
    let (alice, _bob) = watcher_and_target(&hs).await;
    let mut stream = quiet_syncer(&alice).await;
    let before = stream.since().expect("a token").to_owned();

    let started = Instant::now();
    let sync = stream.next(2000).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900), "returned after {took:?}, before the 2 s timeout: {sync}");
    assert!(took < Duration::from_millis(4000), "returned after {took:?}, long after the timeout");
    assert!(all_events(&sync).is_empty(), "{sync}");
    assert_eq!(sync["next_batch"], json!(before), "nothing happened, so the position stays: {sync}");
}

#[tokio::test]
async fn initial_and_full_state_syncs_return_at_once() {
    let hs = server().await;
    let (alice, bob) = watcher_and_target(&hs).await;
    set_status_msg(&bob, "here").await;

    let started = Instant::now();
    let (status, initial) = alice.sync_with(&[("timeout", "10000")]).await;
    assert_eq!(status, 200, "{initial}");
    assert!(started.elapsed() < Duration::from_secs(2), "initial sync waited {:?}", started.elapsed());
    assert_eq!(events_of(&initial, &alice.user_id).len(), 1, "own presence in an initial sync: {initial}");
    assert_eq!(events_of(&initial, &bob.user_id)[0]["content"]["status_msg"], json!("here"), "{initial}");

    let mut stream = quiet_syncer(&alice).await;
    let since = stream.since().expect("token").to_owned();
    let started = Instant::now();
    let (status, full) =
        alice.sync_with(&[("since", since.as_str()), ("full_state", "true"), ("timeout", "10000")]).await;
    assert_eq!(status, 200, "{full}");
    assert!(started.elapsed() < Duration::from_secs(2), "full_state sync waited {:?}", started.elapsed());
    assert_eq!(events_of(&full, &alice.user_id).len(), 1, "full_state carries own presence: {full}");
    assert_eq!(events_of(&full, &bob.user_id)[0]["content"]["status_msg"], json!("here"), "{full}");
    // The incremental stream is not disturbed by it.
    assert!(all_events(&stream.next(0).await).is_empty());
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let hs = server().await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let filter = r#"{"room":{"timeline":{"limit":10}},"presence":{"types":["m.presence"]}}"#;
    let (status, initial) = alice.sync_with(&[("filter", filter), ("use_state_after", "true"), ("foo", "bar")]).await;
    assert_eq!(status, 200, "{initial}");
    assert_eq!(events_of(&initial, &bob.user_id).len(), 1, "{initial}");

    set_status_msg(&bob, "filtered?").await;
    let since = initial["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, sync) = alice.sync_with(&[("since", since.as_str()), ("filter", "0"), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{sync}");
    let events = events_of(&sync, &bob.user_id);
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["content"]["status_msg"], json!("filtered?"), "{sync}");
}

#[tokio::test]
async fn next_batch_advances_with_changes() {
    let hs = server().await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let mut stream = quiet_syncer(&alice).await;
    let quiet = stream.next(0).await;
    let p0 = position(&quiet);
    assert_eq!(position(&stream.next(0).await), p0, "no change, same position");

    set_status_msg(&bob, "one").await;
    let first =
        stream.until(Duration::from_secs(5), |s| (!events_of(s, &bob.user_id).is_empty()).then(|| s.clone())).await;
    let p1 = position(&first);
    assert!(p1 > p0, "next_batch moved from s{p0} to s{p1}");

    set_status_msg(&bob, "two").await;
    let second =
        stream.until(Duration::from_secs(5), |s| (!events_of(s, &bob.user_id).is_empty()).then(|| s.clone())).await;
    let p2 = position(&second);
    assert!(p2 > p1, "next_batch moved from s{p1} to s{p2}");
    assert_eq!(events_of(&second, &bob.user_id)[0]["content"]["status_msg"], json!("two"), "{second}");
}

#[tokio::test]
async fn unwatched_changes_do_not_wake_a_long_poll() {
    let hs = server().await;
    let admin = hs.create_admin("admin", PW).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let carol = hs.register("carol", PW).await;
    // A pending request does not make carol visible either.
    let list = format!("/_tidings/client/v1/presence/list/{}", encode_component(&alice.user_id));
    assert_eq!(alice.post(&list, json!({"invite": [carol.user_id]})).await, (200, json!({})));
    let mut stream = quiet_syncer(&alice).await;

    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let sync = stream.next(1500).await;
        (stream, sync)
    });
    wait_parked(&admin).await;
    set_status_msg(&carol, "you cannot see me").await;
    let got = carol.put(&status_path(&carol.user_id), json!({"presence": "unavailable"})).await;
    assert_eq!(got, (200, json!({})));
    let (mut stream, sync) = poll.await.expect("sync task");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "woken after {took:?} by an unwatched user: {sync}");
    assert!(all_events(&sync).is_empty(), "{sync}");

    // A marker after carol's changes: bob, whom alice watches, changes. Everything up
    // to the answer carrying it shows bob's change and never carol.
    set_status_msg(&bob, "marker").await;
    let mut carried_carol = Vec::new();
    stream
        .until(Duration::from_secs(5), |sync| {
            if !events_of(sync, &carol.user_id).is_empty() {
                carried_carol.push(sync.clone());
            }
            events_of(sync, &bob.user_id).iter().any(|e| e["content"]["status_msg"] == json!("marker")).then_some(())
        })
        .await;
    assert!(carried_carol.is_empty(), "alice was sent presence of carol, whom she may not see: {carried_carol:?}");
}

#[tokio::test]
async fn rapid_changes_coalesce_into_one_newest_event() {
    let hs = server().await;
    let (alice, bob) = watcher_and_target(&hs).await;
    let stream = quiet_syncer(&alice).await;
    let since = stream.since().expect("token").to_owned();

    for msg in ["one", "two", "three"] {
        set_status_msg(&bob, msg).await;
    }
    let got = bob.put(&status_path(&bob.user_id), json!({"presence": "unavailable", "status_msg": "four"})).await;
    assert_eq!(got, (200, json!({})));

    let sync = eventually(Duration::from_secs(5), || async {
        let sync = alice.sync(Some(&since), 0).await;
        if events_of(&sync, &bob.user_id).iter().any(|e| e["content"]["status_msg"] == json!("four")) {
            Ok(sync)
        } else {
            Err(sync)
        }
    })
    .await;
    let events = events_of(&sync, &bob.user_id);
    assert_eq!(events.len(), 1, "one event per user, newest state only: {sync}");
    assert_eq!(events[0]["content"]["presence"], json!("unavailable"), "{sync}");
    assert_eq!(events[0]["type"], json!("m.presence"), "{sync}");
}

#[tokio::test]
async fn last_active_moving_alone_does_not_wake_a_watcher() {
    let hs = server().await;
    let admin = hs.create_admin("admin", PW).await;
    let (alice, bob) = watcher_and_target(&hs).await;
    set_status_msg(&bob, "steady").await;
    let mut stream = quiet_syncer(&alice).await;

    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let sync = stream.next(1500).await;
        (stream, sync)
    });
    wait_parked(&admin).await;
    // Bob is active throughout the poll (spaced out, so last_active keeps moving).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, body) = bob.get("/_matrix/client/v3/account/whoami").await;
        assert_eq!(status, 200, "{body}");
    }
    let (mut stream, sync) = poll.await.expect("sync task");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "woken after {took:?} by last_active alone: {sync}");
    assert!(events_of(&sync, &bob.user_id).is_empty(), "{sync}");

    // Nothing about bob is waiting either, and his next real change still arrives.
    let after = stream.next(0).await;
    assert!(events_of(&after, &bob.user_id).is_empty(), "{after}");
    set_status_msg(&bob, "marker").await;
    let first = stream.until(Duration::from_secs(5), |sync| events_of(sync, &bob.user_id).first().cloned()).await;
    assert_eq!(first["content"]["status_msg"], json!("marker"), "alice was sent bob's last_active alone: {first}");
}
