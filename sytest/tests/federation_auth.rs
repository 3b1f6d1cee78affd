//! Federation seen from a fake peer: the test plays `fake.test`.
//!
//! A tiny axum server in the test serves `fake.test`'s signing key
//! (`GET /_matrix/key/v2/server`, from a `ServerKey` in a temporary directory) and
//! records every transaction the real server sends it (answering 200). The real server
//! has `fake.test` in its peer map with that URL; the test signs its own requests with
//! the fake key (`X-Matrix`, as in the spec) and checks what comes back.
//!
//! Proves: `GET /_matrix/key/v2/server` is signed by the key in the data directory
//! (mode 0600), whose ID is stable across restarts and new with a fresh data directory;
//! `GET /_matrix/federation/v1/version` answers; unsigned, forged, misdirected,
//! tampered and unknown-origin transactions get 401 `M_UNAUTHORIZED` and change
//! nothing, a forged signature costing exactly one key re-fetch; a correctly signed
//! one gets 200 `{"pdus": {}}`; a replayed txnId is acknowledged but not applied; EDUs
//! speaking for users not on the origin, or about users nobody here watches, are
//! dropped while the transaction still succeeds; what the real server sends is signed
//! for `fake.test` and carries only users a `fake.test` user is accepted to watch, once
//! subscribed; an idle subscribed peer gets reminders on the short period, a busy one
//! only on the (staggered) long period; a peer's reminder resets the long timer and a
//! digest mismatch in it makes the real server push its state again.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use tempfile::TempDir;
use tidings_core::presence::watchdog_stagger as stagger;
use tidings_federation::keys::ServerKey;
use tidings_federation::xmatrix;
use tidings_sytest::paths::{list_path, status_path};
use tidings_sytest::{Method, Peer, ServerOptions, Session, TestServer, Value, encode_component, eventually, json};
use tokio::task::JoinHandle;

const FAKE: &str = "fake.test";
const REAL: &str = "real.test";
const PW: &str = "federation-auth-pw-1";
const REQUESTS: &str = "/_tidings/client/v1/presence/requests";
const KEY_PATH: &str = "/_matrix/key/v2/server";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn send_path(txn_id: &str) -> String {
    format!("/_matrix/federation/v1/send/{}", encode_component(txn_id))
}

// ----- the fake peer -----

/// A request the real server sent to the fake peer.
#[derive(Clone, Debug)]
struct Received {
    at_ms: u64,
    method: String,
    uri: String,
    auth: Option<String>,
    body: Value,
}

