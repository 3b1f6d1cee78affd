//! Consent edge cases across two real servers.
//!
//! Proves: an invite to a remote user who does not exist is answered (as a refusal),
//! so the asker's list shows "denied" instead of "pending" forever; inviting again
//! after a refusal asks anew (the request reaches the target again and the entry is
//! "pending" until answered).

use std::time::Duration;

use tidings_sytest::paths::{answer_path, list_path};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, eventually, json};

const PW: &str = "consent-pw-1";
const WAIT: Duration = Duration::from_secs(15);

fn opts(name: &str) -> ServerOptions {
    ServerOptions { batch_ms: 100, offline_after_ms: 120_000, ..ServerOptions::named(name) }
}

async fn entry(session: &Session, user_id: &str) -> Option<Value> {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array()?.iter().find(|e| e["user_id"] == json!(user_id)).cloned()
}

async fn subscription_becomes(session: &Session, user_id: &str, state: &str) {
    eventually(WAIT, || async {
        let got = entry(session, user_id).await;
        if got.as_ref().is_some_and(|e| e["subscription"] == json!(state)) { Ok(()) } else { Err(got) }
    })
    .await;
}

async fn invite(watcher: &Session, target: &str) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {target}", watcher.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_to_a_remote_user_who_does_not_exist_is_denied() {
    let servers = TestServer::start_federation(vec![opts("alpha.test"), opts("beta.test")]).await;
    let alice = servers[0].register("alice", PW).await;
    let nobody = servers[1].user_id("nobody");
    invite(&alice, &nobody).await;
    subscription_becomes(&alice, &nobody, "denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_again_after_a_refusal_asks_anew() {
    let servers = TestServer::start_federation(vec![opts("alpha.test"), opts("beta.test")]).await;
    let alice = servers[0].register("alice", PW).await;
    let bob = servers[1].register("bob", PW).await;

    invite(&alice, &bob.user_id).await;
    eventually(WAIT, || async { bob.requesters().await.contains(&alice.user_id) }).await;
    assert_eq!(bob.post(&answer_path(&alice.user_id), json!({"allow": false})).await, (200, json!({})));
    subscription_becomes(&alice, &bob.user_id, "denied").await;
    assert!(!bob.requesters().await.contains(&alice.user_id), "a refused request is no longer waiting");

    // Asking again: pending at once, and bob is asked anew.
    invite(&alice, &bob.user_id).await;
    let again = entry(&alice, &bob.user_id).await.expect("bob is still on alice's list");
    assert_eq!(again["subscription"], json!("pending"), "{again}");
    eventually(WAIT, || async { bob.requesters().await.contains(&alice.user_id) }).await;
    assert_eq!(bob.post(&answer_path(&alice.user_id), json!({"allow": true})).await, (200, json!({})));
    subscription_becomes(&alice, &bob.user_id, "accepted").await;
}
