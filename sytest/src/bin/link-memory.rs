//! `link-memory`: the memory one real `tidings` spends per link, with 1,000 links open.
//!
//! ```text
//! cargo build -p tidings -p tidings-sytest --bins
//! TIDINGS_BIN=$PWD/target/debug/tidings target/debug/link-memory [--links 1000]
//! ```
//!
//! One server, `hub.test`, has 1,000 configured peers (`p0000.test` ...), each with
//! `link` set, in `mode = "sessions"` (it calls nobody by itself) with a long
//! `idle_hangup_ms`. This program is all 1,000 peers: it serves their signed key
//! documents (ed25519 signature, `tidings.link_key`) on one loopback port, waits until
//! the hub has learned every link key, and then dials the hub's link listener 1,000
//! times, each time as another peer, with the real Noise KK handshake and the
//! initiator's key-confirmation `Ping`. The hub's resident memory (`VmRSS` from
//! `/proc/<pid>/status`) is read before the links open, with all 1,000 open and idle,
//! and at its peak (sampled every 50 ms) while they are busy:
//!
//! - **busy in**: every peer sends the hub 4 bulk transactions back to back, each a
//!   24 KiB `tidings.feed_items` EDU, brotli-compressed as the link's sender does and
//!   cut into 1 KiB chunks, one chunk per message, waiting for each ack;
//! - **busy out**: every peer asks to watch the hub's user `target` (an invite and a
//!   subscription over its link); `target` accepts all 1,000 and changes presence 3
//!   times, so the hub sends answers and presence on all 1,000 links at once, which
//!   the peers acknowledge.
//!
//! - **busy bulk out**: every peer subscribes to one feed through the hub, which
//!   fetches it once and sends its 50 items to all 1,000 links at once (a bulk
//!   transaction of about 20 KiB, compressed piece by piece as it leaves); the peers
//!   report what they received 100 ms late, so the hub's sends stay in flight.
//!
//! Per link = the difference in RSS over the number of links. Debug build: the hub's
//! own code is larger than in release, but the per-link difference is what the
//! buffers cost.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use tidings_federation::keys::ServerKey;
use tidings_federation::link::cipher::Cipher;
use tidings_federation::link::compress::Encoder;
use tidings_federation::link::frame::{self, Class, Encoding, Frame};
use tidings_federation::link::key::{LINK_KEY_FIELD, parse_public};
use tidings_federation::link::noise::{Initiator, MSG2_LEN};
use tidings_federation::link::{LinkKey, txn};
use tidings_sytest::paths::{answer_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, TestServer, free_port, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;
use tokio::time::Instant;

const PW: &str = "link-memory-pw-1";
const HUB: &str = "hub.test";

fn peer_name(i: usize) -> String {
    format!("p{i:04}.test")
}

fn seed(i: usize, salt: u8) -> [u8; 32] {
    let mut s = [salt; 32];
    s[..8].copy_from_slice(&(i as u64).to_be_bytes());
    s
}

/// The hub's resident memory in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".to_owned())
}

/// Peak RSS while `work` runs, sampled every 50 ms.
async fn peak_while<F: std::future::Future<Output = Result<(), String>>>(pid: u32, work: F) -> Result<u64, String> {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)?));
    let sampler = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                if let Ok(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let result = work.await;
    done.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    result?;
    Ok(peak.load(Ordering::SeqCst).max(rss_kib(pid)?))
}

/// One peer's open link to the hub.
struct Link {
    name: String,
    write: Mutex<(OwnedWriteHalf, u64)>,
    cipher: Arc<Cipher>,
    /// Acks the hub sent us, and transactions from the hub we acknowledged.
    acks: AtomicUsize,
    received: AtomicUsize,
    /// Bulk transactions from the hub, whole.
    bulk: AtomicUsize,
    next_seq: AtomicU64,
}

impl Link {
    async fn send(&self, plain: &[u8]) -> Result<(), String> {
        let mut w = self.write.lock().await;
        let ct = self.cipher.encrypt(w.1, plain)?;
        w.1 += 1;
        let mut out = Vec::new();
        frame::put_message(&mut out, &ct);
        w.0.write_all(&out).await.map_err(|e| format!("{}: write: {e}", self.name))
    }

