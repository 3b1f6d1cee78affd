//! The fetcher: one conditional GET of a feed document, with the SSRF guard on every
//! hop, at most [`MAX_REDIRECTS`] redirects, the document cap enforced while the body
//! streams in, timeouts, gzip, and what the origin says about caching and retrying.

use std::time::{Duration, SystemTime};

use reqwest::header::{
    ACCEPT, CACHE_CONTROL, ETAG, EXPIRES, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
    RETRY_AFTER,
};
use url::Url;

use super::guard::{GuardedResolver, check_literal_host, check_scheme};

/// Most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 5;
/// Longest wait for a connection, or for the next bytes of an answer (each also
/// within the whole fetch's `feeds.fetch_timeout_ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What was stored of the last answer, for a conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The last ETag.
    pub etag: Option<String>,
    /// The last Last-Modified.
    pub last_modified: Option<String>,
}

/// A successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 304: nothing changed.
    NotModified {
        /// The origin's freshness (max-age or Expires), ms.
        fresh_ms: Option<u64>,
    },
    /// 200 with a document.
    Document {
        /// The body, at most the cap.
        body: Vec<u8>,
        /// Validators for the next fetch.
        validators: Validators,
        /// The origin's freshness (max-age or Expires), ms.
        fresh_ms: Option<u64>,
    },
}

/// A failed fetch: what to record, and how long the origin asked us to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// Recorded on the feed.
    pub message: String,
    /// From Retry-After on 429 or 503, ms.
    pub retry_after_ms: Option<u64>,
    /// The HTTP status, when the origin answered with an error status.
    pub code: Option<u16>,
}

impl FetchError {
    /// A failure that is not an HTTP error status.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry_after_ms: None, code: None }
    }
}

/// Fetches feed documents; holds one HTTP client.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: u64,
    allow_private: bool,
    timeout: Duration,
}

impl Fetcher {
    /// A fetcher with the document cap, the SSRF policy and the time one whole fetch
    /// may take (redirects and a slow body included), trusting the system roots and
    /// the certificates of `ca_pem` (a PEM bundle), if given.
    pub fn new(max_bytes: u64, allow_private: bool, timeout_ms: u64, ca_pem: Option<&[u8]>) -> crate::Result<Self> {
        let total = Duration::from_millis(timeout_ms);
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| crate::Error::internal(format!("feeds.ca_file: not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(crate::Error::internal("feeds.ca_file: no certificate in the file"));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::new(allow_private))
            .connect_timeout(CONNECT_TIMEOUT.min(total))
            .read_timeout(READ_TIMEOUT.min(total))
            .user_agent(concat!("Tidings/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(crate::Error::internal)?;
        Ok(Self { client, max_bytes, allow_private, timeout: total })
    }

    /// GET `url` conditionally, following redirects, each checked by the guard, all
    /// within the fetch timeout.
    pub async fn fetch(&self, url: &str, validators: &Validators, now_ms: u64) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.timeout, self.fetch_hops(url, validators, now_ms)).await.unwrap_or_else(|_| {
            Err(FetchError::new(format!(
                "timed out: no whole answer within {} ms (feeds.fetch_timeout_ms)",
                self.timeout.as_millis()
            )))
        })
    }

    async fn fetch_hops(&self, url: &str, validators: &Validators, now_ms: u64) -> Result<Fetched, FetchError> {
        let mut url = Url::parse(url).map_err(|e| FetchError::new(format!("bad URL: {e}")))?;
        for _hop in 0..=MAX_REDIRECTS {
            check_scheme(&url).map_err(|e| FetchError::new(e.message().to_owned()))?;
            check_literal_host(&url, self.allow_private).map_err(|e| FetchError::new(e.message().to_owned()))?;
            let mut req = self.client.get(url.clone()).header(
                ACCEPT,
                "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5",
            );
            if let Some(etag) = &validators.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &validators.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
            let mut resp = req.send().await.map_err(|e| FetchError::new(describe(&e)))?;
            let status = resp.status();
            if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchError::new(format!("{status} without a Location")))?;
                url = url.join(location).map_err(|e| FetchError::new(format!("bad redirect Location: {e}")))?;
                continue;
            }
            let fresh_ms = freshness_ms(resp.headers(), now_ms);
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified { fresh_ms });
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                let retry_after_ms = retry_after_ms(resp.headers(), now_ms);
                return Err(FetchError {
                    message: format!("the origin answered {status}"),
                    retry_after_ms,
                    code: Some(status.as_u16()),
                });
            }
            if !status.is_success() {
                return Err(FetchError {
                    code: Some(status.as_u16()),
                    ..FetchError::new(format!("the origin answered {status}"))
                });
            }
            if resp.content_length().is_some_and(|n| n > self.max_bytes) {
                return Err(self.too_large());
            }
            let validators = Validators {
                etag: header(resp.headers(), ETAG.as_str()),
                last_modified: header(resp.headers(), LAST_MODIFIED.as_str()),
            };
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::new(describe(&e)))? {
                if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                    return Err(self.too_large());
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched::Document { body, validators, fresh_ms });
        }
        Err(FetchError::new(format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn too_large(&self) -> FetchError {
        FetchError::new(format!("the document is larger than {} bytes (feeds.max_document_bytes)", self.max_bytes))
    }
}

/// A reqwest error with its causes (the guard's refusal is one), in one line.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// How long the answer stays fresh: Cache-Control max-age, else Expires.
pub fn freshness_ms(headers: &HeaderMap, now_ms: u64) -> Option<u64> {
    if let Some(cc) = headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()) {
        for part in cc.split(',') {
            if let Some(v) = part.trim().strip_prefix("max-age=")
                && let Ok(secs) = v.trim_matches('"').parse::<u64>()
            {
                return Some(secs.saturating_mul(1000));
            }
        }
    }
    let expires = headers.get(EXPIRES).and_then(|v| v.to_str().ok())?;
    until_ms(expires, now_ms)
}

/// Retry-After in seconds or as an HTTP date.
pub fn retry_after_ms(headers: &HeaderMap, now_ms: u64) -> Option<u64> {
    let v = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok())?.trim();
    match v.parse::<u64>() {
        Ok(secs) => Some(secs.saturating_mul(1000)),
        Err(_) => until_ms(v, now_ms),
    }
}

fn until_ms(http_date: &str, now_ms: u64) -> Option<u64> {
    let at = httpdate::parse_http_date(http_date).ok()?;
    let at_ms = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn freshness_from_max_age_then_expires() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=600"));
        assert_eq!(freshness_ms(&h, 0), Some(600_000));
        let mut h = HeaderMap::new();
        h.insert(EXPIRES, HeaderValue::from_static("Thu, 01 Jan 1970 00:10:00 GMT"));
        assert_eq!(freshness_ms(&h, 60_000), Some(540_000));
        assert_eq!(freshness_ms(&HeaderMap::new(), 0), None);
    }

    #[test]
    fn retry_after_in_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after_ms(&h, 0), Some(120_000));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:01:00 GMT"));
        assert_eq!(retry_after_ms(&h, 30_000), Some(30_000));
    }
}
