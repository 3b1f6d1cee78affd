//! The HTTP transport: `PUT /_matrix/federation/v1/send/{txnId}` to the peer's
//! configured `url`, signed with X-Matrix (`destination` is the peer's server name,
//! never the URL's host). Bytes are counted as the request and answer lines, headers
//! and bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tidings_core::outbound::StoredTxn;

use crate::config::{FederationConfig, PeerConfig};
use crate::keys::ServerKey;
use crate::peer::http_size;
use crate::transport::{BoxFuture, Delivery, Traffic, Transport};
use crate::xmatrix;

/// How long one delivery may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Matrix federation over HTTP(S).
#[derive(Debug)]
pub struct HttpTransport {
    http: reqwest::Client,
    key: Arc<ServerKey>,
    server_name: String,
}

impl HttpTransport {
    /// A transport signing as `server_name` with `key`, over `http`.
    pub fn new(http: reqwest::Client, key: Arc<ServerKey>, server_name: &str) -> Self {
        Self { http, key, server_name: server_name.to_owned() }
    }

    /// The HTTP client to use for federation (transactions and key fetches alike): no
    /// proxy, bounded time, no redirects (a peer's `url` is where its API answers; a
    /// redirect could move a signed request to clear text), and TLS with rustls
    /// verifying `https://` peers against the system roots plus the certificates of
    /// `federation.ca_file`.
    pub fn client(config: &FederationConfig) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT);
        for cert in extra_roots(config)? {
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| format!("cannot build the federation HTTP client: {}", error_chain(&e)))
    }

    /// The signed request for `txn`: its URL and `Authorization` header.
    fn sign(&self, peer: &PeerConfig, txn: &StoredTxn) -> Result<(String, String, String), String> {
        let path = format!("/_matrix/federation/v1/send/{}", txn.txn_id);
        let body: Value = serde_json::from_str(&txn.body).map_err(|e| format!("stored body unreadable: {e}"))?;
        let auth = xmatrix::try_authorization_header(
            &self.key,
            &self.server_name,
            &peer.server_name,
            "PUT",
            &path,
            Some(&body),
        )
        .map_err(|e| format!("cannot sign: {e}"))?;
        let url = format!("{}{path}", peer.url.trim_end_matches('/'));
        Ok((path, url, auth))
    }

    /// The bytes the request carrying `txn` puts on the wire: request line, headers
    /// (as reqwest writes them) and body.
    pub fn request_size(&self, peer: &PeerConfig, txn: &StoredTxn) -> Result<u64, String> {
        let (path, url, auth) = self.sign(peer, txn)?;
        Ok(request_size(&path, &url, &auth, txn.body.len()))
    }

    async fn put(&self, peer: &PeerConfig, txn: &StoredTxn, traffic: &mut Traffic) -> Result<(), String> {
        let (path, url, auth) = self.sign(peer, txn)?;
        traffic.bytes_sent += request_size(&path, &url, &auth, txn.body.len());
        let response = self
            .http
            .put(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(txn.body.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let status = response.status();
        let headers: Vec<(String, Vec<u8>)> =
            response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect();
        let answer = response.bytes().await.map_err(|e| format!("answer unreadable: {}", error_chain(&e)))?;
        traffic.bytes_received += http_size(
            &format!("HTTP/1.1 {status}"),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            answer.len(),
        );
        if !status.is_success() {
            return Err(format!("peer answered {status}: {}", String::from_utf8_lossy(&answer)));
        }
        Ok(())
    }
}

/// The certificates of `federation.ca_file` (none when it is not set). Every PEM
/// `CERTIFICATE` block of the file counts; a file with none is an error.
pub fn extra_roots(config: &FederationConfig) -> Result<Vec<reqwest::Certificate>, String> {
    let Some(path) = &config.ca_file else { return Ok(Vec::new()) };
    let pem = std::fs::read(path).map_err(|e| format!("federation.ca_file {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("federation.ca_file {}: {}", path.display(), error_chain(&e)))?;
    if certs.is_empty() {
        return Err(format!("federation.ca_file {}: no PEM CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// An error with its sources, `outer: inner: innermost`: reqwest's own message says
/// only "error sending request"; why (an unknown issuer, an expired certificate, a
/// refused connection) is in the sources.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn request_size(path: &str, url: &str, auth: &str, body_len: usize) -> u64 {
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default();
    http_size(
        &format!("PUT {path} HTTP/1.1"),
        [
            ("host", host.as_bytes()),
            ("authorization", auth.as_bytes()),
            ("content-type", b"application/json".as_slice()),
            ("content-length", body_len.to_string().as_bytes()),
            ("accept", b"*/*".as_slice()),
        ]
        .into_iter(),
        body_len,
    )
}

/// The body of the answer to a transaction.
pub const ANSWER_BODY: &str = r#"{"pdus":{}}"#;

/// The bytes of the answer to a transaction: status line, the headers axum writes,
/// and [`ANSWER_BODY`].
pub fn answer_size() -> u64 {
    let len = ANSWER_BODY.len();
    http_size(
        "HTTP/1.1 200 OK",
        [
            ("content-type", b"application/json".as_slice()),
            ("content-length", len.to_string().as_bytes()),
            ("date", b"Mon, 23 Nov 2026 00:00:00 GMT".as_slice()),
        ]
        .into_iter(),
        len,
    )
}

impl Transport for HttpTransport {
    fn deliver<'a>(&'a self, peer: &'a PeerConfig, txn: &'a StoredTxn, _: bool) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let mut traffic = Traffic::default();
            let started = Instant::now();
            let result = self.put(peer, txn, &mut traffic).await;
            let rtt_ms = (traffic.bytes_received > 0).then(|| started.elapsed().as_millis() as u64);
            Delivery { result, traffic, rtt_ms }
        })
    }
}
