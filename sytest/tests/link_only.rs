//! Two sites joined ONLY by the line (issue 9, "Done when"): each peer's `url` points
//! at a silent port that counts what reaches it, and each site knows the other's
//! link key from its configuration (`link_key`, copied from `tidings link-key` on the
//! other site) instead of from the key document. Over emulated 2,400-baud lines
//! (240 bytes/s, 1 s latency each way; `tidings_sytest::line`), as in link.rs.
//!
//! Proves: `tidings link-key` prints exactly the key the server publishes; with the
//! keys pinned both ways the link comes up, consent (a watch request and its answer),
//! a presence change and a feed item (`fetch = "peers"`) cross it, and not one byte
//! reaches either peer's HTTP url; a wrong pinned key gets nothing across (every call
//! is refused, nothing is answered on the lines, the watch request never arrives);
//! a malformed `link_key` stops `tidings serve` with a message naming the peer;
//! `tidings link-key` before the first start creates the server's key file once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tidings_sytest::consent::watch;
use tidings_sytest::feeds::{subscribe, synced_titles};
use tidings_sytest::line::Line;
use tidings_sytest::origin::FeedOrigin;
use tidings_sytest::paths::{list_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, Syncer, TestServer, eventually, free_port, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

const PW: &str = "link-only-pw-1";
/// The seed's line.
const RATE: u64 = 240;
const LATENCY: Duration = Duration::from_secs(1);
const BATCH_MS: u64 = 500;
/// The feed origin is polled this often (by alpha only).
const FEED_INTERVAL_MS: u64 = 2_000;
const NAMES: [&str; 2] = ["alpha.test", "beta.test"];

/// A port that accepts connections and never answers, counting what reaches it: the
/// peers' `url`, so any HTTP between the sites would be seen (and would get nothing).
struct Silent {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the silent port");
        let addr = listener.local_addr().expect("the silent port's address");
        let (connections, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, b) = (Arc::clone(&connections), Arc::clone(&bytes));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let b = Arc::clone(&b);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        b.fetch_add(n as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        Silent { addr, connections, bytes, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted and bytes received so far.
    fn seen(&self) -> (u64, u64) {
        (self.connections.load(Ordering::SeqCst), self.bytes.load(Ordering::SeqCst))
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two sites, each dialing the other through its own emulated line, each peer's `url`
/// a [`Silent`] port.
struct Sites {
    servers: Vec<TestServer>,
    /// alpha dials beta through this one.
    ab: Line,
    /// beta dials alpha through this one.
    ba: Line,
    /// What reached the peers' HTTP urls.
    http: Silent,
}

impl Sites {
    /// Bytes answered on the lines: beta → alpha on alpha's line, alpha → beta on beta's.
    fn answered(&self) -> u64 {
        self.ab.bytes_back() + self.ba.bytes_back()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs `tidings link-key --config` of `server`; its one line of output.
async fn link_key_of(server: &TestServer) -> String {
    let config = server.config_path();
    let out =
        server.cli([std::ffi::OsStr::new("link-key"), std::ffi::OsStr::new("--config"), config.as_os_str()]).await;
    assert!(out.status.success(), "tidings link-key failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    text.trim().to_owned()
}

/// Starts alpha and beta, first with no peers: `tidings link-key` gives each one's key
/// (the one it publishes). Then each gets the other as a peer reached only by its line,
/// with `link_key` the other's key (`wrong_key_at_alpha`: alpha pins this one for beta
/// instead), and both restart. `feeds` goes into `[feeds]` of both, `beta_feeds` of beta.
async fn start(wrong_key_at_alpha: Option<String>, feeds: &str, beta_feeds: &str) -> Sites {
    let http = Silent::start().await;
    let link_ports = [free_port(), free_port()];
    let ab = Line::start(loopback(link_ports[1]), RATE, LATENCY).await;
    let ba = Line::start(loopback(link_ports[0]), RATE, LATENCY).await;
    let lines = [ab.addr(), ba.addr()];
    let mut servers = Vec::new();
    for i in 0..2 {
        let extra = if i == 1 { beta_feeds } else { "" };
        let opts = ServerOptions {
            batch_ms: BATCH_MS,
            short_watchdog_ms: 60_000,
            long_watchdog_ms: 3_600_000,
            offline_after_ms: 120_000,
            ..ServerOptions::named(NAMES[i])
        }
        .with_extra_toml(&format!("[link]\nlisten = \"127.0.0.1:{}\"\n\n[feeds]\n{feeds}{extra}", link_ports[i]));
        servers.push(TestServer::start(opts).await);
    }
    let mut keys = Vec::new();
    for server in &servers {
        let printed = link_key_of(server).await;
        let (status, doc) = server.client().get("/_matrix/key/v2/server").await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["tidings.link_key"], json!(printed), "link-key prints the published key");
        keys.push(printed);
    }
    for i in 0..2 {
        let j = 1 - i;
        let pinned = match (&wrong_key_at_alpha, i) {
            (Some(wrong), 0) => wrong.clone(),
            _ => keys[j].clone(),
        };
        let server = &mut servers[i];
        server.stop().await;
        server.options_mut().peers.push(
            Peer::new(NAMES[j], http.url())
                .with_extra_toml(&format!("link = \"{}\"\nlink_key = \"{pinned}\"", lines[i])),
        );
    }
    for server in &mut servers {
        server.restart().await;
    }
    Sites { servers, ab, ba, http }
}

async fn put_status(session: &Session, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": "online", "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {msg:?}");
}

/// Syncs until `user_id`'s status text is `msg`.
async fn until_status(stream: &mut Syncer, user_id: &str, msg: &str, within: Duration) {
    stream
        .until(within, |sync| {
            sync["presence"]["events"]
                .as_array()?
                .iter()
                .any(|e| e["sender"] == json!(user_id) && e["content"]["status_msg"] == json!(msg))
                .then_some(())
        })
        .await;
}

/// Waits until nothing waits for beta at alpha and the lines were quiet for 3 s.
async fn quiet(sites: &Sites, admin_a: &Session) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (sites.ab.bytes() + sites.ba.bytes(), Instant::now());
    loop {
        let queued = admin_a.federation_peer(NAMES[1]).await["queue_len"].as_u64();
        let now = sites.ab.bytes() + sites.ba.bytes();
        if now != last.0 {
            last = (now, Instant::now());
        }
        if queued == Some(0) && last.1.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(Instant::now() < deadline, "the link never fell quiet: {queued:?} queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sites_joined_only_by_the_line_share_consent_presence_and_feeds() {
    let origin = FeedOrigin::start(&["l1"]).await;
    let feeds = format!(
        "min_interval_ms = {FEED_INTERVAL_MS}\nmax_interval_ms = {FEED_INTERVAL_MS}\nallow_private_addresses = true\n"
    );
    let sites = start(None, &feeds, "fetch = \"peers\"\n").await;
    let [alpha, beta] = [&sites.servers[0], &sites.servers[1]];
    let admin_a = alpha.create_admin("admin", PW).await;
    let admin_b = beta.create_admin("admin", PW).await;

    // The link comes up with no key document: the keys came from the configuration.
    for (admin, other) in [(&admin_a, NAMES[1]), (&admin_b, NAMES[0])] {
        eventually(Duration::from_secs(30), || async {
            let p = admin.federation_peer(other).await;
            if p["transport"] == "link" && p["link_state"] == "up" { Ok(()) } else { Err(p) }
        })
        .await;
    }

    // Consent: bob (beta) asks to watch alice (alpha); she allows it.
    let alice = alpha.register("alice", PW).await;
    let bob = beta.register("bob", PW).await;
    watch(&bob, &alice, Duration::from_secs(30)).await;

    // Presence: a change reaches the watcher within batch_ms + 3 s, as on any link
    // (once what the consent set off has crossed: the change is then alone in flight).
    let mut stream = bob.syncer();
    stream.next(0).await;
    quiet(&sites, &admin_a).await;
    let started = Instant::now();
    put_status(&alice, "only the line").await;
    until_status(&mut stream, &alice.user_id, "only the line", Duration::from_secs(20)).await;
    let took = started.elapsed();
    eprintln!("a change over the line alone: {took:?} from the PUT to beta's /sync");
    assert!(took <= Duration::from_millis(BATCH_MS + 3_000), "the change took {took:?}");

    // A feed: beta (fetch = "peers") reads it through alpha, which fetches the origin.
    let reader = beta.register("reader", PW).await;
    let mut items = reader.syncer();
    items.next(0).await;
    let started = Instant::now();
    subscribe(&reader, &origin.feed_url()).await;
    items.until(Duration::from_secs(60), |sync| synced_titles(sync).iter().any(|t| t == "Item l1").then_some(())).await;
    eprintln!("a feed item over the line alone: {:?} from the subscription to beta's /sync", started.elapsed());
    let (_, feeds_b) = admin_b.get("/_tidings/admin/v1/feeds").await;
    assert_eq!(feeds_b["feeds"][0]["source"], json!("peer:alpha.test"), "{feeds_b}");
    assert_eq!(feeds_b["feeds"][0]["fetches"], json!(0), "beta never fetched the origin: {feeds_b}");

    // Everything crossed on the lines, nothing by HTTP.
    assert!(sites.ab.bytes() + sites.ba.bytes() > 0);
    assert_eq!(sites.http.seen(), (0, 0), "connections and bytes that reached a peer's HTTP url");
}

/// The first line of `server`'s log after byte `from` that has every one of `needles`.
fn logged_after(server: &TestServer, from: usize, needles: &[&str]) -> Option<String> {
    let log = server.log();
    log.get(from..)?.lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned)
}

#[tokio::test]
async fn a_wrong_pinned_link_key_gets_nothing_across() {
    // alpha pins a key that is not beta's (another server's: a fresh one).
    let stranger = tidings_federation::link::LinkKey::generate().public_base64();
    let sites = start(Some(stranger), "", "").await;
    let [alpha, beta] = [&sites.servers[0], &sites.servers[1]];
    let alice = alpha.register("alice", PW).await;
    let bob = beta.register("bob", PW).await;
    let from = [alpha.log().len(), beta.log().len()];
    let got = bob.post(&list_path(&bob.user_id), json!({"invite": [alice.user_id]})).await;
    assert_eq!(got, (200, json!({})));

    // Each refuses the other's call: beta cannot open alpha's handshake (made to the
    // wrong key), and alpha finds no pinned key for beta's (which carries the request).
    let refused = ["refused a link connection", "no peer's link key opens this handshake"];
    eventually(Duration::from_secs(60), || async {
        let seen = [logged_after(alpha, from[0], &refused), logged_after(beta, from[1], &refused)];
        if seen.iter().all(Option::is_some) { Ok(()) } else { Err(seen) }
    })
    .await;

    // So nothing was ever answered on either line, the link is not up, the request
    // never arrived, and nothing went by HTTP instead.
    assert_eq!(sites.answered(), 0, "bytes answered on the lines");
    assert!(sites.ab.bytes_forward() > 0 && sites.ba.bytes_forward() > 0, "both sides called");
    let admin_a = alpha.create_admin("admin", PW).await;
    let admin_b = beta.create_admin("admin", PW).await;
    assert_ne!(admin_a.federation_peer(NAMES[1]).await["link_state"], "up");
    assert_ne!(admin_b.federation_peer(NAMES[0]).await["link_state"], "up");
    assert_eq!(alice.requesters().await, Vec::<String>::new(), "the watch request did not cross");
    assert_eq!(sites.http.seen(), (0, 0), "connections and bytes that reached a peer's HTTP url");
}

#[tokio::test]
async fn a_malformed_link_key_stops_serve_naming_the_peer() {
    let opts = ServerOptions::named("alpha.test").with_peer(
        Peer::new("beta.test", "http://127.0.0.1:9")
            .with_extra_toml("link = \"127.0.0.1:9\"\nlink_key = \"not-a-key\""),
    );
    let e = TestServer::try_start(opts).await.expect_err("a malformed link_key must stop start-up");
    assert!(e.status.is_some_and(|s| !s.success()), "a non-zero exit: {e}");
    assert!(e.log.contains("link_key of beta.test"), "the message names the key and the peer: {e}");
}

#[tokio::test]
async fn link_key_creates_the_key_once_as_serve_would() {
    let dir = tempfile::Builder::new().prefix("tidings-link-key-").tempdir().expect("a temporary directory");
    let config = dir.path().join("tidings.toml");
    std::fs::write(&config, "server_name = \"alpha.test\"\ndata_dir = \"data\"\n").expect("write the config");
    let run = || async {
        let out = tokio::process::Command::new(tidings_sytest::tidings_bin())
            .args([std::ffi::OsStr::new("link-key"), std::ffi::OsStr::new("--config"), config.as_os_str()])
            .env_remove("TIDINGS_CONFIG")
            .output()
            .await
            .expect("run tidings link-key");
        assert!(out.status.success(), "tidings link-key: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let first = run().await;
    // The data directory is the config's (relative paths resolve against its file),
    // the key file is the server's, private, and the printed key is its public half.
    let key_file = dir.path().join("data").join("link.key");
    let meta = std::fs::metadata(&key_file).expect("link-key created data/link.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "the key file is private");
    }
    let kept = tidings_federation::link::LinkKey::load_or_create(&dir.path().join("data")).expect("read the key file");
    assert_eq!(kept.public_base64(), first, "the printed key is the file's public half, unpadded base64");
    assert_eq!(run().await, first, "the same key on every call: it is created once");
}
