//! Feeds, black-box: a fake origin on loopback (it counts fetches, serves ETags and
//! 304s, changes content on demand) and real `tidings` processes.
//!
//! Proves: an item arrives in /sync under `tidings.feeds` and through the items
//! endpoint; a new item later arrives exactly once; 304s are counted; two
//! subscribers share one feed polled once per interval; a restart adds no
//! duplicates; unsubscribing stops polling; loopback URLs are refused when
//! `allow_private_addresses = false`; broken feeds are recorded as errors; OPML
//! import and export; an HTML page's `<link rel="alternate">` feed is found;
//! `fetch = "peers"` never contacts the origin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tidings_sytest::feeds::{my_feed, subscribe};
use tidings_sytest::{Method, ServerOptions, Session, TestServer, Value, assert_matrix_error, eventually, json};

const PW: &str = "feeds-pw-1";
/// min_interval_ms of the test servers: one subscriber polls every 4 × this.
const MIN_MS: u64 = 250;

/// The fake origin's state.
#[derive(Default)]
struct Origin {
    /// Guids of the items served, newest first.
    items: Mutex<Vec<String>>,
    /// Bumped when the items change; the ETag.
    version: AtomicUsize,
    /// When each GET of /feed.xml arrived, and whether it was answered 304.
    fetches: Mutex<Vec<(Instant, bool)>>,
    /// GETs of /other.xml.
    other: AtomicUsize,
    /// GETs of anything else (broken feeds).
    broken: AtomicUsize,
}

fn rss(items: &[String]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Origin</title>");
    for guid in items {
        out.push_str(&format!(
            "<item><title>Item {guid}</title><guid>{guid}</guid><link>http://origin.test/{guid}</link>\
             <description>About {guid}</description><pubDate>Tue, 01 Feb 2011 14:48:52 GMT</pubDate></item>"
        ));
    }
    out.push_str("</channel></rss>");
    out
}

async fn feed(State(o): State<Arc<Origin>>, headers: HeaderMap) -> Response {
    let etag = format!("\"v{}\"", o.version.load(Ordering::SeqCst));
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    o.fetches.lock().expect("lock").push((Instant::now(), matches));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let body = rss(&o.items.lock().expect("lock"));
    ([(header::ETAG, etag), (header::CONTENT_TYPE, "application/rss+xml".into())], body).into_response()
}

async fn other(State(o): State<Arc<Origin>>) -> Response {
    o.other.fetch_add(1, Ordering::SeqCst);
    rss(&["o1".to_owned()]).into_response()
}

async fn not_xml(State(o): State<Arc<Origin>>) -> Response {
    o.broken.fetch_add(1, Ordering::SeqCst);
    "this is { not a feed".into_response()
}

async fn too_big(State(o): State<Arc<Origin>>) -> Response {
    o.broken.fetch_add(1, Ordering::SeqCst);
    format!("<rss version=\"2.0\"><channel><title>{}</title></channel></rss>", "x".repeat(20_000)).into_response()
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<html><head><title>Blog</title>\
      <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/feed.xml\"></head><body>hi</body></html>",
    )
        .into_response()
}