struct FakeState {
    key: ServerKey,
    key_hits: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

/// `fake.test`: its key, its HTTP server, what it was sent.
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

async fn fake_send(State(state): State<Arc<FakeState>>, request: Request) -> Json<Value> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let received = Received {
        at_ms: now_ms(),
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        auth: parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    state.received.lock().expect("received lock").push(received);
    Json(json!({"pdus": {}}))
}

impl FakePeer {
    async fn start() -> FakePeer {
        let dir = tempfile::tempdir().expect("temporary directory for the fake key");
        let key = ServerKey::load_or_create(dir.path()).expect("creating the fake peer's key");
        let state = Arc::new(FakeState { key, key_hits: AtomicUsize::new(0), received: Mutex::new(Vec::new()) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake peer");
        let url = format!("http://{}", listener.local_addr().expect("fake peer address"));
        let app = Router::new()
            .route(KEY_PATH, get(fake_keys))
            .route("/_matrix/federation/v1/send/{txn_id}", put(fake_send))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePeer { state, url, task, _dir: dir }
    }

    fn key(&self) -> &ServerKey {
        &self.state.key
    }

    fn key_hits(&self) -> usize {
        self.state.key_hits.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("received lock").clone()
    }

    /// Every EDU of `edu_type` received so far, with its request.
    fn edus(&self, edu_type: &str) -> Vec<(Received, Value)> {
        let mut out = Vec::new();
        for r in self.received() {
            for edu in r.body["edus"].as_array().into_iter().flatten() {
                if edu["edu_type"] == json!(edu_type) {
                    out.push((r.clone(), edu["content"].clone()));
                }
            }
        }
        out
    }

    /// Waits for an EDU of `edu_type`, received at `since_ms` or later, whose content
    /// passes `check`.
    async fn wait_edu(
        &self,
        edu_type: &str,
        since_ms: u64,
        deadline: Duration,
        check: impl Fn(&Value) -> bool + Copy,
    ) -> (Received, Value) {
        eventually(deadline, || async move {
            let all: Vec<(Received, Value)> =
                self.edus(edu_type).into_iter().filter(|(r, _)| r.at_ms >= since_ms).collect();
            all.iter().find(|(_, c)| check(c)).cloned().ok_or_else(|| format!("{edu_type} so far: {all:?}"))
        })
        .await
    }

    /// A transaction body from `fake.test`.
    fn txn(edus: Vec<Value>) -> Value {
        json!({"origin": FAKE, "origin_server_ts": now_ms(), "pdus": [], "edus": edus})
    }

    /// Sends `body` as transaction `txn_id`, signed correctly for `hs`.
    async fn send(&self, hs: &TestServer, txn_id: &str, body: &Value) -> (u16, Value) {
        let path = send_path(txn_id);
        let auth = xmatrix::authorization_header(self.key(), FAKE, hs.server_name(), "PUT", &path, Some(body));
        put_raw(hs, &path, Some(&auth), body).await
    }

    /// Sends a transaction of `edus` and asserts the spec's 200 `{"pdus": {}}`.
    async fn send_ok(&self, hs: &TestServer, txn_id: &str, edus: Vec<Value>) {
        let body = Self::txn(edus);
        let got = self.send(hs, txn_id, &body).await;
        assert_eq!(got, (200, json!({"pdus": {}})), "transaction {txn_id}: {body}");
    }
}

/// `PUT path` to `hs` with an optional Authorization header and a JSON body.
async fn put_raw(hs: &TestServer, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = auth {
        headers.push(("Authorization", auth));
    }
    let resp = hs.client().raw(Method::PUT, path, &headers, body.to_string()).await;
    (resp.status, resp.json())
}

fn invite_edu(watcher: &str, target: &str) -> Value {
    json!({"edu_type": "tidings.presence_invite", "content": {"watcher": watcher, "target": target}})
}

fn answer_edu(watcher: &str, target: &str, allow: bool) -> Value {
    json!({"edu_type": "tidings.presence_answer", "content": {"watcher": watcher, "target": target, "allow": allow}})
}

fn drop_edu(watcher: &str, target: &str) -> Value {
    json!({"edu_type": "tidings.presence_drop", "content": {"watcher": watcher, "target": target}})
}

fn subscribe_edu(add: &[&str]) -> Value {
    json!({"edu_type": "tidings.presence_subscribe", "content": {"add": add, "replace": true}})
}

fn reminder_edu(pushed: &str, held: &str) -> Value {
    json!({"edu_type": "tidings.presence_reminder", "content": {"pushed": pushed, "held": held}})
}

fn presence_edu(user_id: &str, presence: &str, msg: &str) -> Value {
    json!({"edu_type": "m.presence", "content": {"push": [{
        "user_id": user_id, "presence": presence, "status_msg": msg, "last_active_ago": 0, "currently_active": true,
    }]}})
}

/// The pushed states about `user_id` in an `m.presence` content.
fn pushes_of<'a>(content: &'a Value, user_id: &str) -> Vec<&'a Value> {
    content["push"].as_array().into_iter().flatten().filter(|p| p["user_id"] == json!(user_id)).collect()
}

/// Makes `marker`, a user of the real server, invite `@{localpart}:fake.test`, and
/// waits until that invite reaches the fake peer. Whatever the real server had to
/// send `fake.test` before the invite was made has left by then, in the same
/// transaction or an earlier one (a batch timer starts at the first queued change
/// and is never extended): a positive barrier before asserting that something was
/// not sent.
async fn marker_invite(fake: &FakePeer, marker: &Session, localpart: &str) {
    let target = format!("@{localpart}:{FAKE}");
    let got = marker.post(&list_path(&marker.user_id), json!({"invite": [target]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {target}", marker.user_id);
    fake.wait_edu("tidings.presence_invite", 0, Duration::from_secs(5), |c| {
        c["watcher"] == json!(marker.user_id) && c["target"] == json!(target)
    })
    .await;
}

// ----- the real server -----

/// The real server, with `fake.test` as its only peer.
async fn real_server(fake: &FakePeer, batch_ms: u64, short_watchdog_ms: u64, long_watchdog_ms: u64) -> TestServer {
    TestServer::start(ServerOptions {
        batch_ms,
        short_watchdog_ms,
        long_watchdog_ms,
        offline_after_ms: 120_000,
        peers: vec![Peer::new(FAKE, fake.url.clone())],
        ..ServerOptions::named(REAL)
    })
    .await
}

/// The real server's key: ID and public key, from its key endpoint.
async fn real_key(hs: &TestServer) -> (String, String) {
    let (status, body) = hs.client().get(KEY_PATH).await;
    assert_eq!(status, 200, "{body}");
    let keys = body["verify_keys"].as_object().unwrap_or_else(|| panic!("no verify_keys: {body}"));
    assert_eq!(keys.len(), 1, "{body}");
    let (id, key) = keys.iter().next().expect("one key");
    (id.clone(), key["key"].as_str().unwrap_or_else(|| panic!("no key: {body}")).to_owned())
}

/// Asserts that the real server sent `r` as a transaction signed for `fake.test`.
#[track_caller]
fn assert_signed_by_real(r: &Received, key: &(String, String)) {
    assert_eq!(r.method, "PUT", "{r:?}");
    assert!(r.uri.starts_with("/_matrix/federation/v1/send/"), "{r:?}");
    let header = r.auth.as_deref().unwrap_or_else(|| panic!("no Authorization header: {r:?}"));
    let auth = xmatrix::parse_authorization(header).unwrap_or_else(|e| panic!("bad X-Matrix header ({e}): {header}"));
    assert_eq!(auth.origin, REAL, "{header}");
    assert_eq!(auth.destination.as_deref(), Some(FAKE), "{header}");
    assert_eq!(auth.key, key.0, "{header}");
    if let Err(e) = xmatrix::verify_request(&auth, FAKE, "PUT", &r.uri, Some(&r.body), &key.1) {
        panic!("the real server's signature does not verify ({e}): {r:?}");
    }
    assert_eq!(r.body["origin"], json!(REAL), "{r:?}");
    assert!(r.body["origin_server_ts"].is_u64() && r.body["edus"].is_array(), "{r:?}");
}

/// `fake.test`'s entry in the admin peers of the real server.
async fn fake_entry(admin: &Session) -> Value {
    admin.federation_peer(FAKE).await
}

fn num(entry: &Value, field: &str) -> u64 {
    entry[field].as_u64().unwrap_or_else(|| panic!("`{field}` is not an integer: {entry}"))
}

async fn entry(session: &Session, user_id: &str) -> Option<Value> {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().into_iter().flatten().find(|e| e["user_id"] == json!(user_id)).cloned()
}

async fn put_status(session: &Session, presence: &str, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": presence, "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})));
}

