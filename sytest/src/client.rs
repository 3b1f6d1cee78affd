//! HTTP helpers: a JSON client, raw requests for bad-input tests, logged-in sessions.

use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Timeout of one request unless the call says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client bound to one server's base URL (`http://127.0.0.1:PORT`).
///
/// Cheap to clone. It uses no proxy and no connection pool, so it keeps working across
/// server restarts. Every request times out after 60 s unless stated otherwise.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
}

/// The whole answer to a request made with [`Client::raw`].
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body, unparsed.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Value::String` of the raw text when it is not JSON.
    pub fn json(&self) -> Value {
        parse_body(&self.body)
    }

    /// The first value of header `name` as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    /// A client for the server answering at `base_url` (no trailing slash needed).
    ///
    /// # Panics
    ///
    /// If the HTTP client cannot be built (a broken TLS-less build of reqwest).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self::build(base_url.into(), None)
    }

    /// A client for an `https://` server whose certificate is issued by the CA in
    /// `ca_pem` (PEM), trusted besides the system roots.
    ///
    /// # Panics
    ///
    /// If `ca_pem` is not a PEM certificate or the client cannot be built.
    pub fn with_root_ca(base_url: impl Into<String>, ca_pem: &[u8]) -> Self {
        Self::build(base_url.into(), Some(ca_pem))
    }

    /// The same server through a client that keeps connections open between
    /// requests, as real clients do (the benches); the default opens one per request,
    /// so a test never reuses a connection to a server it killed.
    ///
    /// # Panics
    ///
    /// If the client cannot be built.
    pub fn keep_alive(&self) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("building the reqwest client");
        Client { http, base_url: self.base_url.clone() }
    }

    fn build(base_url: String, ca_pem: Option<&[u8]>) -> Self {
        let mut builder = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(REQUEST_TIMEOUT);
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem).expect("the test CA is a PEM certificate");
            builder = builder.use_rustls_tls().add_root_certificate(ca);
        }
        let http = builder.build().expect("building the reqwest client");
        let base_url = base_url.trim_end_matches('/').to_owned();
        Client { http, base_url }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns the status
    /// and the body as JSON (`Value::String` of the raw text when it is not JSON).
    /// Fails only on a transport error (connection refused, timeout, ...).
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, parse_body(&bytes)))
    }

    /// Like [`Client::try_request`] with the default timeout, but a transport error
    /// fails the test. Never panics on a status or a non-JSON body.
    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let described = format!("{method} {}", self.url(path));
        match self.try_request(method, path, token, body, None).await {
            Ok(answer) => answer,
            Err(e) => panic!("request {described} failed: {}", error_chain(&e)),
        }
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body, without a token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, None, Some(body)).await
    }

    /// `PUT path` with a JSON body, without a token.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, path, None, Some(body)).await
    }

    /// Sends exactly the given headers and body bytes, for malformed-input tests. No
    /// body is sent for an empty `body` on GET or HEAD. A transport error fails the
    /// test.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> RawResponse {
        let described = format!("{method} {}", self.url(path));
        let body = body.into();
        let mut req = self.http.request(method.clone(), self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if !(body.is_empty() && (method == Method::GET || method == Method::HEAD)) {
            req = req.body(body);
        }
        let result = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(RawResponse { status, headers, body })
        }
        .await;
        match result {
            Ok(resp) => resp,
            Err(e) => panic!("raw request {described} failed: {}", error_chain(&e)),
        }
    }

    /// Registers `localpart` with `m.login.dummy` auth and returns its session.
    ///
    /// # Panics
    ///
    /// Unless the server answers 200 with `user_id`, `access_token` and `device_id`.
    pub async fn register(&self, localpart: &str, password: &str) -> Session {
        let body = json!({
            "username": localpart,
            "password": password,
            "auth": {"type": "m.login.dummy"},
        });
        let answer = self.post("/_matrix/client/v3/register", body).await;
        self.session_from(&format!("register {localpart}"), answer)
    }

    /// Logs `user` (a localpart or a full user ID) in with a password and returns a
    /// session on a new device.
    ///
    /// # Panics
    ///
    /// Unless the server answers 200 with `user_id`, `access_token` and `device_id`.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        self.login_inner(user, password, None).await
    }

    /// Like [`Client::login`], on the given device ID (as clients do when they log in
    /// again on a device they already had).
    pub async fn login_device(&self, user: &str, password: &str, device_id: &str) -> Session {
        self.login_inner(user, password, Some(device_id)).await
    }

    async fn login_inner(&self, user: &str, password: &str, device_id: Option<&str>) -> Session {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        if let Some(device_id) = device_id {
            body["device_id"] = json!(device_id);
        }
        let answer = self.post("/_matrix/client/v3/login", body).await;
        self.session_from(&format!("login {user}"), answer)
    }

    /// A session for a token obtained some other way.
    pub fn session(&self, user_id: &str, access_token: &str, device_id: &str) -> Session {
        Session {
            user_id: user_id.to_owned(),
            access_token: access_token.to_owned(),
            device_id: device_id.to_owned(),
            client: self.clone(),
        }
    }

    fn session_from(&self, what: &str, (status, body): (u16, Value)) -> Session {
        assert_eq!(status, 200, "{what} failed at {}: {body}", self.base_url);
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: the answer has no string `{name}`: {body}"))
                .to_owned()
        };
        Session {
            user_id: field("user_id"),
            access_token: field("access_token"),
            device_id: field("device_id"),
            client: self.clone(),
        }
    }
}