async fn failing(State(o): State<Arc<Origin>>) -> Response {
    o.broken.fetch_add(1, Ordering::SeqCst);
    (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response()
}

/// Start the origin on a loopback port; its base URL.
async fn origin(first: &[&str]) -> (Arc<Origin>, String) {
    let o = Arc::new(Origin::default());
    *o.items.lock().expect("lock") = first.iter().map(|s| (*s).to_owned()).collect();
    let app = Router::new()
        .route("/feed.xml", get(feed))
        .route("/other.xml", get(other))
        .route("/notxml", get(not_xml))
        .route("/big.xml", get(too_big))
        .route("/fail.xml", get(failing))
        .route("/page.html", get(page))
        .with_state(Arc::clone(&o));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (o, format!("http://{addr}"))
}

impl Origin {
    fn fetch_count(&self) -> usize {
        self.fetches.lock().expect("lock").len()
    }

    fn not_modified_count(&self) -> usize {
        self.fetches.lock().expect("lock").iter().filter(|(_, nm)| *nm).count()
    }

    fn publish(&self, guid: &str) {
        self.items.lock().expect("lock").insert(0, guid.to_owned());
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

fn options(extra: &str) -> ServerOptions {
    ServerOptions::default().with_extra_toml(&format!(
        "[feeds]\nmin_interval_ms = {MIN_MS}\nmax_interval_ms = 4000\nmax_document_bytes = 4096\n{extra}"
    ))
}

async fn server() -> TestServer {
    TestServer::start(options("allow_private_addresses = true\n")).await
}

async fn items(s: &Session, feed_id: &str, query: &str) -> Value {
    let (status, body) = s.get(&format!("/_tidings/client/v1/feeds/{feed_id}/items{query}")).await;
    assert_eq!(status, 200, "items: {body}");
    body
}

fn titles(items: &Value) -> Vec<String> {
    items["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["title"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The titles of `feed_id`'s items in one sync answer.
fn synced(sync: &Value, feed_id: &str) -> Vec<String> {
    titles(&sync["tidings.feeds"][feed_id])
}

#[tokio::test]
async fn items_arrive_in_sync_and_a_new_one_exactly_once() {
    let (o, base) = origin(&["a1"]).await;
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let mut stream = alice.syncer();
    let initial = stream.next(0).await;
    assert!(initial.get("tidings.feeds").is_none(), "an initial sync carries no feed items: {initial}");

    let feed_id = subscribe(&alice, &format!("{base}/feed.xml")).await;
    assert_eq!(subscribe(&alice, &format!("{base}/feed.xml")).await, feed_id, "subscribing twice is harmless");
    let first = stream.until(Duration::from_secs(10), |s| Some(synced(s, &feed_id)).filter(|t| !t.is_empty())).await;
    assert_eq!(first, vec!["Item a1"]);
    let page = items(&alice, &feed_id, "").await;
    assert_eq!(titles(&page), vec!["Item a1"]);
    let item = &page["items"][0];
    assert_eq!(item["link"], "http://origin.test/a1");
    assert_eq!(item["summary"], "About a1");
    assert_eq!(item["published_ts"], 1_296_571_732_000u64);
    assert!(item.get("author").is_none(), "optional fields are left out: {item}");
    let listed = my_feed(&alice, &feed_id).await;
    assert_eq!((listed["title"].as_str(), listed["source"].as_str()), (Some("Origin"), Some("origin")));
    assert!(listed["last_fetched_ts"].is_u64() && listed.get("error").is_none(), "{listed}");

    // Unchanged: the next poll is answered 304 (and counted on both sides).
    eventually(Duration::from_secs(10), || async { o.not_modified_count() >= 1 }).await;
    let admin = hs.create_admin("root", PW).await;
    let stats = eventually(Duration::from_secs(10), || async {
        let (_, body) = admin.get("/_tidings/admin/v1/feeds").await;
        body["feeds"].as_array().and_then(|f| f.first().cloned()).filter(|f| f["not_modified"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!((stats["subscribers"].as_u64(), stats["source"].as_str()), (Some(1), Some("origin")), "{stats}");

    o.publish("a2");
    let mut seen = Vec::new();
    stream
        .until(Duration::from_secs(10), |s| {
            seen.extend(synced(s, &feed_id));
            seen.contains(&"Item a2".to_owned()).then_some(())
        })
        .await;
    assert_eq!(seen, vec!["Item a2"], "only the new item, once");
    // Barrier: a later poll happened (answered 304); the stream has nothing new.
    let polls = o.fetch_count();
    eventually(Duration::from_secs(10), || async { o.fetch_count() > polls + 1 }).await;
    let after = stream.next(0).await;
    assert!(after.get("tidings.feeds").is_none(), "no item twice: {after}");
    let page = items(&alice, &feed_id, "").await;
    assert_eq!(titles(&page), vec!["Item a1", "Item a2"], "oldest first");
    let next = page["next"].as_str().expect("next token").to_owned();
    assert!(titles(&items(&alice, &feed_id, &format!("?since={next}")).await).is_empty());
    assert_eq!(titles(&items(&alice, &feed_id, "?limit=1").await), vec!["Item a2"], "the newest `limit`");
}

#[tokio::test]
async fn two_subscribers_share_one_feed_polled_once_per_interval() {
    let (o, base) = origin(&["s1"]).await;
    let hs = server().await;
    let (alice, bob) = (hs.register("alice", PW).await, hs.register("bob", PW).await);
    let url = format!("{base}/feed.xml");
    let id = subscribe(&alice, &url).await;
    assert_eq!(subscribe(&bob, &url).await, id, "one feed per URL");
    eventually(Duration::from_secs(20), || async { o.fetch_count() >= 5 }).await;
    let times: Vec<Instant> = o.fetches.lock().expect("lock").iter().map(|(t, _)| *t).collect();
    for pair in times.windows(2).skip(1) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(MIN_MS * 9 / 10),
            "two polls within min_interval_ms: {gap:?} in {times:?}"
        );
    }
    assert_eq!(titles(&items(&bob, &id, "").await), vec!["Item s1"]);
}

#[tokio::test]
async fn a_restart_adds_no_duplicates() {
    let (o, base) = origin(&["r1", "r2"]).await;
    let mut hs = server().await;
    let alice = hs.register("alice", PW).await;
    let id = subscribe(&alice, &format!("{base}/feed.xml")).await;
    let mut stream = alice.syncer();
    stream.next(0).await;
    eventually(Duration::from_secs(10), || async { titles(&items(&alice, &id, "").await).len() == 2 }).await;
    let token = stream.next(0).await["next_batch"].as_str().expect("token").to_owned();
    hs.restart().await;
    // Barrier: the feed was polled again after the restart, with content (no ETag in memory matters).
    let before = o.fetch_count();
    eventually(Duration::from_secs(15), || async { o.fetch_count() > before }).await;
    let after_poll = o.fetch_count();
    eventually(Duration::from_secs(15), || async { o.fetch_count() > after_poll }).await;
    assert_eq!(titles(&items(&alice, &id, "").await), vec!["Item r2", "Item r1"]);
    let sync = alice.sync(Some(&token), 0).await;
    assert!(sync.get("tidings.feeds").is_none(), "nothing new after a restart: {sync}");
}

#[tokio::test]
async fn unsubscribing_stops_polling() {
    let (o, base) = origin(&["u1"]).await;
    let hs = server().await;
    let (alice, bob) = (hs.register("alice", PW).await, hs.register("bob", PW).await);
    let id = subscribe(&alice, &format!("{base}/feed.xml")).await;
    eventually(Duration::from_secs(10), || async { o.fetch_count() >= 1 }).await;
    assert_eq!(alice.delete(&format!("/_tidings/client/v1/feeds/{id}")).await, (200, json!({})));
    assert_matrix_error(&alice.delete(&format!("/_tidings/client/v1/feeds/{id}")).await, 404, "M_NOT_FOUND");
    assert_matrix_error(&alice.get(&format!("/_tidings/client/v1/feeds/{id}/items")).await, 404, "M_NOT_FOUND");
    let at_unsubscribe = o.fetch_count();
    // Barrier: another feed is polled three times, far longer than one interval.
    subscribe(&bob, &format!("{base}/other.xml")).await;
    eventually(Duration::from_secs(20), || async { o.other.load(Ordering::SeqCst) >= 3 }).await;
    assert!(o.fetch_count() <= at_unsubscribe + 1, "an unwatched feed is not polled");
    assert!(my_feed(&alice, &id).await.is_null());
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let (o, base) = origin(&["x"]).await;
    let hs = TestServer::start(options("")).await;
    let alice = hs.register("alice", PW).await;
    let port = base.rsplit(':').next().expect("port");
    for url in [format!("{base}/feed.xml"), format!("http://localhost:{port}/feed.xml"), "http://[::1]/".into()] {
        let answer = alice.post("/_tidings/client/v1/feeds", json!({ "url": url })).await;
        assert_matrix_error(&answer, 400, "M_INVALID_PARAM");
        assert!(answer.1["error"].as_str().unwrap_or("").contains("allow_private_addresses"), "{answer:?}");
    }
    for url in ["ftp://example.org/feed", "not a url", "file:///etc/passwd"] {
        assert_matrix_error(
            &alice.post("/_tidings/client/v1/feeds", json!({ "url": url })).await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_eq!(o.fetch_count(), 0, "the origin was never contacted");
}

#[tokio::test]
async fn broken_feeds_are_recorded_as_errors() {
    let (o, base) = origin(&[]).await;
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let ids = [
        subscribe(&alice, &format!("{base}/notxml")).await,
        subscribe(&alice, &format!("{base}/big.xml")).await,
        subscribe(&alice, &format!("{base}/fail.xml")).await,
        subscribe(&alice, "http://127.0.0.1:9/nothing-listens-here").await,
    ];
    for id in &ids {
        let f = eventually(Duration::from_secs(10), || async {
            Some(my_feed(&alice, id).await).filter(|f| f.get("error").is_some())
        })
        .await;
        assert!(f["last_fetched_ts"].is_null(), "{f}");
    }
    let big = my_feed(&alice, &ids[1]).await;
    assert!(big["error"].as_str().unwrap_or("").contains("max_document_bytes"), "{big}");
    assert!(o.broken.load(Ordering::SeqCst) >= 3);
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.0, 200, "the server still answers");
}

#[tokio::test]
async fn opml_import_and_export() {
    let (_o, base) = origin(&["p1"]).await;
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let doc = format!(
        "<?xml version=\"1.0\"?><opml version=\"2.0\"><body><outline text=\"News\">\
         <outline type=\"rss\" text=\"Origin\" xmlUrl=\"{base}/feed.xml\"/>\
         <outline type=\"rss\" text=\"Bad\" xmlUrl=\"gopher://old.example/\"/></outline></body></opml>"
    );
    let auth = format!("Bearer {}", alice.access_token);
    let answer =
        alice.client().raw(Method::POST, "/_tidings/client/v1/feeds/opml", &[("Authorization", &auth)], doc).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["subscribed"], 1, "{body}");
    assert_eq!(body["failed"][0]["url"], "gopher://old.example/", "{body}");
    let export =
        alice.client().raw(Method::GET, "/_tidings/client/v1/feeds/opml", &[("Authorization", &auth)], "").await;
    assert_eq!(export.status, 200);
    assert!(export.text().contains(&format!("xmlUrl=\"{base}/feed.xml\"")), "{}", export.text());
}

#[tokio::test]
async fn peers_mode_never_contacts_the_origin() {
    let (o, base) = origin(&["m1"]).await;
    let hs = TestServer::start(options("allow_private_addresses = true\nfetch = \"peers\"\n")).await;
    let alice = hs.register("alice", PW).await;
    let id = subscribe(&alice, &format!("{base}/feed.xml")).await;
    let f = eventually(Duration::from_secs(10), || async {
        Some(my_feed(&alice, &id).await).filter(|f| f.get("error").is_some())
    })
    .await;
    assert_eq!(f["error"], "no peer mirrors this feed yet");
    assert_eq!(o.fetch_count(), 0, "the origin is never contacted in peers mode");
}

#[tokio::test]
async fn an_html_page_leads_to_its_feed() {
    let (o, base) = origin(&["d1"]).await;
    let hs = server().await;
    let alice = hs.register("alice", PW).await;
    let id = subscribe(&alice, &format!("{base}/page.html")).await;
    let got = eventually(Duration::from_secs(10), || async {
        Some(titles(&items(&alice, &id, "").await)).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(got, vec!["Item d1"]);
    let f = my_feed(&alice, &id).await;
    assert_eq!((f["url"].as_str(), f["title"].as_str()), (Some(format!("{base}/page.html").as_str()), Some("Origin")));
    assert!(f.get("error").is_none(), "{f}");
    // From then on the feed itself is polled (answered 304), not the page.
    eventually(Duration::from_secs(10), || async { o.not_modified_count() >= 1 }).await;
}
