//! `feed-bench`: what feed sync costs between sites and at the origin, and how one
//! site spreads its polls.
//!
//! ```text
//! cargo build --release -p tidings
//! cargo run --release -p tidings-sytest --bin feed-bench [-- --skip-polls]
//! ```
//!
//! 1. **Bytes between sites per new item**, against refetching the whole document:
//!    two sites, beta's reader subscribes through alpha; the origin's document has
//!    50 items. One new item is published; the bytes alpha and beta exchange until
//!    beta's reader has it and the wire is quiet (`bytes_sent` + `bytes_received` of
//!    the admin API, HTTP headers included) are compared with the document's size.
//! 2. **Origin fetches per interval** for 1, 3 and 10 sites, each with one reader of
//!    the same feed, every interval fixed at 500 ms (min = max): fetches over 20
//!    intervals once the sites settled, divided by 20.
//! 3. **Documents parsed per second** (`tidings_core::feeds::parse::parse` on the
//!    50-item RSS document, in this process).
//! 4. **Polls per minute over an hour**: one site, 10,000 feeds on a local origin and
//!    1,000 users subscribing to 10 each, with time scaled 100× (`min_interval_ms`
//!    3000, `max_interval_ms` 864000: the defaults / 100), so an hour is 36 s. Polls
//!    the origin sees per virtual minute (0.6 s): mean and busiest; and the server's
//!    peak memory (`VmHWM`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tidings_sytest::origin::{FeedOrigin, rss};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, eventually, json};

const PW: &str = "feed-bench-password";
/// The interval of phase 2.
const FIXED_MS: u64 = 500;

/// A site of the bench. Its feeds all live on one loopback origin standing in for
/// many hosts, so the per-host spacing is off (`host_spacing_ms = 0`).
fn site(name: &str, min_ms: u64, max_ms: u64) -> ServerOptions {
    let mut o = ServerOptions::named(name).with_extra_toml(&format!(
        "[feeds]\nmin_interval_ms = {min_ms}\nmax_interval_ms = {max_ms}\nallow_private_addresses = true\n\
         host_spacing_ms = 0\n"
    ));
    o.rust_log = Some("warn".into());
    o
}

async fn subscribe(s: &Session, url: &str) {
    let (status, body) = s.post("/_tidings/client/v1/feeds", json!({ "url": url })).await;
    assert_eq!(status, 200, "subscribe {url}: {body}");
}

async fn source(s: &Session) -> Value {
    s.get("/_tidings/client/v1/feeds").await.1["feeds"][0]["source"].clone()
}

async fn peer_bytes(admin: &Session, peer: &str) -> u64 {
    let (_, body) = admin.get("/_tidings/admin/v1/federation/peers").await;
    body["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["server_name"] == json!(peer)).cloned())
        .map_or(0, |p| p["bytes_sent"].as_u64().unwrap_or(0) + p["bytes_received"].as_u64().unwrap_or(0))
}

fn items_in(sync: &Value) -> usize {
    sync["tidings.feeds"].as_object().map_or(0, |f| f.values().map(|v| v["items"].as_array().map_or(0, Vec::len)).sum())
}

/// Phase 1.
async fn bytes_per_item() {
    let guids: Vec<String> = (0..50).map(|i| format!("story-{i:03}")).collect();
    let refs: Vec<&str> = guids.iter().map(String::as_str).collect();
    let origin = FeedOrigin::start(&refs).await;
    let sites = TestServer::start_federation(vec![site("alpha.test", 2000, 2000), site("beta.test", 2000, 2000)]).await;
    let ann = sites[0].register("ann", PW).await;
    subscribe(&ann, &origin.feed_url()).await;
    eventually(Duration::from_secs(30), || async { source(&ann).await == json!("origin") }).await;
    let bob = sites[1].register("bob", PW).await;
    let mut stream = bob.syncer();
    stream.next(0).await;
    subscribe(&bob, &origin.feed_url()).await;
    let mut got = 0;
    stream
        .until(Duration::from_secs(30), |s| {
            got += items_in(s);
            (got >= 50).then_some(())
        })
        .await;
    let admin = sites[0].create_admin("root", PW).await;
    let quiet = || async {
        let a = peer_bytes(&admin, "beta.test").await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        (peer_bytes(&admin, "beta.test").await == a).then_some(a)
    };
    let before = eventually(Duration::from_secs(60), quiet).await;
    origin.publish("story-new");
    let doc = origin.document_len();
    stream.until(Duration::from_secs(30), |s| (items_in(s) > 0).then_some(())).await;
    let after = eventually(Duration::from_secs(60), quiet).await;
    let per_item = after - before;
    println!("## 1. Bytes between sites per new item (HTTP transport, headers included)");
    println!("one new item, alpha <-> beta:          {per_item} B");
    println!("refetching the whole document instead: {doc} B (51 items, the body alone, no headers)");
    println!("ratio:                                 {:.1}×", doc as f64 / per_item.max(1) as f64);
}

/// Phase 2.
async fn origin_fetches(n: usize) -> f64 {
    let origin = FeedOrigin::start(&["x1"]).await;
    let opts: Vec<ServerOptions> = (0..n).map(|i| site(&format!("s{i:02}.test"), FIXED_MS, FIXED_MS)).collect();
    let sites = TestServer::start_federation(opts).await;
    let mut readers = Vec::new();
    for (i, hs) in sites.iter().enumerate() {
        let s = hs.register(&format!("r{i}"), PW).await;
        subscribe(&s, &origin.feed_url()).await;
        readers.push(s);
    }
    for s in readers.iter().skip(1) {
        eventually(Duration::from_secs(60), || async { source(s).await == json!("peer:s00.test") }).await;
    }
    tokio::time::sleep(Duration::from_millis(4 * FIXED_MS)).await;
    let start = Instant::now();
    let before = origin.fetch_count();
    tokio::time::sleep(Duration::from_millis(20 * FIXED_MS)).await;
    let fetches = origin.fetch_count() - before;
    fetches as f64 / (start.elapsed().as_millis() as f64 / FIXED_MS as f64)
}

/// Phase 3.
fn parse_rate() -> (f64, usize) {
    let guids: Vec<String> = (0..50).map(|i| format!("story-{i:03}")).collect();
    let doc = rss(&guids);
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        let parsed = tidings_core::feeds::parse::parse(doc.as_bytes()).expect("the bench document parses");
        assert_eq!(parsed.items.len(), 50);
        n += 1;
    }
    (f64::from(n) / start.elapsed().as_secs_f64(), doc.len())
}