/// A logged-in user on one device: an access token and the client to use it with.
#[derive(Clone, Debug)]
pub struct Session {
    /// Full user ID, `@localpart:server_name`.
    pub user_id: String,
    /// The access token sent as `Authorization: Bearer`.
    pub access_token: String,
    /// The device the token belongs to.
    pub device_id: String,
    client: Client,
}

impl Session {
    /// The client this session sends its requests with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A request with this session's token; see [`Client::request`].
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.client.request(method, path, Some(&self.access_token), body).await
    }

    /// `GET path` with this session's token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    /// `PUT path` with a JSON body and this session's token.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `POST path` with a JSON body and this session's token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `DELETE path` with this session's token.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(Method::DELETE, path, None).await
    }

    /// `server_name`'s entry in `GET /_tidings/admin/v1/federation/peers` (this session
    /// must be an admin's). Panics (failing the test) on anything but a 200 listing it.
    pub async fn federation_peer(&self, server_name: &str) -> Value {
        let (status, body) = self.get("/_tidings/admin/v1/federation/peers").await;
        assert_eq!(status, 200, "GET federation/peers: {body}");
        body["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["server_name"] == json!(server_name))
            .cloned()
            .unwrap_or_else(|| panic!("{server_name} is not among the peers: {body}"))
    }

    /// The user IDs of `GET /_tidings/client/v1/presence/requests`: who asks to watch
    /// this user, oldest first. Panics (failing the test) on anything but a 200 with
    /// a `requests` array.
    pub async fn requesters(&self) -> Vec<String> {
        let (status, body) = self.get(crate::paths::REQUESTS).await;
        assert_eq!(status, 200, "GET presence/requests of {}: {body}", self.user_id);
        body["requests"]
            .as_array()
            .unwrap_or_else(|| panic!("no `requests` array: {body}"))
            .iter()
            .filter_map(|r| r["user_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// `GET /_matrix/client/v3/sync` with the given query parameters (values are
    /// percent-encoded here); the request may take up to a `timeout` parameter's
    /// length plus 30 s.
    pub async fn sync_with(&self, params: &[(&str, &str)]) -> (u16, Value) {
        let mut path = "/_matrix/client/v3/sync".to_owned();
        let mut long_poll = Duration::ZERO;
        for (i, (name, value)) in params.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            let _ = write!(path, "{sep}{}={}", encode_component(name), encode_component(value));
            if *name == "timeout" {
                long_poll = Duration::from_millis(value.parse().unwrap_or(0));
            }
        }
        let timeout = REQUEST_TIMEOUT.max(long_poll + Duration::from_secs(30));
        let described = format!("GET {}", self.client.url(&path));
        match self.client.try_request(Method::GET, &path, Some(&self.access_token), None, Some(timeout)).await {
            Ok(answer) => answer,
            Err(e) => panic!("request {described} failed: {}", error_chain(&e)),
        }
    }

    /// A [`Syncer`] for this session, starting with an initial sync.
    pub fn syncer(&self) -> Syncer {
        Syncer { session: self.clone(), since: None }
    }

    /// `/sync` from `since` (none: an initial sync) with a long-poll `timeout_ms`;
    /// returns the body. Read `["next_batch"]` for the next call.
    ///
    /// # Panics
    ///
    /// Unless the server answers 200.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Value {
        let timeout = timeout_ms.to_string();
        let mut params = vec![("timeout", timeout.as_str())];
        if let Some(since) = since {
            params.push(("since", since));
        }
        let (status, body) = self.sync_with(&params).await;
        assert_eq!(status, 200, "/sync for {} failed: {body}", self.user_id);
        body
    }
}

/// Follows a session's `/sync` stream: remembers `next_batch` between calls.
///
/// ```no_run
/// # use std::time::Duration;
/// # use tidings_sytest::Session;
/// # async fn demo(alice: Session) {
/// let mut stream = alice.syncer();
/// let event = stream
///     .until(Duration::from_secs(10), |sync| {
///         sync["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == "@bob:hs1.test").cloned()
///     })
///     .await;
/// # let _ = event;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Syncer {
    session: Session,
    since: Option<String>,
}

