//! What a stranger, or a peer, can make the server do: seen from a fake peer.
//!
//! The test plays `fake.test`: a tiny axum server serving its signing key at
//! `GET /_matrix/key/v2/server` and counting every fetch of it (the counting relay of
//! the hardening issue). The real server has `fake.test` in its peer map.
//!
//! Proves: 200 forged transactions naming `fake.test` (a forged signature under its
//! real key ID, and an unknown key ID) cost at most one key re-fetch, are all refused
//! with 401, are logged a bounded number of times, and a correctly signed transaction
//! from the real peer still verifies afterwards (the good key was not evicted); one
//! peer cannot put more than `presence.max_list_entries` pending requests on one user,
//! not even in a single transaction; the extra invites are dropped and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tempfile::TempDir;
use tidings_federation::keys::ServerKey;
use tidings_federation::xmatrix;
use tidings_sytest::paths::REQUESTS;
use tidings_sytest::{Method, Peer, ServerOptions, TestServer, Value, encode_component, json};
use tokio::task::JoinHandle;

const FAKE: &str = "fake.test";
const REAL: &str = "real.test";
const PW: &str = "amplification-pw-1";
const KEY_PATH: &str = "/_matrix/key/v2/server";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct FakeState {
    key: ServerKey,
    key_hits: AtomicUsize,
}