/// `v` as canonical JSON (sorted keys, no spaces), enough for ASCII documents.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Checks a key response against the signing key in `data_dir`: same key, and the
/// signature is what that key makes over the response's canonical JSON (ed25519
/// signatures are deterministic). Returns the key ID and public key.
fn check_key_response(body: &Value, data_dir: &std::path::Path) -> (String, String) {
    assert_eq!(body["server_name"], json!(REAL), "{body}");
    let valid_until = body["valid_until_ts"].as_u64().unwrap_or_else(|| panic!("no valid_until_ts: {body}"));
    assert!(valid_until > now_ms() + 60_000, "the key is valid only until {valid_until}: {body}");
    assert!(body["old_verify_keys"].is_object(), "{body}");
    let keys = body["verify_keys"].as_object().unwrap_or_else(|| panic!("no verify_keys: {body}"));
    assert_eq!(keys.len(), 1, "{body}");
    let (key_id, entry) = keys.iter().next().expect("one key");
    let version = key_id.strip_prefix("ed25519:").unwrap_or_else(|| panic!("not an ed25519 key ID: {key_id}"));
    assert!(!version.is_empty() && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{key_id}");
    let public = entry["key"].as_str().unwrap_or_else(|| panic!("no key: {body}"));
    let is_b64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    assert!(public.len() == 43 && is_b64(public), "not an unpadded base64 32-byte key: {public}");
    let sig = body["signatures"][REAL][key_id.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("not signed by {REAL} with {key_id}: {body}"));
    assert!(sig.len() == 86 && is_b64(sig), "not an unpadded base64 ed25519 signature: {sig}");

    let key = ServerKey::load_or_create(data_dir).expect("reading the real server's key file");
    assert_eq!(key.key_id(), key_id, "the published key ID is not the key file's");
    assert_eq!(key.public_key_base64(), public, "the published key is not the key file's");
    let mut unsigned = body.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    assert_eq!(sig, key.sign_bytes_base64(canonical(&unsigned).as_bytes()), "the key response's signature is wrong");
    (key_id.clone(), public.to_owned())
}

// ----- the tests -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_signed_stable_server_key() {
    let mut hs = TestServer::start(ServerOptions::named(REAL)).await;
    let (status, body) = hs.client().get("/_matrix/federation/v1/version").await;
    assert_eq!(status, 200, "{body}");
    for field in ["name", "version"] {
        assert!(body["server"][field].as_str().is_some_and(|s| !s.is_empty()), "no server.{field}: {body}");
    }

    let (status, body) = hs.client().get(KEY_PATH).await;
    assert_eq!(status, 200, "{body}");
    let first = check_key_response(&body, &hs.data_dir());
    let key_file = hs.data_dir().join("signing.key");
    let mode = std::fs::metadata(&key_file).expect("the key file exists").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", key_file.display());

    hs.restart().await;
    let (status, body) = hs.client().get(KEY_PATH).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(check_key_response(&body, &hs.data_dir()), first, "the key changed across a restart");

    hs.kill9().await;
    hs.restart().await;
    let (_, body) = hs.client().get(KEY_PATH).await;
    assert_eq!(check_key_response(&body, &hs.data_dir()), first, "the key changed across kill -9");

    hs.restart_fresh().await;
    let (status, body) = hs.client().get(KEY_PATH).await;
    assert_eq!(status, 200, "{body}");
    let fresh = check_key_response(&body, &hs.data_dir());
    assert_ne!(fresh.0, first.0, "a fresh data directory kept the key ID");
    assert_ne!(fresh.1, first.1, "a fresh data directory kept the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_correctly_signed_transactions_from_peers_are_accepted() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, 200, 60_000, 3_600_000).await;
    let admin = hs.create_admin("admin", PW).await;
    let alice = hs.register("alice", PW).await;
    let alice_id = alice.user_id.clone();
    let dest = hs.server_name().to_owned();

    // Correctly signed: 200 {"pdus": {}}; the real server fetched our key once.
    fake.send_ok(&hs, "good-1", vec![]).await;
    assert_eq!(fake.key_hits(), 1, "key fetches for the first transaction");
    let seen = fake_entry(&admin).await;
    assert_eq!(num(&seen, "txns_received"), 1, "{seen}");
    assert!(seen["last_received_ts"].as_u64().is_some_and(|ts| ts + 60_000 > now_ms()), "{seen}");

    // Each refused request carries an invite for alice from a different fake user:
    // none of them may show up.
    let body_for = |n: u32| FakePeer::txn(vec![invite_edu(&format!("@w{n}:{FAKE}"), &alice_id)]);
    let refused = |what: &str, answer: (u16, Value)| {
        assert!(
            answer.0 == 401 && answer.1["errcode"] == json!("M_UNAUTHORIZED") && answer.1["error"].is_string(),
            "{what}: expected 401 M_UNAUTHORIZED, got {} {}",
            answer.0,
            answer.1
        );
    };

    // Signed by another key under the same key ID: refused after exactly one re-fetch.
    let forger = ServerKey::from_seed(&[7u8; 32], fake.key().version().to_owned()).expect("forger key");
    assert_eq!(forger.key_id(), fake.key().key_id());
    let body = body_for(1);
    let path = send_path("forged-1");
    let auth = xmatrix::authorization_header(&forger, FAKE, &dest, "PUT", &path, Some(&body));
    let hits = fake.key_hits();
    refused("forged signature", put_raw(&hs, &path, Some(&auth), &body).await);
    assert_eq!(fake.key_hits() - hits, 1, "a failed verification must re-fetch the key exactly once");

    // No header, another scheme, a malformed one.
    refused("unsigned", put_raw(&hs, &send_path("unsigned-1"), None, &body_for(2)).await);
    refused("bearer", put_raw(&hs, &send_path("bearer-1"), Some("Bearer abc"), &body_for(3)).await);
    refused("malformed", put_raw(&hs, &send_path("bad-1"), Some("X-Matrix origin=fake.test"), &body_for(4)).await);

    // A key the peer does not publish.
    let stranger_key = ServerKey::from_seed(&[8u8; 32], "other1".to_owned()).expect("key");
    let body = body_for(5);
    let path = send_path("unknown-key-1");
    let auth = xmatrix::authorization_header(&stranger_key, FAKE, &dest, "PUT", &path, Some(&body));
    refused("unknown key", put_raw(&hs, &path, Some(&auth), &body).await);

    // For another destination, and a destination changed after signing.
    let body = body_for(6);
    let path = send_path("dest-1");
    let auth = xmatrix::authorization_header(fake.key(), FAKE, "other.test", "PUT", &path, Some(&body));
    refused("wrong destination", put_raw(&hs, &path, Some(&auth), &body).await);
    let edited = auth.replace("destination=\"other.test\"", &format!("destination=\"{dest}\""));
    assert_ne!(edited, auth);
    refused("destination edited after signing", put_raw(&hs, &path, Some(&edited), &body).await);

    // Signed for another txnId, and a body changed after signing.
    let body = body_for(7);
    let auth = xmatrix::authorization_header(fake.key(), FAKE, &dest, "PUT", &send_path("a"), Some(&body));
    refused("signed for another path", put_raw(&hs, &send_path("b"), Some(&auth), &body).await);
    let signed = FakePeer::txn(vec![]);
    let path = send_path("tampered-1");
    let auth = xmatrix::authorization_header(fake.key(), FAKE, &dest, "PUT", &path, Some(&signed));
    refused("tampered body", put_raw(&hs, &path, Some(&auth), &body_for(8)).await);

    // A server that is not in the peer map, with a perfectly good signature.
    let mut body = body_for(9);
    body["origin"] = json!("stranger.test");
    body["edus"] = json!([invite_edu("@w9:stranger.test", &alice_id)]);
    let path = send_path("stranger-1");
    let auth = xmatrix::authorization_header(&stranger_key, "stranger.test", &dest, "PUT", &path, Some(&body));
    refused("origin not in the peer map", put_raw(&hs, &path, Some(&auth), &body).await);

    // A body naming another origin than the one that signed it.
    let mut body = body_for(10);
    body["origin"] = json!("elsewhere.test");
    let path = send_path("origin-1");
    let auth = xmatrix::authorization_header(fake.key(), FAKE, &dest, "PUT", &path, Some(&body));
    refused("body origin is not the signer", put_raw(&hs, &path, Some(&auth), &body).await);

    assert!(alice.requesters().await.is_empty(), "a refused transaction was applied");
    let seen = fake_entry(&admin).await;
    assert_eq!(num(&seen, "txns_received"), 1, "refused requests counted as received: {seen}");

    // And a good one is applied.
    fake.send_ok(&hs, "good-2", vec![invite_edu(&format!("@ok:{FAKE}"), &alice_id)]).await;
    assert_eq!(alice.requesters().await, vec![format!("@ok:{FAKE}")]);
    assert_eq!(num(&fake_entry(&admin).await, "txns_received"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_txn_id_is_acknowledged_but_not_applied() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, 200, 60_000, 3_600_000).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let carol = hs.register("carol", PW).await;
    let watcher = format!("@w:{FAKE}");

    fake.send_ok(&hs, "replay-1", vec![invite_edu(&watcher, &alice.user_id)]).await;
    assert_eq!(alice.requesters().await, vec![watcher.clone()]);

    // The same txnId again, other content: acknowledged, not applied.
    fake.send_ok(&hs, "replay-1", vec![invite_edu(&watcher, &bob.user_id)]).await;
    // A new txnId after it is applied (so the replay had its chance to be).
    fake.send_ok(&hs, "replay-2", vec![invite_edu(&watcher, &carol.user_id)]).await;
    assert_eq!(carol.requesters().await, vec![watcher.clone()]);
    assert!(bob.requesters().await.is_empty(), "a replayed txnId was applied");
    let sync = bob.sync(None, 0).await;
    let events = sync["tidings.presence_requests"]["events"].as_array().cloned().unwrap_or_default();
    assert!(events.is_empty(), "bob's sync shows requests from a replayed transaction: {sync}");
    assert_eq!(alice.requesters().await, vec![watcher], "alice's request vanished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edus_a_peer_may_not_send_are_dropped_and_the_transaction_still_succeeds() {
    let fake = FakePeer::start().await;
    let hs = real_server(&fake, 200, 60_000, 3_600_000).await;
    let real_key = real_key(&hs).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let dave = hs.register("dave", PW).await;
    // bob (local) watches alice.
    let got = bob.post(&list_path(&bob.user_id), json!({"invite": [alice.user_id]})).await;
    assert_eq!(got, (200, json!({})));
    let got = alice.post(&format!("{REQUESTS}/{}", encode_component(&bob.user_id)), json!({"allow": true})).await;
    assert_eq!(got, (200, json!({})));
    put_status(&alice, "online", "real status").await;
    let carl = format!("@carl:{FAKE}");

    // fake.test speaks for users that are not its own: every EDU is dropped, the
    // transactions still succeed.
    fake.send_ok(&hs, "spoof-presence", vec![presence_edu(&alice.user_id, "unavailable", "forged")]).await;
    fake.send_ok(&hs, "spoof-invite", vec![invite_edu("@evil:elsewhere.test", &alice.user_id)]).await;
    fake.send_ok(&hs, "spoof-answer", vec![answer_edu(&bob.user_id, &alice.user_id, false)]).await;
    fake.send_ok(&hs, "spoof-drop", vec![drop_edu(&bob.user_id, &alice.user_id)]).await;
    // And things that make no sense here: an invite for nobody, presence of a fake
    // user nobody watches, an EDU type nobody knows, all in one transaction.
    fake.send_ok(
        &hs,
        "nonsense",
        vec![
            invite_edu(&format!("@w:{FAKE}"), &format!("@nobody:{REAL}")),
            presence_edu(&carl, "online", "unwatched"),
            json!({"edu_type": "org.example.unknown", "content": {"x": 1}}),
        ],
    )
    .await;

    let (status, body) = bob.get(&status_path(&alice.user_id)).await;
    assert_eq!(status, 200, "bob lost sight of alice: {body}");
    assert_eq!((&body["presence"], &body["status_msg"]), (&json!("online"), &json!("real status")), "{body}");
    let listed = entry(&bob, &alice.user_id).await.expect("alice still on bob's list");
    assert_eq!(listed["subscription"], json!("accepted"), "{listed}");
    assert!(alice.requesters().await.is_empty(), "a foreign invite was applied");

    // dave asks to watch carl: the invite leaves for fake.test, signed for it.
    let got = dave.post(&list_path(&dave.user_id), json!({"invite": [carl]})).await;
    assert_eq!(got, (200, json!({})));
    let (r, _) = fake
        .wait_edu("tidings.presence_invite", 0, Duration::from_secs(5), |c| {
            c["watcher"] == json!(dave.user_id) && c["target"] == json!(carl)
        })
        .await;
    assert_signed_by_real(&r, &real_key);

    // While pending, carl's presence is dropped.
    fake.send_ok(&hs, "carl-pending", vec![presence_edu(&carl, "online", "while pending")]).await;
    let listed = entry(&dave, &carl).await.expect("carl on dave's list");
    assert_eq!((&listed["subscription"], &listed["presence"]), (&json!("pending"), &json!("unknown")), "{listed}");
    // carl accepts: nothing dropped before was kept.
    fake.send_ok(&hs, "carl-answer", vec![answer_edu(&dave.user_id, &carl, true)]).await;
    let listed = entry(&dave, &carl).await.expect("carl on dave's list");
    assert_eq!((&listed["subscription"], &listed["presence"]), (&json!("accepted"), &json!("unknown")), "{listed}");
    // dave is active, so the real server now subscribes to carl.
    let (r, _) = fake
        .wait_edu("tidings.presence_subscribe", 0, Duration::from_secs(5), |c| {
            c["add"].as_array().is_some_and(|a| a.contains(&json!(carl)))
        })
        .await;
    assert_signed_by_real(&r, &real_key);
    // Now carl's presence is applied.
    fake.send_ok(&hs, "carl-online", vec![presence_edu(&carl, "online", "hello")]).await;
    let listed = entry(&dave, &carl).await.expect("carl on dave's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("online"), &json!("hello")), "{listed}");
    let sync = dave.sync(None, 0).await;
    let event = sync["presence"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["sender"] == json!(carl))
        .unwrap_or_else(|| panic!("no presence of carl in dave's sync: {sync}"));
    assert_eq!(event["content"]["status_msg"], json!("hello"), "{event}");
    // No push the real server sent ever named a user it was not asked for.
    assert!(
        fake.edus("m.presence").is_empty(),
        "the real server pushed presence unasked: {:?}",
        fake.edus("m.presence")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_pushes_and_reminders_with_a_fake_peer() {
    const BATCH_MS: u64 = 200;
    const SHORT_MS: u64 = 1000;
    const LONG_MS: u64 = 4000;
    const TICK_MS: u64 = SHORT_MS / 10;
    let long_period = (LONG_MS as f64 * stagger(REAL, FAKE)).round() as u64;

    let fake = FakePeer::start().await;
    let hs = real_server(&fake, BATCH_MS, SHORT_MS, LONG_MS).await;
    let real_key = real_key(&hs).await;
    let admin = hs.create_admin("admin", PW).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let marker = hs.register("marker", PW).await;
    let watcher = format!("@w:{FAKE}");
    put_status(&alice, "online", "before-sub").await;
    put_status(&bob, "online", "bob's own").await;

    // w asks to watch alice and bob; only alice allows. The answer goes out signed.
    fake.send_ok(&hs, "ask", vec![invite_edu(&watcher, &alice.user_id), invite_edu(&watcher, &bob.user_id)]).await;
    assert_eq!(alice.requesters().await, vec![watcher.clone()]);
    let got = alice.post(&format!("{REQUESTS}/{}", encode_component(&watcher)), json!({"allow": true})).await;
    assert_eq!(got, (200, json!({})));
    let (r, answer) = fake
        .wait_edu("tidings.presence_answer", 0, Duration::from_secs(5), |c| c["target"] == json!(alice.user_id))
        .await;
    assert_eq!(answer, json!({"watcher": watcher, "target": alice.user_id, "allow": true}));
    assert_signed_by_real(&r, &real_key);
    // Accepted, but nobody subscribed yet: no timers, no pushes (up to a marker
    // sent after the answer).
    marker_invite(&fake, &marker, "m1").await;
    let e = fake_entry(&admin).await;
    assert!(e["short_watchdog_due_ts"].is_null() && e["long_watchdog_due_ts"].is_null(), "{e}");
    assert!(fake.edus("m.presence").is_empty(), "pushed before any subscription: {:?}", fake.edus("m.presence"));

    // fake.test subscribes to alice and bob: it gets alice's state, never bob's.
    let subscribed_at = now_ms();
    fake.send_ok(&hs, "subscribe", vec![subscribe_edu(&[&alice.user_id, &bob.user_id])]).await;
    let (r, _) = fake
        .wait_edu("m.presence", 0, Duration::from_millis(BATCH_MS + 1500), |c| {
            pushes_of(c, &alice.user_id)
                .iter()
                .any(|p| p["presence"] == json!("online") && p["status_msg"] == json!("before-sub"))
        })
        .await;
    assert_signed_by_real(&r, &real_key);
    assert!(r.at_ms < subscribed_at + BATCH_MS + 1500, "the answer to the subscription took too long");
    let e = fake_entry(&admin).await;
    assert!(e["short_watchdog_due_ts"].is_u64() && e["long_watchdog_due_ts"].is_u64(), "{e}");
    put_status(&alice, "unavailable", "after-sub").await;
    fake.wait_edu("m.presence", 0, Duration::from_millis(BATCH_MS + 1500), |c| {
        pushes_of(c, &alice.user_id).iter().any(|p| p["status_msg"] == json!("after-sub"))
    })
    .await;
    put_status(&bob, "unavailable", "bob's secret").await;

    // Idle: reminders on the short period (the 2xx answers keep us fresh).
    let idle_from = now_ms() + BATCH_MS + TICK_MS + 200;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let idle_to = now_ms();
    let reminders: Vec<(Received, Value)> =
        fake.edus("tidings.presence_reminder").into_iter().filter(|(r, _)| r.at_ms >= idle_from).collect();
    let window = idle_to - idle_from;
    assert!(
        reminders.len() as u64 >= window / (SHORT_MS + BATCH_MS + TICK_MS + 300)
            && reminders.len() as u64 <= window / SHORT_MS + 2,
        "{} reminders in {window} ms of idle (short {SHORT_MS} ms): {reminders:?}",
        reminders.len()
    );
    for (r, content) in &reminders {
        assert_signed_by_real(r, &real_key);
        assert!(content["pushed"].is_string() && content["held"].is_string(), "{content}");
    }

    // Steady traffic from fake.test (an empty transaction every 300 ms): the short
    // timer keeps being reset, so the only reminder is the long timer's, which an
    // ordinary transaction does not reset.
    let long_due = num(&fake_entry(&admin).await, "long_watchdog_due_ts");
    let steady_from = now_ms();
    let mut n = 0;
    let new_long_due = loop {
        n += 1;
        let sent = now_ms();
        fake.send_ok(&hs, &format!("steady-{n}"), vec![]).await;
        let e = fake_entry(&admin).await;
        let short_due = num(&e, "short_watchdog_due_ts");
        assert!(
            short_due + 50 >= sent + SHORT_MS,
            "a verified request did not reset the short timer (sent {sent}): {e}"
        );
        let long = num(&e, "long_watchdog_due_ts");
        if long != long_due {
            assert!(now_ms() + 50 >= long_due, "the long timer moved before it was due ({long_due}): {e}");
            break long;
        }
        assert!(now_ms() < long_due + 1000 + 2 * TICK_MS, "the long timer did not fire at {long_due}: {e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        new_long_due + 50 >= long_due + long_period && new_long_due <= long_due + long_period + 3 * TICK_MS + 300,
        "the long timer re-armed at {new_long_due}, expected about {long_due} + {long_period}"
    );
    // Go on a little, and until the long reminder has arrived, then look at what came.
    for _ in 0..4 {
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        fake.send_ok(&hs, &format!("steady-{n}"), vec![]).await;
    }
    fake.wait_edu("tidings.presence_reminder", long_due.saturating_sub(50), Duration::from_secs(10), |_| true).await;
    let steady: Vec<u64> = fake
        .edus("tidings.presence_reminder")
        .into_iter()
        .map(|(r, _)| r.at_ms)
        .filter(|&at| at >= steady_from + BATCH_MS + TICK_MS + 300)
        .collect();
    let from_long: Vec<u64> =
        steady.iter().copied().filter(|&at| at + 50 >= long_due && at <= long_due + TICK_MS + BATCH_MS + 700).collect();
    assert_eq!(
        (steady.len(), from_long.len()),
        (1, 1),
        "under steady traffic the only reminder should follow the long timer (due {long_due}): {steady:?}"
    );

    // A reminder from the peer resets the long timer; with matching digests it
    // changes nothing else.
    let (_, last) = fake.edus("tidings.presence_reminder").pop().expect("a reminder");
    let before = fake.edus("m.presence").len();
    let sent = now_ms();
    let pushed = last["held"].as_str().expect("held").to_owned();
    let held = last["pushed"].as_str().expect("pushed").to_owned();
    fake.send_ok(&hs, "reminder-match", vec![reminder_edu(&pushed, &held)]).await;
    let e = fake_entry(&admin).await;
    let long = num(&e, "long_watchdog_due_ts");
    assert!(
        long + 50 >= sent + long_period && long <= now_ms() + long_period + 50,
        "a reminder did not reset the long timer (sent {sent}, period {long_period}): {e}"
    );
    marker_invite(&fake, &marker, "m2").await;
    assert_eq!(fake.edus("m.presence").len(), before, "matching digests, yet presence was pushed again");

    // A digest that does not match what the real server pushed: it pushes again.
    let mismatch_sent = now_ms();
    fake.send_ok(&hs, "reminder-mismatch", vec![reminder_edu(&pushed, "bogus")]).await;
    let again = fake
        .wait_edu("m.presence", mismatch_sent, Duration::from_millis(BATCH_MS + 1500), |c| {
            pushes_of(c, &alice.user_id).iter().any(|p| p["status_msg"] == json!("after-sub"))
        })
        .await;
    let all = fake.edus("m.presence");
    assert!(all.len() > before, "no new push after a mismatching reminder: {again:?}");

    // Never a word about bob, who accepted nobody on fake.test.
    for (_, content) in fake.edus("m.presence") {
        assert!(pushes_of(&content, &bob.user_id).is_empty(), "bob's presence was pushed: {content}");
        for p in content["push"].as_array().into_iter().flatten() {
            assert_eq!(p["user_id"], json!(alice.user_id), "{content}");
        }
    }
    for r in fake.received() {
        assert_signed_by_real(&r, &real_key);
        assert!(!r.body.to_string().contains("bob's secret"), "{r:?}");
    }
}