impl Syncer {
    /// The `since` token the next call sends (`None` before the first sync).
    pub fn since(&self) -> Option<&str> {
        self.since.as_deref()
    }

    /// Sets the `since` token of the next call (e.g. to resume after a restart).
    pub fn set_since(&mut self, since: Option<String>) {
        self.since = since;
    }

    /// One `/sync` from the remembered token (an initial sync the first time) with a
    /// long-poll `timeout_ms`; remembers its `next_batch` and returns the body.
    ///
    /// # Panics
    ///
    /// Unless the server answers 200 with a string `next_batch`.
    pub async fn next(&mut self, timeout_ms: u64) -> Value {
        let body = self.session.sync(self.since.as_deref(), timeout_ms).await;
        let next = body["next_batch"]
            .as_str()
            .unwrap_or_else(|| panic!("/sync for {} has no string `next_batch`: {body}", self.session.user_id));
        self.since = Some(next.to_owned());
        body
    }

    /// Syncs again and again (long polls, never longer than what is left of
    /// `deadline`) until `check` finds what it wants in one response, and returns it.
    /// The first response checked is the next one, which is an initial sync if this
    /// stream has not synced yet.
    ///
    /// # Panics
    ///
    /// When `deadline` passes first; the message shows the last response.
    pub async fn until<T>(&mut self, deadline: Duration, mut check: impl FnMut(&Value) -> Option<T>) -> T {
        let end = tokio::time::Instant::now() + deadline;
        let mut last = Value::Null;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "/sync for {} did not show what was expected within {deadline:?}; last response: {last}",
                    self.session.user_id
                );
            }
            let timeout_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).min(30_000);
            last = self.next(timeout_ms).await;
            if let Some(found) = check(&last) {
                return found;
            }
        }
    }
}

/// Asserts that `answer` is a Matrix error: the given status and `errcode`, and a
/// string `error`.
#[track_caller]
pub fn assert_matrix_error(answer: &(u16, Value), status: u16, errcode: &str) {
    let (got_status, body) = answer;
    assert_eq!(
        (*got_status, body["errcode"].as_str()),
        (status, Some(errcode)),
        "expected {status} {errcode}, got {got_status} {body}"
    );
    assert!(body["error"].is_string(), "error body without a string `error`: {body}");
}

/// Percent-encodes `s` for use as one path segment or query value: every byte except
/// the unreserved `A-Z a-z 0-9 - . _ ~` is escaped (so `@a:b` becomes `%40a%3Ab`).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `body` as JSON, or `Value::String` of its text when it is not JSON.
fn parse_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// An error with all its sources, `a: b: c`.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_user_ids() {
        assert_eq!(encode_component("@alice:hs1.test"), "%40alice%3Ahs1.test");
        assert_eq!(encode_component("a b/c~"), "a%20b%2Fc~");
    }

    #[test]
    fn non_json_bodies_become_strings() {
        assert_eq!(parse_body(b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(parse_body(b"oops"), Value::String("oops".to_owned()));
        assert_eq!(parse_body(b""), Value::String(String::new()));
    }
}
