//! A fake feed origin on a loopback port, for feed tests and benchmarks: it serves
//! one RSS document at `/feed.xml` with an ETag and answers 304 to a matching
//! `If-None-Match`, counts every fetch, changes its content on demand, can answer
//! an error status (with `Retry-After` for 429 and 503) and can die.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the origin serves and what it saw.
#[derive(Default)]
struct Inner {
    /// Guids of the items served, newest first.
    items: Mutex<Vec<String>>,
    /// Bumped when the items change; the ETag.
    version: AtomicUsize,
    /// When each GET of /feed.xml arrived, and whether it was answered 304.
    fetches: Mutex<Vec<(Instant, bool)>>,
    /// When each GET answered with the error status arrived.
    failed: Mutex<Vec<Instant>>,
    /// An error status to answer instead of the document (0: none).
    failing: AtomicU16,
    /// The `Retry-After` of that error, seconds (0: 1).
    retry_after_secs: AtomicU64,
    /// Requests for any other path (answered 404).
    other: AtomicUsize,
}

/// A running fake origin.
pub struct FeedOrigin {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// The RSS 2.0 document of `items` (newest first): each item has a guid, a title
/// `Item <guid>`, a link and a description.
pub fn rss(items: &[String]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Origin</title>");
    for guid in items {
        out.push_str(&format!(
            "<item><title>Item {guid}</title><guid>{guid}</guid><link>http://origin.test/{guid}</link>\
             <description>About {guid}: a sentence or two of news, as feeds carry.</description>\
             <pubDate>Tue, 01 Feb 2011 14:48:52 GMT</pubDate></item>"
        ));
    }
    out.push_str("</channel></rss>");
    out
}

async fn feed(State(o): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let failing = o.failing.load(Ordering::SeqCst);
    let etag = format!("\"v{}\"", o.version.load(Ordering::SeqCst));
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    o.fetches.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), matches && failing == 0));
    if failing != 0 {
        o.failed.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
        let status = StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = o.retry_after_secs.load(Ordering::SeqCst).max(1).to_string();
        return (status, [(header::RETRY_AFTER, retry)], "failing on purpose").into_response();
    }
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let body = rss(&o.items.lock().unwrap_or_else(|p| p.into_inner()));
    ([(header::ETAG, etag), (header::CONTENT_TYPE, "application/rss+xml".into())], body).into_response()
}

impl FeedOrigin {
    /// Start serving `first` (guids, newest first) on a free loopback port.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(first: &[&str]) -> Self {
        let inner = Arc::new(Inner::default());
        *inner.items.lock().unwrap_or_else(|p| p.into_inner()) = first.iter().map(|s| (*s).to_owned()).collect();
        let app = Router::new()
            .route("/feed.xml", get(feed))
            .fallback(|State(o): State<Arc<Inner>>| async move {
                o.other.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            })
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake origin");
        let addr = listener.local_addr().expect("the origin's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, task, base: format!("http://{addr}") }
    }

    /// The URL of its feed.
    pub fn feed_url(&self) -> String {
        format!("{}/feed.xml", self.base)
    }

    /// Fetches of the feed so far (304s included).
    pub fn fetch_count(&self) -> usize {
        self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Fetches that arrived after `since`.
    pub fn fetches_since(&self, since: Instant) -> usize {
        self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(t, _)| *t >= since).count()
    }

    /// When each fetch arrived (304s and errors included), in order.
    pub fn fetch_times(&self) -> Vec<Instant> {
        self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(t, _)| *t).collect()
    }

    /// When each fetch answered with [`FeedOrigin::fail_with`]'s status arrived.
    pub fn failed_fetches(&self) -> Vec<Instant> {
        self.inner.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches answered 304.
    pub fn not_modified_count(&self) -> usize {
        self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(_, nm)| *nm).count()
    }

    /// Requests for anything but the feed.
    pub fn other_requests(&self) -> usize {
        self.inner.other.load(Ordering::SeqCst)
    }

    /// Publish a new item (it becomes the newest).
    pub fn publish(&self, guid: &str) {
        self.inner.items.lock().unwrap_or_else(|p| p.into_inner()).insert(0, guid.to_owned());
        self.inner.version.fetch_add(1, Ordering::SeqCst);
    }

    /// The document's size in bytes now.
    pub fn document_len(&self) -> usize {
        rss(&self.inner.items.lock().unwrap_or_else(|p| p.into_inner())).len()
    }

    /// Answer `status` to every fetch from now on (`None`: serve the feed again),
    /// with `Retry-After: 1`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.fail_with_retry_after(status, 1);
    }

    /// Answer `status` with `Retry-After: secs` to every fetch from now on (`None`:
    /// serve the feed again).
    pub fn fail_with_retry_after(&self, status: Option<u16>, secs: u64) {
        self.inner.retry_after_secs.store(secs, Ordering::SeqCst);
        self.inner.failing.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Stop accepting: new connections are refused from now on (a keep-alive
    /// connection already open may still be answered).
    pub fn die(&self) {
        self.task.abort();
    }
}

impl Drop for FeedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
