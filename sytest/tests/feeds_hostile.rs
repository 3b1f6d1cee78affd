//! Hostile and broken feeds, black-box: a raw TCP origin on loopback serves a
//! dozen ways a feed can be wrong or malicious, and a real `tidings` subscribes to
//! all of them beside one good feed.
//!
//! Proves: each bad feed ends with an error the subscriber can read (and the admin
//! counts), none gives an item, none takes the server's memory (a gzip bomb, an
//! entity-expansion bomb, an endless body, a deeply nested document), the slow ones
//! are cut by `fetch_timeout_ms`, redirects are bounded and may not leave http(s);
//! meanwhile the good feed is read as usual. Also: a 429 with `Retry-After` holds
//! the next fetch back for as long as the origin asked, and the error is visible.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tidings_sytest::feeds::{my_feed, subscribe};
use tidings_sytest::origin::FeedOrigin;
use tidings_sytest::{ServerOptions, Session, TestServer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PW: &str = "hostile-pw-1";
/// The document cap of the test server.
const CAP: usize = 262_144;

/// One bad feed: its path on the hostile origin, and a piece of the error the
/// subscriber must see.
struct Case {
    path: &'static str,
    error: &'static str,
}

const CASES: &[Case] = &[
    Case { path: "/not-a-feed", error: "not a feed document" },
    Case { path: "/html-without-feed", error: "not a feed document" },
    Case { path: "/empty", error: "not a feed document" },
    Case { path: "/declared-huge", error: "max_document_bytes" },
    Case { path: "/endless", error: "max_document_bytes" },
    Case { path: "/gzip-bomb", error: "max_document_bytes" },
    Case { path: "/laughs", error: "declares entities" },
    Case { path: "/nested", error: "nested more than" },
    Case { path: "/bad-utf8", error: "not valid UTF-8" },
    Case { path: "/redirect-loop", error: "more than 5 redirects" },
    Case { path: "/to-file", error: "only http and https" },
    Case { path: "/never-answers", error: "timed out" },
    Case { path: "/trickle", error: "timed out" },
    Case { path: "/not-found", error: "404" },
];

/// The hostile origin: every request is answered by [`answer`] on its own task.
struct Hostile {
    base: String,
    /// Paths requested, and when, in order.
    seen: Mutex<Vec<(Instant, String)>>,
}

async fn hostile() -> Arc<Hostile> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the hostile origin");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let h = Arc::new(Hostile { base, seen: Mutex::new(Vec::new()) });
    let me = Arc::clone(&h);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let me = Arc::clone(&me);
            tokio::spawn(async move {
                let _ = serve(&me, conn).await;
            });
        }
    });
    h
}

/// Read one request head, answer it, close.
async fn serve(h: &Hostile, mut conn: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    h.seen.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), path.clone()));
    answer(&path, &mut conn).await
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

async fn answer(path: &str, conn: &mut TcpStream) -> std::io::Result<()> {
    let xml = ("Content-Type", "application/rss+xml".to_owned());
    let bytes = match path {
        "/not-a-feed" => response("200 OK", &[xml], b"this is { not a feed"),
        "/html-without-feed" => response(
            "200 OK",
            &[("Content-Type", "text/html".to_owned())],
            b"<html><head><title>No feed here</title></head><body>hello</body></html>",
        ),
        "/empty" => response("200 OK", &[xml], b""),
        "/declared-huge" => {
            // Claims 10 MB and sends a little: refused on the header alone.
            let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10000000\r\n\r\n<rss";
            conn.write_all(head.as_bytes()).await?;
            return conn.shutdown().await;
        }
        "/endless" => {
            // No length, chunks of items for ever.
            conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
            let chunk = "<item><title>again</title></item>".repeat(100);
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            loop {
                conn.write_all(framed.as_bytes()).await?;
            }
        }
        "/gzip-bomb" => response("200 OK", &[xml, ("Content-Encoding", "gzip".to_owned())], &gzip_bomb()),
        "/laughs" => response("200 OK", &[xml], laughs().as_bytes()),
        "/nested" => {
            let depth = 30_000;
            let doc = format!(
                "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Deep</title>{}{}</channel></rss>",
                "<x>".repeat(depth),
                "</x>".repeat(depth)
            );
            assert!(doc.len() < CAP, "the nested document stays under the cap");
            response("200 OK", &[xml], doc.as_bytes())
        }
        "/bad-utf8" => {
            let mut doc = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\"><channel><title>".to_vec();
            doc.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            doc.extend_from_slice(b"</title><item><guid>u1</guid><title>\xe2\x28\xa1</title></item></channel></rss>");
            response("200 OK", &[xml], &doc)
        }
        "/redirect-loop" => response("302 Found", &[("Location", "/redirect-loop".to_owned())], b""),
        "/to-file" => response("302 Found", &[("Location", "file:///etc/passwd".to_owned())], b""),
        "/never-answers" => {
            // Holds the connection and says nothing, until the client gives up.
            let mut sink = [0u8; 64];
            while conn.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        "/trickle" => {
            conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n<rss").await?;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                conn.write_all(b" ").await?;
            }
        }
        _ => response("404 Not Found", &[], b"no"),
    };
    conn.write_all(&bytes).await?;
    conn.shutdown().await
}