    /// Send one transaction of `class` with `edus` (JSON), compressed when `brotli`,
    /// cut into chunks of `chunk` bytes, one per message; then wait for its ack.
    async fn transaction(&self, class: Class, edus: &serde_json::Value, chunk: usize) -> Result<(), String> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let acks = self.acks.load(Ordering::SeqCst);
        // A literal txnId: its header does not depend on the class's previous one.
        let mut body = Vec::new();
        txn::encode_header(&format!("link-memory-{seq}"), &mut txn::Previous::default(), &mut body);
        let raw = serde_json::to_vec(edus).map_err(|e| e.to_string())?;
        let mut enc = Encoder::new(class);
        body.extend(enc.compress(&raw).map_err(|e| e.to_string())?);
        body.extend(enc.finish());
        let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let mut plain = Vec::new();
            let last = i + 1 == pieces.len();
            Frame::Data { class, seq, encoding: Encoding::Brotli, last, lazy: false, bytes: piece }.encode(&mut plain);
            self.send(&plain).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acks.load(Ordering::SeqCst) == acks {
            if Instant::now() > deadline {
                return Err(format!("{}: no ack for transaction {seq}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Dial the hub as peer `i`: handshake, key confirmation, and a reader that counts
/// acks and acknowledges what the hub sends.
async fn dial(i: usize, addr: std::net::SocketAddr, hub_key: [u8; 32]) -> Result<Arc<Link>, String> {
    let name = peer_name(i);
    let key = LinkKey::from_secret(seed(i, 7));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("{name}: connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (init, msg1) = Initiator::start(&key, &hub_key)?;
    stream.write_all(&msg1).await.map_err(|e| format!("{name}: {e}"))?;
    let mut msg2 = [0u8; MSG2_LEN];
    stream.read_exact(&mut msg2).await.map_err(|e| format!("{name}: no answer: {e}"))?;
    let cipher = Arc::new(init.finish(&msg2)?.0);
    let (mut read, write) = stream.into_split();
    let link = Arc::new(Link {
        name,
        write: Mutex::new((write, 0)),
        cipher: Arc::clone(&cipher),
        acks: AtomicUsize::new(0),
        received: AtomicUsize::new(0),
        bulk: AtomicUsize::new(0),
        next_seq: AtomicU64::new(0),
    });
    let mut ping = Vec::new();
    Frame::Ping.encode(&mut ping);
    link.send(&ping).await?;
    let reader = Arc::clone(&link);
    tokio::spawn(async move {
        let (mut nonce, mut total) = (0u64, 0u64);
        let mut ct = Vec::new();
        loop {
            let Ok(len) = frame::read_len(&mut read).await else { return };
            ct.resize(len, 0);
            if read.read_exact(&mut ct).await.is_err() {
                return;
            }
            total += (frame::varint_len(len as u64) + len) as u64;
            let Ok(plain) = cipher.decrypt(nonce, &ct) else { return };
            nonce += 1;
            let Ok(frames) = frame::decode_frames(&plain) else { return };
            let mut answer = Vec::new();
            let mut data = false;
            for f in frames {
                match f {
                    Frame::Ack(_) => {
                        reader.acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Frame::Data { seq, last, class, .. } => {
                        data = true;
                        if last {
                            reader.received.fetch_add(1, Ordering::SeqCst);
                            if class == Class::Bulk {
                                reader.bulk.fetch_add(1, Ordering::SeqCst);
                            }
                            Frame::Ack(seq).encode(&mut answer);
                        }
                    }
                    _ => {}
                }
            }
            if data {
                // A slow reader: the hub's window waits, so its sends stay in flight.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Frame::Received(total).encode(&mut answer);
                if reader.send(&answer).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(link)
}

async fn links_up(admin: &Session) -> usize {
    let (_, body) = admin.get("/_tidings/admin/v1/federation/peers").await;
    body["peers"].as_array().map_or(0, |p| p.iter().filter(|p| p["link_state"] == json!("up")).count())
}

async fn run(n: usize) -> Result<(), String> {
    // The peers' key documents.
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis()
            as u64;
    let docs: Arc<Vec<serde_json::Value>> = Arc::new(
        (0..n)
            .map(|i| {
                let server = ServerKey::from_seed(&seed(i, 3), "a1".into())?;
                let link = LinkKey::from_secret(seed(i, 7));
                Ok(server.server_keys_response_with(
                    &peer_name(i),
                    now_ms,
                    86_400_000,
                    &[(LINK_KEY_FIELD, link.public_base64())],
                ))
            })
            .collect::<Result<_, String>>()?,
    );
    let fetched = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/{peer}/_matrix/key/v2/server",
            get(
                |State((docs, fetched)): State<(Arc<Vec<serde_json::Value>>, Arc<AtomicUsize>)>,
                 Path(peer): Path<String>| async move {
                    let i: Option<usize> =
                        peer.strip_prefix('p').and_then(|p| p.strip_suffix(".test")).and_then(|p| p.parse().ok());
                    match i.and_then(|i| docs.get(i)) {
                        Some(doc) => {
                            fetched.fetch_add(1, Ordering::SeqCst);
                            axum::Json(doc.clone()).into_response()
                        }
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                },
            ),
        )
        .with_state((Arc::clone(&docs), Arc::clone(&fetched)));
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let keys_addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let link_port = free_port();
    let mut opts = ServerOptions {
        short_watchdog_ms: 3_600_000,
        long_watchdog_ms: 21_600_000,
        batch_ms: 100,
        ..ServerOptions::named(HUB)
    }
    .with_key("link", "listen", &format!("\"127.0.0.1:{link_port}\""))
    .with_key("link", "mode", "\"sessions\"")
    .with_key("link", "idle_hangup_ms", "3600000")
    .with_key("link", "max_pending_handshakes", "64")
    .with_key("feeds", "allow_private_addresses", "true")
    .with_key("feeds", "min_interval_ms", "3600000")
    .with_key("feeds", "max_interval_ms", "3600000");
    for i in 0..n {
        opts = opts.with_peer(
            Peer::new(peer_name(i), format!("http://{keys_addr}/{}", peer_name(i)))
                .with_extra_toml("link = \"127.0.0.1:9\""),
        );
    }
    let hub = TestServer::start(opts).await;
    let pid = hub.pid().ok_or("the hub has no pid")?;
    let admin = hub.create_admin("admin", PW).await;
    let target = hub.register("target", PW).await;
    let (_, keydoc) = hub.client().get("/_matrix/key/v2/server").await;
    let hub_key = parse_public(keydoc[LINK_KEY_FIELD].as_str().ok_or("the hub publishes no link key")?)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while fetched.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return Err(format!("the hub fetched {} of {n} key documents", fetched.load(Ordering::SeqCst)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(pid)?;

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], link_port));
    let links: Vec<Arc<Link>> = {
        let all =
            tidings_sytest::bench::concurrently(n, 16, move |i| async move { dial(i, addr, hub_key).await }).await;
        all.into_iter().collect::<Result<_, String>>()?
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while links_up(&admin).await < n {
        if Instant::now() > deadline {
            return Err(format!("{} of {n} links up", links_up(&admin).await));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid)?;

    // Busy in: bulk transactions on every link at once.
    let item = |k: usize| {
        json!({"key": format!("item-{k}"), "hash": format!("{:032x}", k * 7919), "title": format!("Item {k}: news of the day"),
            "link": format!("http://origin.test/{k}"), "summary": format!("About {k}: a sentence or two of news, as feeds carry, number {k}."),
            "published_ts": 1_764_590_000_000u64 + k as u64, "updated_ts": 1_764_590_000_000u64 + k as u64})
    };
    let edus = Arc::new(json!([["tidings.feed_items", {"url": "http://origin.test/feed.xml", "upto": 1,
        "items": (0..100).map(item).collect::<Vec<_>>()}]]));
    let busy_links = links.clone();
    let busy_in = peak_while(pid, async move {
        let mut set = tokio::task::JoinSet::new();
        for l in busy_links {
            let edus = Arc::clone(&edus);
            set.spawn(async move {
                for _ in 0..4 {
                    l.transaction(Class::Bulk, &edus, 1024).await?;
                }
                Ok::<_, String>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        Ok(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_in = rss_kib(pid)?;

    // Busy out: the hub sends to every link at once.
    let out_links = links.clone();
    let target_id = target.user_id.clone();
    let hub_ref = &hub;
    let busy_out = peak_while(pid, async move {
        let mut set = tokio::task::JoinSet::new();
        for (i, l) in out_links.iter().enumerate() {
            let (l, target_id) = (Arc::clone(l), target_id.clone());
            set.spawn(async move {
                let watcher = format!("@w:{}", peer_name(i));
                let edus = json!([["tidings.presence_invite", {"watcher": watcher, "target": target_id}],
                    ["tidings.presence_subscribe", {"add": [target_id]}]]);
                l.transaction(Class::Short, &edus, 4096).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while target.requesters().await.len() < n {
            if Instant::now() > deadline {
                return Err(format!("target sees {} of {n} requests", target.requesters().await.len()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 0..n {
            let (status, body) =
                target.post(&answer_path(&format!("@w:{}", peer_name(i))), json!({"allow": true})).await;
            if status != 200 {
                return Err(format!("allow: {status} {body}"));
            }
        }
        for k in 0..3 {
            let (status, body) = target
                .put(&status_path(&target.user_id), json!({"presence": "online", "status_msg": format!("s{k}")}))
                .await;
            if status != 200 {
                return Err(format!("status: {status} {body}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, body) = admin.get("/_tidings/admin/v1/federation/peers").await;
            let waiting: u64 = body["peers"]
                .as_array()
                .map_or(u64::MAX, |p| p.iter().map(|p| p["queue_len"].as_u64().unwrap_or(1)).sum());
            if waiting == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{waiting} EDUs still wait at the hub"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;
    let _ = hub_ref;
    let got: usize = links.iter().map(|l| l.received.load(Ordering::SeqCst)).sum();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_out = rss_kib(pid)?;

    // Busy bulk out: every peer subscribes to a feed through the hub, which fetches it
    // once and sends its 50 items (about 20 KiB of JSON, more than one piece) to every
    // link at once, compressed piece by piece as the peers' slow reports let it go.
    let guids: Vec<String> = (0..50).map(|k| format!("news-{k:03}-{}", k * 7919 % 1000)).collect();
    let guids: Vec<&str> = guids.iter().map(String::as_str).collect();
    let origin = tidings_sytest::origin::FeedOrigin::start(&guids).await;
    let url = origin.feed_url();
    let bulk_links = links.clone();
    let busy_bulk = peak_while(pid, async move {
        let mut set = tokio::task::JoinSet::new();
        for l in &bulk_links {
            let (l, url) = (Arc::clone(l), url.clone());
            set.spawn(async move {
                let edus = json!([["tidings.feed_subscribe", {"feeds": [{"url": url, "watchers": 1}]}]]);
                l.transaction(Class::Bulk, &edus, 4096).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done = bulk_links.iter().filter(|l| l.bulk.load(Ordering::SeqCst) > 0).count();
            if done == bulk_links.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{done} of {} links got the feed's items", bulk_links.len()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_bulk = rss_kib(pid)?;

    let per = |kib: u64, base: u64| (kib.saturating_sub(base)) as f64 / n as f64;
    println!("hub RSS with {n} peers configured, no link open: {before} KiB");
    println!("{n} links open and idle: {idle} KiB, {:.1} KiB per link (aim <= 64)", per(idle, before));
    println!(
        "busy in (4 x 24 KiB bulk per link): peak {busy_in} KiB, {:.1} KiB per link (aim <= 1024); {after_in} KiB after",
        per(busy_in, before)
    );
    println!(
        "busy out (answers + 3 presence changes to every link; {got} transactions acked): peak {busy_out} KiB, \
         {:.1} KiB per link; {after_out} KiB after",
        per(busy_out, before)
    );
    println!(
        "busy bulk out (a 50-item feed to every link, compressed as it leaves): peak {busy_bulk} KiB, \
         {:.1} KiB per link (aim <= 1024); {after_bulk} KiB after",
        per(busy_bulk, before)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = match args.as_slice() {
        [] => 1000,
        [flag, v] if flag == "--links" => match v.parse::<usize>() {
            Ok(n) if (1..=9999).contains(&n) => n,
            _ => {
                eprintln!("link-memory: --links takes 1 to 9999");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: link-memory [--links N]");
            return ExitCode::FAILURE;
        }
    };
    tidings_sytest::bench::run_against_release("link-memory", || async move {
        match run(n).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("link-memory: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
