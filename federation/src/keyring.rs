//! Peers' verify keys, fetched from `GET {peer url}/_matrix/key/v2/server` and kept
//! until their `valid_until_ts`.
//!
//! A response is accepted only when it names the expected `server_name` and is signed
//! by the keys it lists (every ed25519 signature of that server must be by one of its
//! `verify_keys`, and all of them must verify). `old_verify_keys` are not used: a
//! request is signed with a current key. On a verification failure the caller calls
//! [`Keyring::forget`] and asks again once, so a peer that came back with a new key
//! (a fresh data directory) is believed after one fetch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ruma::canonical_json::try_from_json_map;
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, PublicKeySet, verify_json};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use tidings_core::clock::SharedClock;

use crate::xmatrix::AuthError;

/// The path of the key endpoint, appended to a peer's configured URL.
pub const KEY_PATH: &str = "/_matrix/key/v2/server";

/// A key response larger than this is refused (a real one is well under 1 KiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How long one key fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One peer's current verify keys.
#[derive(Debug, Clone)]
struct PeerKeys {
    /// Key ID → unpadded base64 public key.
    keys: BTreeMap<String, String>,
    /// Unix ms after which these keys are fetched again before use.
    valid_until_ts: u64,
}

/// Verify keys of peers, fetched on demand and cached until they expire.
#[derive(Debug)]
pub struct Keyring {
    http: reqwest::Client,
    clock: SharedClock,
    peers: Mutex<HashMap<String, PeerKeys>>,
    /// One fetch at a time per server; later askers wait and read the cache.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Keyring {
    /// A keyring with its own HTTP client (10 s timeout) reading time from `clock`.
    pub fn new(clock: SharedClock) -> Self {
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot build the key fetch client with a timeout; using defaults");
            reqwest::Client::new()
        });
        Self::with_client(http, clock)
    }

    /// A keyring that fetches with `http` (the federation's own client, so key fetches
    /// are TLS-verified exactly as transactions are), 10 s per fetch.
    pub fn with_client(http: reqwest::Client, clock: SharedClock) -> Self {
        Self { http, clock, peers: Mutex::new(HashMap::new()), fetching: Mutex::new(HashMap::new()) }
    }

    /// The public key (unpadded base64) `key_id` of `server_name`, from the cache
    /// while it is valid, else fetched from `peer_url` (the peer's configured base
    /// URL, e.g. `http://127.0.0.1:8009`). Any failure to get a verified key with
    /// that ID is [`AuthError::UnknownKey`]; the reason is logged.
    pub async fn key_for(&self, server_name: &str, key_id: &str, peer_url: &str) -> Result<String, AuthError> {
        if let Some(key) = self.cached(server_name, key_id) {
            return Ok(key);
        }
        let gate = self.fetch_gate(server_name);
        let _fetching = gate.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(key) = self.cached(server_name, key_id) {
            return Ok(key);
        }
        if let Err(e) = self.fetch(server_name, peer_url).await {
            tracing::warn!(%server_name, url = %peer_url, error = %e, "cannot fetch the server's keys");
            return Err(AuthError::UnknownKey);
        }
        self.cached(server_name, key_id).ok_or_else(|| {
            tracing::warn!(%server_name, %key_id, "the server does not publish this key");
            AuthError::UnknownKey
        })
    }

    /// Drop what is cached for `server_name`, so the next [`Keyring::key_for`] fetches.
    pub fn forget(&self, server_name: &str) {
        self.peers().remove(server_name);
    }

    /// The cached, unexpired key `key_id` of `server_name`, without fetching.
    pub fn cached(&self, server_name: &str, key_id: &str) -> Option<String> {
        let now = self.clock.now_ms();
        let peers = self.peers();
        let entry = peers.get(server_name)?;
        if now >= entry.valid_until_ts {
            return None;
        }
        entry.keys.get(key_id).cloned()
    }

    /// Check a `GET /_matrix/key/v2/server` body said to be `expected_server_name`'s
    /// and, when it holds, cache its `verify_keys` until its `valid_until_ts`. For
    /// transports that carry key responses by other means than [`Keyring::key_for`].
    pub fn accept_response(&self, expected_server_name: &str, body: &serde_json::Value) -> Result<(), String> {
        let keys = verify_key_response(expected_server_name, body, self.clock.now_ms())?;
        self.peers().insert(expected_server_name.to_owned(), keys);
        Ok(())
    }

    async fn fetch(&self, server_name: &str, peer_url: &str) -> Result<(), String> {
        let url = format!("{}{KEY_PATH}", peer_url.trim_end_matches('/'));
        let mut response = self
            .http
            .get(&url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::http::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(format!("GET {url}: response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("GET {url}: response is not JSON: {e}"))?;
        self.accept_response(server_name, &body)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<String, PeerKeys>> {
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fetch_gate(&self, server_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.fetching.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        gates.entry(server_name.to_owned()).or_default().clone()
    }
}

/// The checks on a key response; the keys it vouches for when they pass.
fn verify_key_response(expected_server_name: &str, body: &serde_json::Value, now_ms: u64) -> Result<PeerKeys, String> {
    let serde_json::Value::Object(map) = body else {
        return Err("the key response is not a JSON object".to_owned());
    };
    let mut object =
        try_from_json_map(map.clone()).map_err(|e| format!("the key response is not canonical JSON: {e}"))?;

    match object.get("server_name") {
        Some(CanonicalJsonValue::String(name)) if name == expected_server_name => {}
        Some(CanonicalJsonValue::String(name)) => {
            return Err(format!("the key response is for '{name}', expected '{expected_server_name}'"));
        }
        _ => return Err("the key response has no server_name".to_owned()),
    }
    let valid_until_ts = match object.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
        _ => return Err("the key response has no integer valid_until_ts".to_owned()),
    };
    if valid_until_ts <= now_ms {
        return Err(format!("the key response expired at {valid_until_ts} (now {now_ms})"));
    }

    let Some(CanonicalJsonValue::Object(verify_keys)) = object.get("verify_keys") else {
        return Err("the key response has no verify_keys object".to_owned());
    };
    let mut keys = BTreeMap::new();
    let mut key_set = PublicKeySet::new();
    for (key_id, entry) in verify_keys {
        let Some(CanonicalJsonValue::String(key_b64)) = as_object(entry).and_then(|e| e.get("key")) else {
            return Err(format!("verify_keys.{key_id} has no key"));
        };
        let key = Base64::parse(key_b64).map_err(|_| format!("verify_keys.{key_id} is not base64"))?;
        if key_id.starts_with("ed25519:") && key.as_bytes().len() != 32 {
            return Err(format!("verify_keys.{key_id} is not a 32-byte ed25519 key"));
        }
        keys.insert(key_id.clone(), key.encode());
        key_set.insert(key_id.clone(), key);
    }
    if keys.is_empty() {
        return Err("the key response lists no verify_keys".to_owned());
    }

    // Only the server's own signatures count (a notary's would need its keys), and
    // each ed25519 one must be by a key the response lists.
    let own_signatures = match object.get("signatures").and_then(as_object).and_then(|s| s.get(expected_server_name)) {
        Some(CanonicalJsonValue::Object(own)) => own.clone(),
        _ => return Err(format!("the key response is not signed by {expected_server_name}")),
    };
    if let Some(stray) = own_signatures.keys().find(|id| id.starts_with("ed25519:") && !keys.contains_key(*id)) {
        return Err(format!("the key response is signed by {stray}, which it does not list"));
    }
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(expected_server_name.to_owned(), CanonicalJsonValue::Object(own_signatures));
    object.insert("signatures".to_owned(), CanonicalJsonValue::Object(signatures));
    let mut key_map = PublicKeyMap::new();
    key_map.insert(expected_server_name.to_owned(), key_set);
    verify_json(&key_map, &object).map_err(|e| format!("the key response's signature does not verify: {e}"))?;

    Ok(PeerKeys { keys, valid_until_ts })
}

fn as_object(value: &CanonicalJsonValue) -> Option<&CanonicalJsonObject> {
    match value {
        CanonicalJsonValue::Object(object) => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ServerKey;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tidings_core::clock::{Clock, ManualClock};

    const START_MS: u64 = 1_700_000_000_000;
    const VALIDITY_MS: u64 = 3_600_000;

    /// What the fake peer answers and how often it was asked.
    struct Peer {
        response: Mutex<serde_json::Value>,
        hits: AtomicUsize,
    }

    async fn serve(peer: Arc<Peer>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            KEY_PATH,
            axum::routing::get(move || {
                let peer = peer.clone();
                async move {
                    peer.hits.fetch_add(1, Ordering::SeqCst);
                    let body = peer.response.lock().expect("lock").clone();
                    axum::Json(body)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/")
    }

    fn keyring(clock: Arc<ManualClock>) -> Keyring {
        let http = reqwest::Client::builder().no_proxy().timeout(FETCH_TIMEOUT).build().expect("client");
        Keyring::with_client(http, clock)
    }

    fn setup(key: &ServerKey, name: &str) -> (Arc<Peer>, Arc<ManualClock>, Keyring) {
        let peer = Arc::new(Peer {
            response: Mutex::new(key.server_keys_response(name, START_MS, VALIDITY_MS)),
            hits: AtomicUsize::new(0),
        });
        let clock = Arc::new(ManualClock::new(START_MS));
        let ring = keyring(clock.clone());
        (peer, clock, ring)
    }

    #[tokio::test]
    async fn fetches_caches_and_refetches_after_expiry_or_forget() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;

        let got = ring.key_for("beta.test", "ed25519:k1", &url).await.expect("fetch");
        assert_eq!(got, key.public_key_base64());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await.as_deref(), Ok(key.public_key_base64()));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1, "served from the cache");
        assert_eq!(ring.cached("beta.test", "ed25519:k1").as_deref(), Some(key.public_key_base64()));

        // Past valid_until_ts the key is fetched again.
        clock.advance(VALIDITY_MS);
        assert_eq!(ring.cached("beta.test", "ed25519:k1"), None);
        *peer.response.lock().expect("lock") = key.server_keys_response("beta.test", clock.now_ms(), VALIDITY_MS);
        assert!(ring.key_for("beta.test", "ed25519:k1", &url).await.is_ok());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2);

        // forget() forces one refetch; a peer with a new key is then believed.
        let new_key = ServerKey::from_seed(&[5u8; 32], "k2".to_owned()).expect("key");
        *peer.response.lock().expect("lock") = new_key.server_keys_response("beta.test", clock.now_ms(), VALIDITY_MS);
        ring.forget("beta.test");
        assert_eq!(ring.key_for("beta.test", "ed25519:k2", &url).await.as_deref(), Ok(new_key.public_key_base64()));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 3);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 4, "an unknown key ID is looked up");
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_fetch() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, _clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        let (a, b, c) = tokio::join!(
            ring.key_for("beta.test", "ed25519:k1", &url),
            ring.key_for("beta.test", "ed25519:k1", &url),
            ring.key_for("beta.test", "ed25519:k1", &url),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_for_another_server_name_is_refused() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, _clock, ring) = setup(&key, "gamma.test");
        let url = serve(peer.clone()).await;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        assert_eq!(ring.cached("beta.test", "ed25519:k1"), None);
        assert_eq!(ring.cached("gamma.test", "ed25519:k1"), None);
    }

    #[tokio::test]
    async fn tampered_expired_or_unreachable_is_refused() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, _clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;

        let mut tampered = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        tampered["valid_until_ts"] = serde_json::json!(START_MS + 10 * VALIDITY_MS);
        *peer.response.lock().expect("lock") = tampered;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));

        // A key swapped in under the signer's ID does not verify either.
        let other = ServerKey::from_seed(&[6u8; 32], "k1".to_owned()).expect("key");
        let mut swapped = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        swapped["verify_keys"]["ed25519:k1"]["key"] = serde_json::json!(other.public_key_base64());
        *peer.response.lock().expect("lock") = swapped;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));

        *peer.response.lock().expect("lock") = key.server_keys_response("beta.test", START_MS - VALIDITY_MS, 1000);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));

        let mut unsigned = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        unsigned.as_object_mut().expect("object").remove("signatures");
        *peer.response.lock().expect("lock") = unsigned;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));

        // Nothing listens here any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &dead).await, Err(AuthError::UnknownKey));

        // The good answer is accepted after all that.
        *peer.response.lock().expect("lock") = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await.as_deref(), Ok(key.public_key_base64()));
    }

    #[test]
    fn signatures_by_unlisted_keys_are_refused() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let extra = ServerKey::from_seed(&[7u8; 32], "k9".to_owned()).expect("key");
        let body = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        assert!(verify_key_response("beta.test", &body, START_MS).is_ok());
        let serde_json::Value::Object(map) = body else { panic!("object") };
        let mut object = try_from_json_map(map).expect("canonical");
        extra.sign_json("beta.test", &mut object).expect("sign");
        let body: serde_json::Value = CanonicalJsonValue::Object(object.clone()).into();
        let err = verify_key_response("beta.test", &body, START_MS).expect_err("stray signer");
        assert!(err.contains("ed25519:k9"), "{err}");
        // A notary's signature alongside is ignored.
        let mut object2 = try_from_json_map(
            key.server_keys_response("beta.test", START_MS, VALIDITY_MS).as_object().expect("object").clone(),
        )
        .expect("canonical");
        extra.sign_json("notary.test", &mut object2).expect("sign");
        let body: serde_json::Value = CanonicalJsonValue::Object(object2).into();
        assert!(verify_key_response("beta.test", &body, START_MS).is_ok());
    }
}
