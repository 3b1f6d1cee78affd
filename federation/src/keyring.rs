//! Peers' verify keys, fetched from `GET {peer url}/_matrix/key/v2/server` and kept
//! until their `valid_until_ts`.
//!
//! A response is accepted only when it names the expected `server_name` and is signed
//! by the keys it lists (every ed25519 signature of that server must be by one of its
//! `verify_keys`, and all of them must verify). `old_verify_keys` are not used: a
//! request is signed with a current key.
//!
//! The fetch rule (spec/federation.md, "Key fetching"), so that forged requests cannot
//! make this server hammer a peer or forget its good key:
//!
//! - A verified key set is used until its `valid_until_ts`; nothing a request does
//!   evicts it. A fetched response that fails the checks above (or a fetch that fails)
//!   leaves the cached set in place; a verified one replaces it (a rotated key).
//! - With no valid set cached, a request fetches one, unless a fetch of that peer
//!   failed or was a re-fetch less than [`REFETCH_INTERVAL_MS`] ago.
//! - When a request's key ID is not in the valid cached set, or its signature does
//!   not verify with it, the set is fetched again once before refusing, but at most
//!   once per [`REFETCH_INTERVAL_MS`] per peer, and not when the set was fetched while
//!   this request was already waiting.
//! - One fetch at a time per peer; concurrent askers wait and read the result.

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

/// A peer's keys are fetched again after a refused request (or a failed fetch) at
/// most once in this many milliseconds.
pub const REFETCH_INTERVAL_MS: u64 = 60_000;

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
    /// Unix ms when they were fetched (or accepted).
    fetched_ms: u64,
    /// The peer's static link key ([`crate::link::key::LINK_KEY_FIELD`]), if it publishes one.
    link_key: Option<[u8; 32]>,
}

/// What is known of one peer's keys.
#[derive(Debug, Clone, Default)]
struct PeerEntry {
    /// The last verified key set, kept until it expires or a verified one replaces it.
    keys: Option<PeerKeys>,
    /// No fetch prompted by a refused request (or after a failed fetch) before this.
    next_fetch_ms: u64,
}