/// 64 MiB of one repeated item, gzipped (about 100 KB on the wire).
fn gzip_bomb() -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    let _ = enc.write_all(b"<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>");
    for _ in 0..64 {
        let _ = enc.write_all(&block);
    }
    enc.finish().unwrap_or_default()
}

/// The billion-laughs document: ten levels of entities, each ten of the one below.
fn laughs() -> String {
    let mut dtd = String::from("<!DOCTYPE rss [<!ENTITY l0 \"ha\">");
    for i in 1..10 {
        let refs = format!("&l{};", i - 1).repeat(10);
        dtd.push_str(&format!("<!ENTITY l{i} \"{refs}\">"));
    }
    dtd.push(']');
    dtd.push('>');
    format!(
        "<?xml version=\"1.0\"?>{dtd}<rss version=\"2.0\"><channel><title>&l9;</title>\
         <item><guid>b1</guid><title>&l9;</title><description>&l9;</description></item></channel></rss>"
    )
}

/// A test server; `max_interval_ms` also caps what a `Retry-After` can ask.
fn options(max_interval_ms: u64) -> ServerOptions {
    spaced(max_interval_ms, 50)
}

fn spaced(max_interval_ms: u64, host_spacing_ms: u64) -> ServerOptions {
    ServerOptions::default().with_extra_toml(&format!(
        "[feeds]\nmin_interval_ms = 250\nmax_interval_ms = {max_interval_ms}\nmax_document_bytes = {CAP}\n\
         allow_private_addresses = true\nfetch_timeout_ms = 1500\nhost_spacing_ms = {host_spacing_ms}\n"
    ))
}

async fn item_count(s: &Session, feed_id: &str) -> usize {
    let (status, body) = s.get(&format!("/_tidings/client/v1/feeds/{feed_id}/items")).await;
    assert_eq!(status, 200, "items: {body}");
    body["items"].as_array().map_or(0, Vec::len)
}