/// `fake.test`'s key endpoint, counting hits.
struct FakePeer {
    state: Arc<FakeState>,
    url: String,
    task: JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_keys(State(state): State<Arc<FakeState>>) -> Json<Value> {
    state.key_hits.fetch_add(1, Ordering::SeqCst);
    Json(state.key.server_keys_response(FAKE, now_ms(), 86_400_000))
}

impl FakePeer {
    async fn start() -> FakePeer {
        let dir = tempfile::tempdir().expect("temporary directory for the fake key");
        let key = ServerKey::load_or_create(dir.path()).expect("creating the fake peer's key");
        let state = Arc::new(FakeState { key, key_hits: AtomicUsize::new(0) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake peer");
        let url = format!("http://{}", listener.local_addr().expect("fake peer address"));
        let app = Router::new().route(KEY_PATH, get(fake_keys)).with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePeer { state, url, task, _dir: dir }
    }

    fn key_hits(&self) -> usize {
        self.state.key_hits.load(Ordering::SeqCst)
    }

    /// Sends `edus` as transaction `txn_id`, signed by `key` in `fake.test`'s name.
    async fn send_signed(&self, key: &ServerKey, hs: &TestServer, txn_id: &str, edus: Vec<Value>) -> (u16, Value) {
        let body = json!({"origin": FAKE, "origin_server_ts": now_ms(), "pdus": [], "edus": edus});
        let path = format!("/_matrix/federation/v1/send/{}", encode_component(txn_id));
        let auth = xmatrix::authorization_header(key, FAKE, hs.server_name(), "PUT", &path, Some(&body));
        let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
        let resp = hs.client().raw(Method::PUT, &path, &headers, body.to_string()).await;
        (resp.status, resp.json())
    }

    async fn send_ok(&self, hs: &TestServer, txn_id: &str, edus: Vec<Value>) {
        let got = self.send_signed(&self.state.key, hs, txn_id, edus).await;
        assert_eq!(got, (200, json!({"pdus": {}})), "transaction {txn_id}");
    }
}

fn invite_edu(watcher: &str, target: &str) -> Value {
    json!({"edu_type": "tidings.presence_invite", "content": {"watcher": watcher, "target": target}})
}

async fn real_server(fake: &FakePeer, max_list_entries: Option<usize>) -> TestServer {
    let mut opts = ServerOptions {
        offline_after_ms: 120_000,
        peers: vec![Peer::new(FAKE, fake.url.clone())],
        rust_log: Some("info".to_owned()),
        ..ServerOptions::named(REAL)
    };
    if let Some(max) = max_list_entries {
        opts = opts.with_key("presence", "max_list_entries", &max.to_string());
    }
    TestServer::start(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_cost_at_most_one_key_fetch_and_evict_nothing() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, None).await;
    let alice = hs.register("alice", PW).await;

    fake.send_ok(&hs, "good-1", vec![]).await;
    assert_eq!(fake.key_hits(), 1, "the first transaction fetches the key once");

    // 100 forged signatures under the real key ID, 100 under a key the peer does not
    // publish; each carries an invite that must not show up.
    let forger = ServerKey::from_seed(&[7u8; 32], fake.state.key.version().to_owned()).expect("forger key");
    let stranger = ServerKey::from_seed(&[8u8; 32], "other1".to_owned()).expect("stranger key");
    let started = Instant::now();
    for n in 0..200 {
        let key = if n % 2 == 0 { &forger } else { &stranger };
        let edus = vec![invite_edu(&format!("@w{n}:{FAKE}"), &alice.user_id)];
        let (status, body) = fake.send_signed(key, &hs, &format!("forged-{n}"), edus).await;
        assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "forgery {n}: {body}");
    }
    let elapsed = started.elapsed();
    let hits = fake.key_hits();
    eprintln!("amplification: 200 forged requests in {elapsed:?} made {} key fetches", hits - 1);
    assert!(hits <= 2, "200 forged requests made {} key fetches (at most 1 re-fetch allowed)", hits - 1);

    // The real peer still verifies, without a fetch: its key was not evicted.
    fake.send_ok(&hs, "good-2", vec![invite_edu(&format!("@ok:{FAKE}"), &alice.user_id)]).await;
    assert_eq!(fake.key_hits(), hits, "a good request after the forgeries fetched the key");
    assert_eq!(alice.requesters().await, vec![format!("@ok:{FAKE}")], "a forged invite was applied");

    // The refusals are logged once per interval, not once each (the log was written
    // before each 401 was answered, and good-2's 200 came after all of them).
    let log = hs.log();
    let lines = log.lines().filter(|l| l.contains("refused a federation request")).count();
    assert!((1..=2).contains(&lines), "refusals logged {lines} times for 200 forgeries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_pile_up_pending_requests_on_a_user() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, Some(5)).await;
    let alice = hs.register("alice", PW).await;

    // 20 invites in one transaction, 10 more in another: 5 are kept.
    let edus = (0..20).map(|n| invite_edu(&format!("@w{n}:{FAKE}"), &alice.user_id)).collect();
    fake.send_ok(&hs, "many-1", edus).await;
    let edus = (20..30).map(|n| invite_edu(&format!("@w{n}:{FAKE}"), &alice.user_id)).collect();
    fake.send_ok(&hs, "many-2", edus).await;
    let got = alice.requesters().await;
    assert_eq!(got.len(), 5, "pending requests beyond presence.max_list_entries were kept: {got:?}");
    assert!(hs.log().contains("requests waiting (presence.max_list_entries)"), "the dropped invites are logged");

    // Answering one makes room for one more.
    let answer = alice.post(&format!("{REQUESTS}/{}", encode_component(&got[0])), json!({"allow": false})).await;
    assert_eq!(answer, (200, json!({})));
    fake.send_ok(&hs, "many-3", vec![invite_edu(&format!("@late:{FAKE}"), &alice.user_id)]).await;
    let after = alice.requesters().await;
    assert_eq!(after.len(), 5, "{after:?}");
    assert!(after.contains(&format!("@late:{FAKE}")), "{after:?}");
}

/// The figure: "one peer put 2,001 pending requests on one user in 0.4 s",
/// re-measured with the default `max_list_entries` (1000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_invites_from_one_peer_leave_at_most_the_default_cap() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, None).await;
    let alice = hs.register("alice", PW).await;
    let started = Instant::now();
    // A transaction carries at most 100 EDUs: 2,001 invites take 21 of them.
    for batch in 0..21 {
        let edus =
            (batch * 100..(batch * 100 + 100).min(2001)).map(|n| invite_edu(&format!("@w{n}:{FAKE}"), &alice.user_id));
        fake.send_ok(&hs, &format!("flood-{batch}"), edus.collect()).await;
    }
    let elapsed = started.elapsed();
    let got = alice.requesters().await;
    eprintln!("amplification: 2,001 invites from one peer in {elapsed:?} left {} pending requests", got.len());
    assert_eq!(got.len(), 1000, "pending requests held for one user");
}