/// Phase 4's origin: `/f/{n}.xml`, each a small document, every GET timed.
#[derive(Default)]
struct ManyFeeds {
    hits: Mutex<Vec<Instant>>,
    count: AtomicUsize,
}

async fn many(State(o): State<Arc<ManyFeeds>>, Path(name): Path<String>) -> impl IntoResponse {
    o.hits.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
    o.count.fetch_add(1, Ordering::Relaxed);
    let body = rss(&[format!("{name}-1"), format!("{name}-2")]);
    ([(header::CONTENT_TYPE, "application/rss+xml")], body)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// Phase 4.
async fn polls_over_an_hour() {
    const FEEDS: usize = 10_000;
    const USERS: usize = 1_000;
    const PER_USER: usize = 10;
    const SCALE: u64 = 100;
    let state = Arc::new(ManyFeeds::default());
    let app = Router::new().route("/f/{name}", get(many)).with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut opts = site("big.test", 300_000 / SCALE, 86_400_000 / SCALE);
    opts.extra_toml.push_str("max_subscriptions_per_user = 500\n");
    let hs = TestServer::start(opts).await;
    let pid = hs.pid().unwrap_or(0);
    let setup = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    let sessions: Vec<Session> = {
        let mut v = Vec::new();
        for chunk in (0..USERS).collect::<Vec<_>>().chunks(50) {
            let mut set = tokio::task::JoinSet::new();
            for &u in chunk {
                let c = hs.client();
                set.spawn(async move { c.register(&format!("u{u:04}"), PW).await });
            }
            while let Some(s) = set.join_next().await {
                v.push(s.expect("register"));
            }
        }
        v
    };
    // User u reads feeds u, u + 1000, ..., so every feed has one reader.
    for (u, s) in sessions.into_iter().enumerate() {
        let base = base.clone();
        joins.spawn(async move {
            for k in 0..PER_USER {
                subscribe(&s, &format!("{base}/f/{}.xml", u + k * USERS)).await;
            }
        });
        while joins.len() >= 32 {
            joins.join_next().await;
        }
    }
    while joins.join_next().await.is_some() {}
    let setup_s = setup.elapsed().as_secs_f64();
    // One virtual interval to let the first polls of new feeds pass, then an hour.
    let minute = Duration::from_millis(60_000 / SCALE);
    tokio::time::sleep(minute * 20).await;
    let start = Instant::now();
    let hour = minute * 60;
    tokio::time::sleep(hour).await;
    let hits: Vec<Instant> = state.hits.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut per_minute: HashMap<u64, u64> = HashMap::new();
    for t in hits.iter().filter(|t| **t >= start && **t < start + hour) {
        let m = (t.duration_since(start).as_millis() / minute.as_millis()) as u64;
        *per_minute.entry(m).or_default() += 1;
    }
    let counts: Vec<u64> = (0..60).map(|m| per_minute.get(&m).copied().unwrap_or(0)).collect();
    let total: u64 = counts.iter().sum();
    let mean = total as f64 / 60.0;
    let busiest = counts.iter().copied().max().unwrap_or(0);
    let quietest = counts.iter().copied().min().unwrap_or(0);
    println!("## 4. One site, {FEEDS} feeds, {USERS} users × {PER_USER}: an hour at 1/{SCALE} time");
    println!("setup (register + {} subscriptions): {setup_s:.1} s", USERS * PER_USER);
    println!("polls in the hour:            {total}");
    println!("polls per minute, mean:       {mean:.0}");
    println!("busiest minute:               {busiest} ({:.2}× the mean)", busiest as f64 / mean.max(1.0));
    println!("quietest minute:              {quietest}");
    if let Some(kib) = vm_hwm_kib(pid) {
        println!("server peak memory (VmHWM):   {:.1} MiB", kib as f64 / 1024.0);
    }
}

fn main() -> ExitCode {
    let skip_polls = std::env::args().any(|a| a == "--skip-polls");
    tidings_sytest::bench::run_against_release("feed-bench", || async move {
        bytes_per_item().await;
        println!();
        println!("## 2. Origin fetches per interval ({FIXED_MS} ms), every site with a reader of the same feed");
        for n in [1, 3, 10] {
            let per = origin_fetches(n).await;
            println!("{n:>2} site(s): {per:.2} fetches per interval");
        }
        println!();
        let (rate, len) = parse_rate();
        println!("## 3. Documents parsed per second (50-item RSS, {len} B): {rate:.0}");
        if !skip_polls {
            println!();
            polls_over_an_hour().await;
        }
        ExitCode::SUCCESS
    })
}