/// A `kB` field of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_dozen_hostile_feeds_are_recorded_and_cost_nothing_lasting() {
    let bad = hostile().await;
    let good = FeedOrigin::start(&["g1"]).await;
    let hs = TestServer::start(options(4000)).await;
    let pid = hs.pid().expect("the server's pid");
    let before_kib = proc_status_kib(pid, "VmRSS:").expect("VmRSS of the server");
    let alice = hs.register("alice", PW).await;
    let mut ids = Vec::new();
    for case in CASES {
        ids.push(subscribe(&alice, &format!("{}{}", bad.base, case.path)).await);
    }
    let good_id = subscribe(&alice, &good.feed_url()).await;

    for (case, id) in CASES.iter().zip(&ids) {
        eprintln!("waiting for the error of {}", case.path);
        let f = eventually(Duration::from_secs(60), || async {
            Some(my_feed(&alice, id).await).filter(|f| f.get("error").is_some())
        })
        .await;
        let error = f["error"].as_str().unwrap_or_default();
        assert!(error.contains(case.error), "{}: the error names the cause ({:?}): {f}", case.path, case.error);
        assert!(f["last_fetched_ts"].is_null(), "{}: never counted as fetched: {f}", case.path);
        assert_eq!(item_count(&alice, id).await, 0, "{}: no item came of it", case.path);
    }
    // Meanwhile the good feed was read as usual.
    eventually(Duration::from_secs(20), || async { item_count(&alice, &good_id).await == 1 }).await;

    // The redirect loop was followed exactly five times after the first request.
    let loops =
        bad.seen.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(_, p)| p == "/redirect-loop").count();
    assert!(loops >= 6, "the loop was followed: {loops}");
    assert_eq!(loops % 6, 0, "each poll makes one request and five redirects: {loops}");

    // The admin sees the failures counted, and the server still answers.
    let admin = hs.create_admin("root", PW).await;
    let (_, stats) = admin.get("/_tidings/admin/v1/feeds").await;
    let failed = stats["feeds"].as_array().map_or(0, |f| f.iter().filter(|f| f["errors"].as_u64() >= Some(1)).count());
    assert_eq!(failed, CASES.len(), "{stats}");
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.0, 200, "the server still answers");

    // None of it took memory: a 64 MiB bomb or a billion laughs would show here.
    let peak_kib = proc_status_kib(pid, "VmHWM:").expect("VmHWM of the server");
    assert!(
        peak_kib < before_kib + 64 * 1024,
        "the server's peak RSS grew from {before_kib} KiB to {peak_kib} KiB reading hostile feeds"
    );
}

#[tokio::test]
async fn retry_after_holds_the_next_fetch_back() {
    let origin = FeedOrigin::start(&["r1"]).await;
    let hs = TestServer::start(options(20_000)).await;
    let alice = hs.register("alice", PW).await;
    let id = subscribe(&alice, &origin.feed_url()).await;
    eventually(Duration::from_secs(10), || async { item_count(&alice, &id).await == 1 }).await;

    // One subscriber polls every second; the origin now asks for six.
    origin.fail_with_retry_after(Some(429), 6);
    let refused_at = eventually(Duration::from_secs(10), || async { origin.failed_fetches().first().copied() }).await;
    let f = eventually(Duration::from_secs(10), || async {
        Some(my_feed(&alice, &id).await).filter(|f| f.get("error").is_some())
    })
    .await;
    assert!(f["error"].as_str().unwrap_or_default().contains("429"), "the subscriber sees why: {f}");
    origin.fail_with(None);
    origin.publish("r2");
    let next =
        eventually(Duration::from_secs(20), || async { origin.fetch_times().into_iter().find(|t| *t > refused_at) })
            .await;
    let waited = next.duration_since(refused_at);
    assert!(waited >= Duration::from_millis(5_900), "the next fetch waited as asked: {waited:?}");
    assert!(waited <= Duration::from_millis(8_000), "and not much longer (6 s + a tenth of jitter): {waited:?}");
    eventually(Duration::from_secs(10), || async { item_count(&alice, &id).await == 2 }).await;
    let f = my_feed(&alice, &id).await;
    assert!(f.get("error").is_none(), "a good fetch clears the error: {f}");
}

#[tokio::test]
async fn requests_to_one_host_go_one_at_a_time_and_spaced() {
    let origin = hostile().await;
    let hs = TestServer::start(spaced(4000, 700)).await;
    let alice = hs.register("alice", PW).await;
    // Three feeds of one host, all due at once, and one that holds its turn 1.5 s.
    for path in ["/never-answers", "/not-found", "/not-a-feed", "/empty"] {
        subscribe(&alice, &format!("{}{path}", origin.base)).await;
    }
    let seen = eventually(Duration::from_secs(30), || async {
        let seen = origin.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (seen.len() >= 8).then_some(seen)
    })
    .await;
    for pair in seen.windows(2) {
        let ((t0, p0), (t1, p1)) = (&pair[0], &pair[1]);
        let gap = t1.duration_since(*t0);
        let least = if p0 == "/never-answers" { Duration::from_millis(1500 + 650) } else { Duration::from_millis(650) };
        assert!(gap >= least, "{p1} came {gap:?} after {p0}: the host's turn and its spacing were not kept");
    }
}
