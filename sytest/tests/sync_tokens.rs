//! Which `since` tokens `/sync` takes.
//!
//! Proves that a token the server never handed out, one from the future (a real
//! `next_batch` `s<n>` with `n` pushed far beyond the stream), is refused with 400
//! `M_INVALID_PARAM` instead of being waited on or echoed back; and that real tokens
//! stay valid: one from before a graceful restart and one from before a `kill -9`
//! are both accepted afterwards, and the stream goes on from them.

use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, assert_matrix_error, json};

const PW: &str = "sync-tokens-pw-1";

/// The stream position of a `next_batch` token `s<number>`.
fn position(sync: &Value) -> u64 {
    let token = sync["next_batch"].as_str().unwrap_or_else(|| panic!("no string next_batch: {sync}"));
    token
        .strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("next_batch is not s<number>: {token}"))
}

/// `alice` accepted to watch `bob`.
async fn watching(hs: &TestServer) -> (Session, Session) {
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let got = alice.post(&list_path(&alice.user_id), json!({"invite": [bob.user_id]})).await;
    assert_eq!(got, (200, json!({})));
    assert_eq!(bob.post(&answer_path(&alice.user_id), json!({"allow": true})).await, (200, json!({})));
    (alice, bob)
}

/// `session` puts its status text; asserts 200 `{}`.
async fn put_status(session: &Session, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": "online", "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {msg}");
}

/// `/sync` from `since` with timeout 0, asserting 200; returns the body.
async fn sync_from(session: &Session, since: &str, what: &str) -> Value {
    let (status, body) = session.sync_with(&[("since", since), ("timeout", "0")]).await;
    assert_eq!(status, 200, "{what}: /sync since {since} answered {status}: {body}");
    body
}

#[tokio::test]
async fn tokens_from_the_future_are_refused() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (alice, bob) = watching(&hs).await;
    put_status(&bob, "now").await;
    let real = alice.sync(None, 0).await;
    let n = position(&real);
    // The real token is fine.
    sync_from(&alice, &format!("s{n}"), "the token just handed out").await;

    for future in [n + 1_000_000_000_000, u64::MAX] {
        let token = format!("s{future}");
        let answer = alice.sync_with(&[("since", token.as_str()), ("timeout", "0")]).await;
        assert_matrix_error(&answer, 400, "M_INVALID_PARAM");
        // A long poll is refused at once too, rather than parked on a position that never comes.
        let answer = alice.sync_with(&[("since", token.as_str()), ("timeout", "100")]).await;
        assert_matrix_error(&answer, 400, "M_INVALID_PARAM");
    }
    // Refusing them broke nothing: the real token still syncs.
    sync_from(&alice, &format!("s{n}"), "the real token after the refusals").await;
}

#[tokio::test]
async fn tokens_from_before_a_restart_and_a_kill_9_stay_valid() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let (alice, bob) = watching(&hs).await;
    put_status(&bob, "before restart").await;
    let before_restart = alice.sync(None, 0).await;
    let t1 = before_restart["next_batch"].as_str().expect("next_batch").to_owned();

    hs.restart().await;
    let after_restart = sync_from(&alice, &t1, "a token from before a graceful restart").await;
    assert!(position(&after_restart) >= position(&before_restart), "the stream went back: {after_restart}");
    put_status(&bob, "before kill").await;
    let before_kill = sync_from(&alice, &t1, "a token from before a graceful restart").await;
    let t2 = before_kill["next_batch"].as_str().expect("next_batch").to_owned();

    hs.kill9().await;
    hs.restart().await;
    for token in [&t1, &t2] {
        let sync = sync_from(&alice, token, "a token from before kill -9").await;
        assert!(position(&sync) >= position(&before_kill), "the stream went back after kill -9: {sync}");
    }
    // The stream goes on from the old token: a new change arrives on it.
    put_status(&bob, "after kill").await;
    let sync = sync_from(&alice, &t2, "the old token after a new change").await;
    let event = sync["presence"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["sender"] == json!(bob.user_id))
        .unwrap_or_else(|| panic!("bob's change after kill -9 did not arrive on the old token: {sync}"));
    assert_eq!(event["content"]["status_msg"], json!("after kill"), "{sync}");
    assert!(position(&sync) > position(&before_kill), "{sync}");
}