/// Verify keys of peers, fetched on demand and cached until they expire.
#[derive(Debug)]
pub struct Keyring {
    http: reqwest::Client,
    clock: SharedClock,
    peers: Mutex<HashMap<String, PeerEntry>>,
    /// One fetch at a time per server; later askers wait and read the cache.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Link keys pinned by the configuration (`link_key`): they replace the key
    /// document's for those peers, which is then never fetched for the link.
    pinned_link_keys: HashMap<String, [u8; 32]>,
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
        Self {
            http,
            clock,
            peers: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            pinned_link_keys: HashMap::new(),
        }
    }

    /// This keyring, with the link keys of `pins` (server name → key) pinned: for
    /// those peers [`Keyring::cached_link_key`] and [`Keyring::fetch_link_key`] answer
    /// the pinned key, never expire it and never fetch (a site reached only by the line).
    pub fn with_pinned_link_keys(mut self, pins: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        self.pinned_link_keys.extend(pins);
        self
    }

    /// The link key the configuration pinned for `server_name`, if any.
    pub fn pinned_link_key(&self, server_name: &str) -> Option<[u8; 32]> {
        self.pinned_link_keys.get(server_name).copied()
    }

    /// The clock this keyring reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The public key (unpadded base64) `key_id` of `server_name`, from the cache
    /// while it is valid, else fetched from `peer_url` (the peer's configured base
    /// URL, e.g. `http://127.0.0.1:8009`) as the fetch rule allows. Any failure to
    /// get a verified key with that ID is [`AuthError::UnknownKey`]; the reason is
    /// logged.
    pub async fn key_for(&self, server_name: &str, key_id: &str, peer_url: &str) -> Result<String, AuthError> {
        let started = self.clock.now_ms();
        self.key_since(server_name, key_id, peer_url, started).await
    }

    /// Check a request signed by `key_id` of `server_name` with `check`, fetching
    /// the keys as the fetch rule allows: first if none is cached, again once when
    /// the cached key is missing or does not verify. The error is `check`'s, or
    /// [`AuthError::UnknownKey`] when no key with that ID could be had.
    pub async fn verify_with(
        &self,
        server_name: &str,
        key_id: &str,
        peer_url: &str,
        check: impl Fn(&str) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        let started = self.clock.now_ms();
        let first = match self.key_since(server_name, key_id, peer_url, started).await {
            Ok(key) => check(&key),
            Err(e) => Err(e),
        };
        let Err(first_error) = first else { return Ok(()) };
        if !self.refetch(server_name, peer_url, started).await {
            return Err(first_error);
        }
        match self.cached(server_name, key_id) {
            Some(key) => check(&key),
            None => Err(AuthError::UnknownKey),
        }
    }

    /// The key from the cache, or fetched when nothing valid is cached and the rule
    /// allows a first fetch.
    async fn key_since(
        &self,
        server_name: &str,
        key_id: &str,
        peer_url: &str,
        started: u64,
    ) -> Result<String, AuthError> {
        if let Some(key) = self.cached(server_name, key_id) {
            return Ok(key);
        }
        let gate = self.fetch_gate(server_name);
        let _fetching = gate.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(key) = self.cached(server_name, key_id) {
            return Ok(key);
        }
        let now = self.clock.now_ms();
        let (valid_set, fetched_since, may_fetch) = {
            let peers = self.peers();
            let entry = peers.get(server_name);
            let keys = entry.and_then(|e| e.keys.as_ref()).filter(|k| now < k.valid_until_ts);
            (
                keys.is_some(),
                keys.is_some_and(|k| k.fetched_ms >= started),
                entry.is_none_or(|e| now >= e.next_fetch_ms),
            )
        };
        // A valid set without this key ID is the re-fetch's business (rate-limited).
        if valid_set || fetched_since || !may_fetch {
            if !may_fetch && !valid_set {
                tracing::debug!(%server_name, "no valid keys cached and a fetch was made recently; refusing");
            }
            return Err(AuthError::UnknownKey);
        }
        self.fetch_locked(server_name, peer_url, false).await;
        self.cached(server_name, key_id).ok_or_else(|| {
            tracing::warn!(%server_name, %key_id, "the server does not publish this key");
            AuthError::UnknownKey
        })
    }

    /// After a request from `server_name` that started at `started` failed to verify:
    /// fetch its keys again if the rule allows (at most once per
    /// [`REFETCH_INTERVAL_MS`], and not if they were fetched since `started`).
    /// Whether there is a newly fetched set to try.
    async fn refetch(&self, server_name: &str, peer_url: &str, started: u64) -> bool {
        let gate = self.fetch_gate(server_name);
        let _fetching = gate.lock().await;
        let now = self.clock.now_ms();
        let (fetched_since, may_fetch) = {
            let peers = self.peers();
            let entry = peers.get(server_name);
            (
                entry.and_then(|e| e.keys.as_ref()).is_some_and(|k| k.fetched_ms >= started),
                entry.is_none_or(|e| now >= e.next_fetch_ms),
            )
        };
        if fetched_since {
            // Fetched by someone else while this request waited: try that set.
            return true;
        }
        if !may_fetch {
            return false;
        }
        self.fetch_locked(server_name, peer_url, true).await
    }

    /// Fetch, with the peer's gate held; a verified answer replaces the cached set.
    /// `refetch`, or a failure, holds further fetches back for the interval.
    async fn fetch_locked(&self, server_name: &str, peer_url: &str, refetch: bool) -> bool {
        let result = self.fetch(server_name, peer_url).await;
        let now = self.clock.now_ms();
        let mut peers = self.peers();
        let entry = peers.entry(server_name.to_owned()).or_default();
        if refetch || result.is_err() {
            entry.next_fetch_ms = now.saturating_add(REFETCH_INTERVAL_MS);
        }
        match result {
            Ok(keys) => {
                entry.keys = Some(keys);
                true
            }
            Err(e) => {
                drop(peers);
                tracing::warn!(%server_name, url = %peer_url, error = %e, "cannot fetch the server's keys; keeping what is cached");
                false
            }
        }
    }

    /// Drop what is cached for `server_name`, so the next [`Keyring::key_for`] may
    /// fetch. Not used on request paths: a request never evicts a good key.
    pub fn forget(&self, server_name: &str) {
        self.peers().remove(server_name);
    }

    /// The cached, unexpired key `key_id` of `server_name`, without fetching.
    pub fn cached(&self, server_name: &str, key_id: &str) -> Option<String> {
        let now = self.clock.now_ms();
        let peers = self.peers();
        let keys = peers.get(server_name)?.keys.as_ref()?;
        if now >= keys.valid_until_ts {
            return None;
        }
        keys.keys.get(key_id).cloned()
    }

    /// Check a `GET /_matrix/key/v2/server` body said to be `expected_server_name`'s
    /// and, when it holds, cache its `verify_keys` until its `valid_until_ts`. For
    /// transports that carry key responses by other means than [`Keyring::key_for`].
    pub fn accept_response(&self, expected_server_name: &str, body: &serde_json::Value) -> Result<(), String> {
        let keys = verify_key_response(expected_server_name, body, self.clock.now_ms())?;
        self.peers().entry(expected_server_name.to_owned()).or_default().keys = Some(keys);
        Ok(())
    }

    async fn fetch(&self, server_name: &str, peer_url: &str) -> Result<PeerKeys, String> {
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
        verify_key_response(server_name, &body, self.clock.now_ms())
    }

    /// The link key `server_name` publishes in its (cached, unexpired) key document,
    /// or the one pinned for it.
    pub fn cached_link_key(&self, server_name: &str) -> Option<[u8; 32]> {
        if let Some(pinned) = self.pinned_link_key(server_name) {
            return Some(pinned);
        }
        let now = self.clock.now_ms();
        let peers = self.peers();
        let keys = peers.get(server_name)?.keys.as_ref()?;
        if now >= keys.valid_until_ts {
            return None;
        }
        keys.link_key
    }

    /// Fetch `server_name`'s key document now, whatever the fetch rule says, and
    /// return its link key. For the link's own dialer and key refresh only, which
    /// back off on their own; never on behalf of a request from outside. A pinned
    /// key is answered without fetching anything.
    pub async fn fetch_link_key(&self, server_name: &str, peer_url: &str) -> Result<[u8; 32], String> {
        if let Some(pinned) = self.pinned_link_key(server_name) {
            return Ok(pinned);
        }
        let gate = self.fetch_gate(server_name);
        let _fetching = gate.lock().await;
        let keys = self.fetch(server_name, peer_url).await?;
        let link_key = keys.link_key;
        self.peers().entry(server_name.to_owned()).or_default().keys = Some(keys);
        link_key.ok_or_else(|| format!("{server_name} publishes no link key"))
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<String, PeerEntry>> {
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

    let link_key = match object.get(crate::link::key::LINK_KEY_FIELD) {
        None => None,
        Some(CanonicalJsonValue::String(b64)) => Some(crate::link::key::parse_public(b64)?),
        Some(_) => return Err(format!("{} is not a string", crate::link::key::LINK_KEY_FIELD)),
    };
    Ok(PeerKeys { keys, valid_until_ts, fetched_ms: now_ms, link_key })
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
    async fn fetches_caches_and_refetches_after_expiry() {
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

        // forget() (not used on request paths) lets the next lookup fetch.
        ring.forget("beta.test");
        assert!(ring.key_for("beta.test", "ed25519:k1", &url).await.is_ok());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 3);
    }

    fn always(result: Result<(), AuthError>) -> impl Fn(&str) -> Result<(), AuthError> {
        move |_key: &str| result
    }

    fn signed_by(expected: &str) -> impl Fn(&str) -> Result<(), AuthError> + use<> {
        let expected = expected.to_owned();
        move |key: &str| if key == expected { Ok(()) } else { Err(AuthError::BadSignature) }
    }

    #[tokio::test]
    async fn forged_requests_neither_evict_nor_amplify() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        let good = || signed_by(key.public_key_base64());
        ring.verify_with("beta.test", "ed25519:k1", &url, good()).await.expect("a good request");
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1);
        clock.advance(1);

        // 200 forged signatures under the real key ID, and 200 naming a key that does not exist.
        for _ in 0..200 {
            assert_eq!(
                ring.verify_with("beta.test", "ed25519:k1", &url, always(Err(AuthError::BadSignature))).await,
                Err(AuthError::BadSignature)
            );
            assert_eq!(
                ring.verify_with("beta.test", "ed25519:nope", &url, always(Ok(()))).await,
                Err(AuthError::UnknownKey)
            );
        }
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2, "one re-fetch for all 400 refusals");
        assert_eq!(ring.cached("beta.test", "ed25519:k1").as_deref(), Some(key.public_key_base64()), "not evicted");
        ring.verify_with("beta.test", "ed25519:k1", &url, good()).await.expect("the real peer still verifies");

        // A minute later one more re-fetch is allowed, and only one.
        clock.advance(REFETCH_INTERVAL_MS);
        for _ in 0..50 {
            let _ = ring.verify_with("beta.test", "ed25519:k1", &url, always(Err(AuthError::BadSignature))).await;
        }
        assert_eq!(peer.hits.load(Ordering::SeqCst), 3);
        ring.verify_with("beta.test", "ed25519:k1", &url, good()).await.expect("still verifies");
    }

    #[tokio::test]
    async fn concurrent_forgeries_share_one_refetch() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        ring.key_for("beta.test", "ed25519:k1", &url).await.expect("fetch");
        clock.advance(1);
        let forged = || ring.verify_with("beta.test", "ed25519:k1", &url, always(Err(AuthError::BadSignature)));
        let results = futures_join_all((0..50).map(|_| forged())).await;
        assert!(results.iter().all(|r| *r == Err(AuthError::BadSignature)));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2);
    }

    async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut set = Vec::new();
        for f in futures {
            set.push(Box::pin(f));
        }
        let mut out = Vec::new();
        // Poll them all together: each waits on the same gate.
        let mut pending: Vec<_> = set.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            for slot in &mut pending {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            out.push(v);
                            *slot = None;
                        }
                        std::task::Poll::Pending => done = false,
                    }
                }
            }
            if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
        out
    }

    #[tokio::test]
    async fn first_contact_by_a_forger_costs_one_fetch() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, _clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        // Nothing cached: the first forgery fetches; the set it got is not fetched
        // again for the same request.
        assert_eq!(
            ring.verify_with("beta.test", "ed25519:k1", &url, always(Err(AuthError::BadSignature))).await,
            Err(AuthError::BadSignature)
        );
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_bad_answer_does_not_replace_a_good_key() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        ring.key_for("beta.test", "ed25519:k1", &url).await.expect("fetch");
        clock.advance(1);
        // The key endpoint now answers with a set whose self-signature is broken.
        let other = ServerKey::from_seed(&[6u8; 32], "k1".to_owned()).expect("key");
        let mut swapped = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        swapped["verify_keys"]["ed25519:k1"]["key"] = serde_json::json!(other.public_key_base64());
        *peer.response.lock().expect("lock") = swapped;
        let forged = signed_by(other.public_key_base64());
        assert_eq!(
            ring.verify_with("beta.test", "ed25519:k1", &url, forged).await,
            Err(AuthError::BadSignature),
            "the forger's key is not believed"
        );
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2);
        assert_eq!(ring.cached("beta.test", "ed25519:k1").as_deref(), Some(key.public_key_base64()));
        ring.verify_with("beta.test", "ed25519:k1", &url, signed_by(key.public_key_base64())).await.expect("good");
    }

    #[tokio::test]
    async fn a_rotated_key_is_learned_by_one_refetch() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        ring.key_for("beta.test", "ed25519:k1", &url).await.expect("fetch");
        clock.advance(1_000);
        // The peer came back with a fresh data directory: a new key and key ID.
        let new_key = ServerKey::from_seed(&[5u8; 32], "k2".to_owned()).expect("key");
        *peer.response.lock().expect("lock") = new_key.server_keys_response("beta.test", clock.now_ms(), VALIDITY_MS);
        ring.verify_with("beta.test", "ed25519:k2", &url, signed_by(new_key.public_key_base64()))
            .await
            .expect("the new key is fetched and believed");
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2);
        assert_eq!(ring.cached("beta.test", "ed25519:k1"), None, "the verified new set replaced the old one");

        // Rotated again within the minute: refused until the interval has passed.
        clock.advance(1_000);
        let third = ServerKey::from_seed(&[8u8; 32], "k3".to_owned()).expect("key");
        *peer.response.lock().expect("lock") = third.server_keys_response("beta.test", clock.now_ms(), VALIDITY_MS);
        let check = || signed_by(third.public_key_base64());
        assert_eq!(ring.verify_with("beta.test", "ed25519:k3", &url, check()).await, Err(AuthError::UnknownKey));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 2);
        clock.advance(REFETCH_INTERVAL_MS);
        ring.verify_with("beta.test", "ed25519:k3", &url, check()).await.expect("after the interval");
        assert_eq!(peer.hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_asked_once_a_minute() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;
        for _ in 0..20 {
            assert_eq!(ring.key_for("beta.test", "ed25519:k1", &dead).await, Err(AuthError::UnknownKey));
        }
        // (No hits are countable on a dead port; the same rule holds on a live one.)
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey), "held back");
        assert_eq!(peer.hits.load(Ordering::SeqCst), 0);
        clock.advance(REFETCH_INTERVAL_MS);
        assert!(ring.key_for("beta.test", "ed25519:k1", &url).await.is_ok());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1);
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
        let (peer, clock, ring) = setup(&key, "beta.test");
        let url = serve(peer.clone()).await;

        let mut tampered = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        tampered["valid_until_ts"] = serde_json::json!(START_MS + 10 * VALIDITY_MS);
        *peer.response.lock().expect("lock") = tampered;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        clock.advance(REFETCH_INTERVAL_MS);

        // A key swapped in under the signer's ID does not verify either.
        let other = ServerKey::from_seed(&[6u8; 32], "k1".to_owned()).expect("key");
        let mut swapped = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        swapped["verify_keys"]["ed25519:k1"]["key"] = serde_json::json!(other.public_key_base64());
        *peer.response.lock().expect("lock") = swapped;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        clock.advance(REFETCH_INTERVAL_MS);

        *peer.response.lock().expect("lock") = key.server_keys_response("beta.test", START_MS - VALIDITY_MS, 1000);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        clock.advance(REFETCH_INTERVAL_MS);

        let mut unsigned = key.server_keys_response("beta.test", START_MS, VALIDITY_MS);
        unsigned.as_object_mut().expect("object").remove("signatures");
        *peer.response.lock().expect("lock") = unsigned;
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &url).await, Err(AuthError::UnknownKey));
        clock.advance(REFETCH_INTERVAL_MS);

        // Nothing listens here any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        assert_eq!(ring.key_for("beta.test", "ed25519:k1", &dead).await, Err(AuthError::UnknownKey));
        clock.advance(REFETCH_INTERVAL_MS);

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

    #[tokio::test]
    async fn a_pinned_link_key_wins_and_is_never_fetched() {
        let key = ServerKey::from_seed(&[4u8; 32], "k1".to_owned()).expect("key");
        let (peer, clock, ring) = setup(&key, "beta.test");
        let published = crate::link::LinkKey::from_secret([5u8; 32]);
        *peer.response.lock().expect("lock") = key.server_keys_response_with(
            "beta.test",
            START_MS,
            VALIDITY_MS,
            &[(crate::link::key::LINK_KEY_FIELD, published.public_base64())],
        );
        let url = serve(peer.clone()).await;
        let pinned = [9u8; 32];
        let ring = ring.with_pinned_link_keys([("beta.test".to_owned(), pinned)]);

        assert_eq!(ring.pinned_link_key("beta.test"), Some(pinned));
        assert_eq!(ring.cached_link_key("beta.test"), Some(pinned));
        assert_eq!(ring.fetch_link_key("beta.test", &url).await, Ok(pinned));
        // Long past any document's validity: still the pin, still no fetch.
        clock.advance(10 * VALIDITY_MS);
        assert_eq!(ring.cached_link_key("beta.test"), Some(pinned));
        assert_eq!(ring.fetch_link_key("beta.test", &url).await, Ok(pinned));
        assert_eq!(peer.hits.load(Ordering::SeqCst), 0, "the key document was never asked for");

        // A peer without a pin is still asked (here: a document for another name, refused).
        assert_eq!(ring.pinned_link_key("gamma.test"), None);
        assert!(ring.fetch_link_key("gamma.test", &url).await.is_err());
        assert_eq!(peer.hits.load(Ordering::SeqCst), 1, "an unpinned peer's document is fetched");
    }
}
