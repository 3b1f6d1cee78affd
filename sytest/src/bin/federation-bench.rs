//! `federation-bench`: bytes on the wire between two Tidings servers over the HTTP
//! federation transport, the baseline a thin link must beat.
//!
//! Run it against the release build:
//!
//! ```text
//! cargo build --release -p tidings
//! cargo run --release -p tidings-sytest --bin federation-bench [-- --idle-seconds N]
//! ```
//!
//! # How bytes are counted
//!
//! Two servers, `alpha.test` and `beta.test`, run on loopback. Between them sit two
//! counting TCP proxies of this process: alpha's peer entry for beta names the proxy in
//! front of beta, and beta's entry for alpha the proxy in front of alpha, so every byte
//! either server sends the other (requests, answers, key fetches) crosses a proxy. A
//! proxy counts the TCP payload in each direction: HTTP request lines, headers
//! (`Authorization: X-Matrix ...` included), bodies and answers, exactly. TCP/IP headers,
//! handshakes and ACKs are not counted. The proxies also frame the HTTP/1.1 messages they
//! carry, to say which transaction carried which EDUs; the totals never depend on that.
//!
//! # Phase 1: bytes per presence change
//!
//! `batch_ms` 500, `short_watchdog_ms` 600000 (no reminder can fall inside the
//! measurement). 50 users on beta, each watched (accepted consent across the servers) by
//! one user on alpha, who keeps alpha interested with
//! `PUT /_tidings/client/v1/presence/poll {"enabled": true}`. After the setup traffic has
//! died down, three measurements: 1 user, then 10, then 50 users PUT a new status
//! (`online` with a new `status_msg`) at once, inside one batch window. Each ends when
//! every watcher on alpha sees the new status and the wire has been quiet for
//! `batch_ms` + 1 s. Reported: all proxy bytes (both directions) per change, and the
//! transactions the servers' admin APIs count (`txns_sent` deltas).
//!
//! # Phase 2: bytes per idle peer-day
//!
//! A fresh pair with `short_watchdog_ms` 1000, `long_watchdog_ms` 10000 and `batch_ms`
//! 170 (about short / 6, the ratio of the defaults 10 s / 60 s). 100 users on beta
//! watched from alpha and 100 on alpha watched from beta; then nothing changes for the
//! measured window (20 s by default). Every transaction in the window should be a status
//! reminder. Reminder transactions less than half a short period apart form one *cycle*;
//! the bytes of a cycle are extrapolated to a day at the default timers, where an idle
//! pair has one cycle per short period (60 s):
//! `bytes_per_cycle × 86400000 / 60000`. That figure is an extrapolation from the
//! bytes on the wire per reminder; the day itself is measured over 24 h of virtual
//! time by `cargo test --release -p tidings-federation --test simulated_day --
//! --nocapture` (two cores and their senders under tokio's paused clock), and the two
//! agree (spec/benchmarks.md).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tidings_sytest::paths::{list_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, TestServer, Value, encode_component, free_port, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The two servers' names (their length shows in user IDs and signatures).
const ALPHA: &str = "alpha.test";
const BETA: &str = "beta.test";
/// Password of every benchmark user.
const PASSWORD: &str = "federation-bench-password";
/// Registrations and consent calls in flight at once during setup.
const SETUP_CONCURRENCY: usize = 16;

/// Phase 1: users on beta whose presence changes, each watched from alpha.
const CHANGE_USERS: usize = 50;
/// Phase 1: how many users change at once in each measurement.
const BATCH_SIZES: [usize; 3] = [1, 10, 50];
/// Phase 1: `[presence] batch_ms`.
const CHANGE_BATCH_MS: u64 = 500;
/// Phase 1: `short_watchdog_ms`, long enough that no reminder is due during the run.
const CHANGE_SHORT_MS: u64 = 600_000;

/// Phase 2: watched users on each side.
const IDLE_USERS: usize = 100;
/// Phase 2: `short_watchdog_ms`.
const IDLE_SHORT_MS: u64 = 1_000;
/// Phase 2: `long_watchdog_ms`.
const IDLE_LONG_MS: u64 = 10_000;
/// Phase 2: `batch_ms` (about short / 6, like the defaults 10000 / 60000).
const IDLE_BATCH_MS: u64 = 170;
/// Phase 2: quiet (nothing but reminders) needed before the window opens.
const IDLE_SETTLE_QUIET: Duration = Duration::from_secs(3);

/// The server's default timers, for the extrapolation.
const DEFAULT_SHORT_MS: u64 = 60_000;
const DEFAULT_LONG_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Presence timers far beyond the run, so nobody goes idle or offline by themselves.
const NO_EXPIRY_MS: u64 = 3_600_000;
/// How long a consent step or a delivery may take.
const STEP_DEADLINE: Duration = Duration::from_secs(30);
/// How long the wire may take to fall quiet.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two checks.
const POLL: Duration = Duration::from_millis(20);

/// EDU types, as they appear on the wire.
const EDU_PRESENCE: &str = "m.presence";
const EDU_REMINDER: &str = "tidings.presence_reminder";
/// The transaction endpoint.
const SEND_PATH: &str = "/_matrix/federation/v1/send/";

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Args {
    idle_seconds: u64,
}

const USAGE: &str = "usage: federation-bench [--idle-seconds N]\n\
    \n  --idle-seconds N  length of the measured idle window, 5..=60 (default 20)\
    \n\nTIDINGS_BIN names the server binary; unset, target/release/tidings is used.";

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { idle_seconds: 20 };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--idle-seconds" => {
                    let raw = it.next().ok_or("--idle-seconds needs a value")?;
                    args.idle_seconds =
                        raw.parse().map_err(|_| format!("--idle-seconds: not a whole number: {raw}"))?;
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if !(5..=60).contains(&args.idle_seconds) {
            return Err("--idle-seconds must be 5..=60".to_owned());
        }
        Ok(args)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("federation-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tidings_sytest::bench::run_against_release("federation-bench", || run(args))
}

// ---------------------------------------------------------------------------
// The counting proxy
// ---------------------------------------------------------------------------

/// One HTTP request and its answer, as a proxy saw them.
#[derive(Debug, Clone)]
struct Exchange {
    /// When the whole request had passed the proxy.
    at: Instant,
    method: String,
    path: String,
    /// Request line and headers, with the blank line.
    request_head: u64,
    /// Request body as framed on the wire.
    request_body: u64,
    /// Length of the `Authorization` header line (name, value, CRLF).
    auth_line: u64,
    /// Answer status line and headers; 0 until answered.
    response_head: u64,
    /// Answer body as framed on the wire.
    response_body: u64,
    status: Option<u16>,
    /// EDU types of a transaction, in order.
    edus: Vec<String>,
    /// Users in the transaction's `m.presence` EDUs.
    pushes: usize,
}

impl Exchange {
    fn bytes(&self) -> u64 {
        self.request_head + self.request_body + self.response_head + self.response_body
    }

    fn is_txn(&self) -> bool {
        self.method == "PUT" && self.path.starts_with(SEND_PATH)
    }

    /// A transaction that carries nothing but a status reminder.
    fn is_reminder_only(&self) -> bool {
        self.is_txn() && self.edus.len() == 1 && self.edus[0] == EDU_REMINDER
    }

    /// `PUT send [m.presence(3), ...] 820+40 B`, for the progress output.
    fn describe(&self) -> String {
        let what = if self.is_txn() {
            // Runs of one type as `type ×N`.
            let mut runs: Vec<(&str, usize)> = Vec::new();
            for t in &self.edus {
                match runs.last_mut() {
                    Some((last, n)) if *last == t.as_str() => *n += 1,
                    _ => runs.push((t, 1)),
                }
            }
            let edus: Vec<String> = runs
                .into_iter()
                .map(|(t, n)| {
                    let t = if t == EDU_PRESENCE { format!("{t}({} users)", self.pushes) } else { t.to_owned() };
                    if n > 1 { format!("{t} ×{n}") } else { t }
                })
                .collect();
            format!("PUT send [{}]", edus.join(", "))
        } else {
            format!("{} {}", self.method, self.path)
        };
        format!(
            "{what}: request {} B (head {} incl. X-Matrix line {}, body {}), answer {} B (head {}, body {}, status {})",
            self.request_head + self.request_body,
            self.request_head,
            self.auth_line,
            self.request_body,
            self.response_head + self.response_body,
            self.response_head,
            self.response_body,
            self.status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
        )
    }
}

/// What one proxy counted.
#[derive(Debug, Default)]
struct ProxyStats {
    /// Bytes toward the proxied server (the other server's requests).
    upstream: AtomicU64,
    /// Bytes from the proxied server (its answers).
    downstream: AtomicU64,
    /// TCP connections made through the proxy.
    connections: AtomicU64,
    /// Bytes the HTTP framing could not account for (the totals still count them).
    unframed: AtomicU64,
    exchanges: Mutex<Vec<Exchange>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A TCP proxy on 127.0.0.1 in front of one server, counting bytes each way.
struct Proxy {
    listen: SocketAddr,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`
    /// (which need not be listening yet).
    async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let listen = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let task = tokio::spawn(accept_loop(listener, target, Arc::clone(&stats)));
        Ok(Proxy { listen, stats, task })
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn snapshot(&self) -> ProxySnapshot {
        ProxySnapshot {
            upstream: self.stats.upstream.load(Ordering::SeqCst),
            downstream: self.stats.downstream.load(Ordering::SeqCst),
            connections: self.stats.connections.load(Ordering::SeqCst),
            unframed: self.stats.unframed.load(Ordering::SeqCst),
            exchanges: lock(&self.stats.exchanges).len(),
        }
    }

    /// Exchanges recorded since `from` (an earlier snapshot), answered or not.
    fn exchanges_since(&self, from: &ProxySnapshot) -> Vec<Exchange> {
        lock(&self.stats.exchanges).get(from.exchanges..).map(<[Exchange]>::to_vec).unwrap_or_default()
    }

    /// Every exchange so far.
    fn all_exchanges(&self) -> Vec<Exchange> {
        lock(&self.stats.exchanges).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The connection tasks live in the accept loop's JoinSet and go with it.
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ProxySnapshot {
    upstream: u64,
    downstream: u64,
    connections: u64,
    unframed: u64,
    exchanges: usize,
}

impl ProxySnapshot {
    fn total(&self) -> u64 {
        self.upstream + self.downstream
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, stats: Arc<ProxyStats>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    connections.spawn(relay(socket, target, Arc::clone(&stats)));
                }
                Err(e) => {
                    eprintln!("federation-bench: proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One proxied connection: copy both ways until either side closes.
async fn relay(client: TcpStream, target: SocketAddr, stats: Arc<ProxyStats>) {
    let Ok(server) = TcpStream::connect(target).await else {
        // Dropping the client's socket tells it the peer is down, as a direct connection would.
        return;
    };
    stats.connections.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let pending: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new(VecDeque::new()));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, Direction::Request, Arc::clone(&stats), Arc::clone(&pending)),
        pump(server_read, client_write, Direction::Response, stats, pending),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to proxied server: requests.
    Request,
    /// Proxied server to client: answers.
    Response,
}

/// Copies `from` to `to`, counting and framing what passes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    stats: Arc<ProxyStats>,
    pending: Arc<Mutex<VecDeque<usize>>>,
) {
    let counter = match direction {
        Direction::Request => &stats.upstream,
        Direction::Response => &stats.downstream,
    };
    let mut framer = HttpFramer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
        for message in framer.feed(&buf[..n]) {
            record(&stats, &pending, direction, message);
        }
        let unframed = framer.take_unframed();
        if unframed > 0 {
            stats.unframed.fetch_add(unframed, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown().await;
    stats.unframed.fetch_add(framer.leftover(), Ordering::SeqCst);
}

/// Files a framed message: a request becomes a new exchange, an answer completes the
/// oldest unanswered one of its connection (HTTP/1.1 answers come in order).
fn record(stats: &ProxyStats, pending: &Mutex<VecDeque<usize>>, direction: Direction, message: Message) {
    let mut exchanges = lock(&stats.exchanges);
    match direction {
        Direction::Request => {
            let mut parts = message.start_line.split(' ');
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let mut exchange = Exchange {
                at: Instant::now(),
                method,
                path,
                request_head: message.head_len,
                request_body: message.body_len,
                auth_line: message.auth_line,
                response_head: 0,
                response_body: 0,
                status: None,
                edus: Vec::new(),
                pushes: 0,
            };
            if exchange.is_txn() {
                let body: Value = serde_json::from_slice(&message.body).unwrap_or(Value::Null);
                for edu in body["edus"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let edu_type = edu["edu_type"].as_str().unwrap_or("?").to_owned();
                    if edu_type == EDU_PRESENCE {
                        exchange.pushes += edu["content"]["push"].as_array().map_or(0, Vec::len);
                    }
                    exchange.edus.push(edu_type);
                }
            }
            lock(pending).push_back(exchanges.len());
            exchanges.push(exchange);
        }
        Direction::Response => {
            let status = message.start_line.split(' ').nth(1).and_then(|s| s.parse().ok());
            // 1xx answers precede the real one and do not complete the request.
            let interim = status.is_some_and(|s: u16| (100..200).contains(&s));
            let index = if interim { lock(pending).front().copied() } else { lock(pending).pop_front() };
            if let Some(exchange) = index.and_then(|i| exchanges.get_mut(i)) {
                exchange.response_head += message.head_len;
                exchange.response_body += message.body_len;
                if !interim {
                    exchange.status = status;
                }
            } else {
                stats.unframed.fetch_add(message.head_len + message.body_len, Ordering::SeqCst);
            }
        }
    }
}

/// One HTTP/1.1 message cut out of a byte stream.
#[derive(Debug)]
struct Message {
    start_line: String,
    /// Start line, headers and the blank line.
    head_len: u64,
    /// The body as framed (chunk sizes included).
    body_len: u64,
    /// Length of the `Authorization` header line, CRLF included; 0 when absent.
    auth_line: u64,
    /// The body, de-chunked.
    body: Vec<u8>,
}

/// Cuts HTTP/1.1 messages (Content-Length or chunked bodies) out of one direction of
/// a connection. After something it cannot frame it only counts.
#[derive(Debug, Default)]
struct HttpFramer {
    buf: Vec<u8>,
    broken: bool,
    unframed: u64,
}

enum Framed {
    Complete(Message, usize),
    Incomplete,
    Invalid,
}

impl HttpFramer {
    fn feed(&mut self, data: &[u8]) -> Vec<Message> {
        if self.broken {
            self.unframed += data.len() as u64;
            return Vec::new();
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match frame(&self.buf) {
                Framed::Complete(message, used) => {
                    self.buf.drain(..used);
                    out.push(message);
                }
                Framed::Incomplete => break,
                Framed::Invalid => {
                    self.broken = true;
                    self.unframed += self.buf.len() as u64;
                    self.buf.clear();
                    break;
                }
            }
        }
        out
    }

    fn take_unframed(&mut self) -> u64 {
        std::mem::take(&mut self.unframed)
    }

    /// Bytes of an incomplete message left when the stream ended.
    fn leftover(&self) -> u64 {
        self.buf.len() as u64 + self.unframed
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn frame(buf: &[u8]) -> Framed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 { Framed::Invalid } else { Framed::Incomplete };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else { return Framed::Invalid };
    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut auth_line = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Framed::Invalid };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => content_length = Some(n),
                Err(_) => return Framed::Invalid,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("authorization") {
            auth_line = line.len() + 2;
        }
    }
    let body_start = head_end + 4;
    let (body, end) = if chunked {
        match dechunk(buf, body_start) {
            Ok(Some(found)) => found,
            Ok(None) => return Framed::Incomplete,
            Err(()) => return Framed::Invalid,
        }
    } else {
        let len = content_length.unwrap_or(0);
        if buf.len() < body_start + len {
            return Framed::Incomplete;
        }
        (buf[body_start..body_start + len].to_vec(), body_start + len)
    };
    let message = Message {
        start_line,
        head_len: body_start as u64,
        body_len: (end - body_start) as u64,
        auth_line: auth_line as u64,
        body,
    };
    Framed::Complete(message, end)
}

/// A chunked body starting at `pos`: `Ok(Some((body, end)))` when complete.
fn dechunk(buf: &[u8], mut pos: usize) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|_| ())?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16).map_err(|_| ())?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------
// Two servers behind their proxies
// ---------------------------------------------------------------------------

/// Timers of one phase.
#[derive(Debug, Clone, Copy)]
struct Timers {
    batch_ms: u64,
    short_ms: u64,
    long_ms: u64,
}

/// Federation figures of one server about its one peer, from the admin API.
#[derive(Debug, Clone, Copy, Default)]
struct PeerFigures {
    txns_sent: u64,
    txns_received: u64,
    bytes_sent: u64,
    bytes_received: u64,
    queue_len: u64,
}

impl PeerFigures {
    fn minus(self, before: PeerFigures) -> PeerFigures {
        PeerFigures {
            txns_sent: self.txns_sent.saturating_sub(before.txns_sent),
            txns_received: self.txns_received.saturating_sub(before.txns_received),
            bytes_sent: self.bytes_sent.saturating_sub(before.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(before.bytes_received),
            queue_len: self.queue_len,
        }
    }
}

/// Everything counted at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    /// Proxy in front of alpha: beta's requests, alpha's answers.
    to_alpha: ProxySnapshot,
    /// Proxy in front of beta: alpha's requests, beta's answers.
    to_beta: ProxySnapshot,
    alpha: PeerFigures,
    beta: PeerFigures,
}

impl Snapshot {
    fn wire_bytes(&self) -> u64 {
        self.to_alpha.total() + self.to_beta.total()
    }
}

/// What happened between two snapshots.
#[derive(Debug, Clone)]
struct Delta {
    elapsed: Duration,
    bytes: u64,
    /// Bytes alpha sent (its requests to beta, its answers to beta).
    alpha_sent: u64,
    /// Bytes beta sent.
    beta_sent: u64,
    connections: u64,
    unframed: u64,
    alpha: PeerFigures,
    beta: PeerFigures,
    /// Exchanges alpha started (requests to beta).
    from_alpha: Vec<Exchange>,
    /// Exchanges beta started (requests to alpha).
    from_beta: Vec<Exchange>,
}

impl Delta {
    fn txns_sent(&self) -> u64 {
        self.alpha.txns_sent + self.beta.txns_sent
    }

    fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.from_alpha.iter().chain(self.from_beta.iter())
    }

    /// `alpha's view / beta's view / proxy` byte totals, to check the admin API's own accounting.
    fn admin_check(&self) -> String {
        format!(
            "alpha counts {} B, beta counts {} B, the proxies saw {} B",
            self.alpha.bytes_sent + self.alpha.bytes_received,
            self.beta.bytes_sent + self.beta.bytes_received,
            self.bytes
        )
    }
}

/// Two federating servers, each reached by the other through a counting proxy.
struct Pair {
    alpha: TestServer,
    beta: TestServer,
    to_alpha: Proxy,
    to_beta: Proxy,
    alpha_admin: Session,
    beta_admin: Session,
}

impl Pair {
    async fn start(timers: Timers) -> Result<Pair, String> {
        let (alpha_port, beta_port) = (free_port(), free_port());
        let to_alpha = Proxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, alpha_port)))
            .await
            .map_err(|e| format!("cannot start the proxy in front of alpha: {e}"))?;
        let to_beta = Proxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, beta_port)))
            .await
            .map_err(|e| format!("cannot start the proxy in front of beta: {e}"))?;
        let options = |name: &str, port: u16, peer: &str, peer_url: String| ServerOptions {
            port: Some(port),
            peers: vec![Peer::new(peer, peer_url)],
            batch_ms: timers.batch_ms,
            short_watchdog_ms: timers.short_ms,
            long_watchdog_ms: timers.long_ms,
            idle_after_ms: NO_EXPIRY_MS,
            offline_after_ms: NO_EXPIRY_MS,
            rate_limits: false,
            registration_open: true,
            rust_log: Some("info".to_owned()),
            ..ServerOptions::named(name)
        };
        let (alpha, beta) = tokio::join!(
            TestServer::try_start(options(ALPHA, alpha_port, BETA, to_beta.url())),
            TestServer::try_start(options(BETA, beta_port, ALPHA, to_alpha.url())),
        );
        let (alpha, beta) = (alpha.map_err(|e| e.to_string())?, beta.map_err(|e| e.to_string())?);
        let (alpha_admin, beta_admin) =
            tokio::join!(alpha.create_admin("admin", PASSWORD), beta.create_admin("admin", PASSWORD));
        println!(
            "  alpha {} (reached by beta through {}), beta {} (reached by alpha through {})",
            alpha.base_url(),
            to_alpha.url(),
            beta.base_url(),
            to_beta.url()
        );
        Ok(Pair { alpha, beta, to_alpha, to_beta, alpha_admin, beta_admin })
    }

    async fn snapshot(&self) -> Snapshot {
        let (alpha, beta) = tokio::join!(peer_figures(&self.alpha_admin), peer_figures(&self.beta_admin));
        Snapshot {
            at: Instant::now(),
            to_alpha: self.to_alpha.snapshot(),
            to_beta: self.to_beta.snapshot(),
            alpha,
            beta,
        }
    }

    fn delta(&self, before: &Snapshot, after: &Snapshot) -> Delta {
        let from_alpha: Vec<Exchange> =
            self.to_beta.exchanges_since(&before.to_beta).into_iter().filter(|e| e.at <= after.at).collect();
        let from_beta: Vec<Exchange> =
            self.to_alpha.exchanges_since(&before.to_alpha).into_iter().filter(|e| e.at <= after.at).collect();
        Delta {
            elapsed: after.at - before.at,
            bytes: after.wire_bytes() - before.wire_bytes(),
            alpha_sent: (after.to_beta.upstream - before.to_beta.upstream)
                + (after.to_alpha.downstream - before.to_alpha.downstream),
            beta_sent: (after.to_alpha.upstream - before.to_alpha.upstream)
                + (after.to_beta.downstream - before.to_beta.downstream),
            connections: (after.to_alpha.connections - before.to_alpha.connections)
                + (after.to_beta.connections - before.to_beta.connections),
            unframed: (after.to_alpha.unframed - before.to_alpha.unframed)
                + (after.to_beta.unframed - before.to_beta.unframed),
            alpha: after.alpha.minus(before.alpha),
            beta: after.beta.minus(before.beta),
            from_alpha,
            from_beta,
        }
    }

    /// Waits until no byte has crossed either proxy for `quiet` and both queues are
    /// empty. Returns how long it took, or `Err` after [`SETTLE_DEADLINE`].
    async fn settle(&self, quiet: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last_bytes = u64::MAX;
        let mut last_change = Instant::now();
        loop {
            let bytes = self.to_alpha.snapshot().total() + self.to_beta.snapshot().total();
            if bytes != last_bytes {
                last_bytes = bytes;
                last_change = Instant::now();
            } else if last_change.elapsed() >= quiet {
                let snap = self.snapshot().await;
                if snap.alpha.queue_len == 0 && snap.beta.queue_len == 0 && snap.wire_bytes() == bytes {
                    return Ok(start.elapsed());
                }
                last_change = Instant::now();
            }
            if start.elapsed() > SETTLE_DEADLINE {
                return Err(format!("the wire did not fall quiet for {quiet:?} within {SETTLE_DEADLINE:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until only reminder transactions have crossed for `quiet` and both queues
    /// are empty (for the idle phase, where reminders never stop).
    async fn settle_to_reminders(&self, quiet: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let last_other = self
                .to_alpha
                .all_exchanges()
                .into_iter()
                .chain(self.to_beta.all_exchanges())
                .filter(|e| !e.is_reminder_only())
                .map(|e| e.at)
                .max();
            if last_other.is_none_or(|t| t.elapsed() >= quiet) {
                let snap = self.snapshot().await;
                if snap.alpha.queue_len == 0 && snap.beta.queue_len == 0 {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > SETTLE_DEADLINE {
                return Err(format!(
                    "something other than reminders kept crossing (or a queue stayed non-empty) for \
                     {SETTLE_DEADLINE:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops both servers with SIGTERM; returns their exit descriptions.
    async fn stop(mut self) -> (String, String, String, String) {
        let (a, b) = tokio::join!(self.alpha.stop(), self.beta.stop());
        let describe =
            |s: Option<std::process::ExitStatus>| s.map_or_else(|| "not running".to_owned(), |s| s.to_string());
        (describe(a), describe(b), self.alpha.log(), self.beta.log())
    }
}

async fn peer_figures(admin: &Session) -> PeerFigures {
    let (status, body) = admin.get("/_tidings/admin/v1/federation/peers").await;
    assert_eq!(status, 200, "GET federation/peers: {body}");
    let peer = &body["peers"][0];
    let n = |k: &str| peer[k].as_u64().unwrap_or(0);
    PeerFigures {
        txns_sent: n("txns_sent"),
        txns_received: n("txns_received"),
        bytes_sent: n("bytes_sent"),
        bytes_received: n("bytes_received"),
        queue_len: n("queue_len"),
    }
}

// ---------------------------------------------------------------------------
// Users and consent
// ---------------------------------------------------------------------------

/// Watcher `i` switches watching on, invites target `i` (on the other server) and
/// target `i` allows it; then waits until every watcher holds its target's state.
async fn connect(pairs: Vec<(Session, Session)>) -> Result<(), String> {
    let pairs = Arc::new(pairs);
    let count = pairs.len();
    // 1. Watching on (so the subscription goes out with the answer), then the invite.
    let p = Arc::clone(&pairs);
    let results = tidings_sytest::bench::concurrently(count, SETUP_CONCURRENCY, move |i| {
        let p = Arc::clone(&p);
        async move {
            let (watcher, target) = &p[i];
            let (status, body) = watcher.put("/_tidings/client/v1/presence/poll", json!({ "enabled": true })).await;
            if status != 200 {
                return Err(format!("{} PUT poll: {status} {body}", watcher.user_id));
            }
            let (status, body) =
                watcher.post(&list_path(&watcher.user_id), json!({ "invite": [target.user_id] })).await;
            if status != 200 {
                return Err(format!("{} inviting {}: {status} {body}", watcher.user_id, target.user_id));
            }
            Ok(())
        }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    // 2. The invite crosses; the target allows it.
    let p = Arc::clone(&pairs);
    let results = tidings_sytest::bench::concurrently(count, SETUP_CONCURRENCY, move |i| {
        let p = Arc::clone(&p);
        async move {
            let (watcher, target) = &p[i];
            tidings_sytest::try_eventually(STEP_DEADLINE, || async {
                let (status, body) = target.get("/_tidings/client/v1/presence/requests").await;
                let asked = body["requests"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|q| q["user_id"] == watcher.user_id.as_str()));
                if status == 200 && asked { Ok(()) } else { Err((status, body)) }
            })
            .await
            .map_err(|e| format!("the invite of {} never reached {}: {e}", watcher.user_id, target.user_id))?;
            let answer = format!("/_tidings/client/v1/presence/requests/{}", encode_component(&watcher.user_id));
            let (status, body) = target.post(&answer, json!({ "allow": true })).await;
            if status != 200 {
                return Err(format!("{} allowing {}: {status} {body}", target.user_id, watcher.user_id));
            }
            Ok(())
        }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    // 3. The answer crosses, the watcher's server subscribes, the state comes back.
    let p = Arc::clone(&pairs);
    let results = tidings_sytest::bench::concurrently(count, SETUP_CONCURRENCY, move |i| {
        let p = Arc::clone(&p);
        async move {
            let (watcher, target) = &p[i];
            tidings_sytest::try_eventually(STEP_DEADLINE, || async {
                let (status, body) = watcher.get(&list_path(&watcher.user_id)).await;
                let known = body["entries"].as_array().is_some_and(|entries| {
                    entries.iter().any(|e| {
                        e["user_id"] == target.user_id.as_str()
                            && e["subscription"] == "accepted"
                            && e["presence"].as_str().is_some_and(|p| p != "unknown")
                    })
                });
                if status == 200 && known { Ok(()) } else { Err((status, body)) }
            })
            .await
            .map_err(|e| format!("{} never got {}'s state: {e}", watcher.user_id, target.user_id))
        }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The phases
// ---------------------------------------------------------------------------

/// Figures of one change measurement.
#[derive(Debug, Clone)]
struct ChangeResult {
    changes: usize,
    delta: Delta,
    delivery: Duration,
}

/// What the run found, for the final block.
#[derive(Debug, Default)]
struct Findings {
    changes: Vec<ChangeResult>,
    idle: Option<IdleResult>,
    problems: Vec<String>,
    log_lines: Vec<String>,
    exits: Vec<String>,
}

#[derive(Debug, Clone)]
struct IdleResult {
    delta: Delta,
    reminder_txns: usize,
    reminders_from_alpha: usize,
    reminders_from_beta: usize,
    reminder_bytes: u64,
    other_txns: Vec<String>,
    cycles: usize,
    cycle_period_ms: Option<f64>,
}

async fn run(args: Args) -> ExitCode {
    let bin = tidings_sytest::tidings_bin();
    println!("federation-bench: bytes on the wire between two Tidings servers (HTTP transport)");
    println!("server binary: {}", bin.display());
    if !bin.to_string_lossy().contains("release") {
        println!("WARNING: TIDINGS_BIN does not look like a release build");
    }
    let started = Instant::now();
    let mut findings = Findings::default();

    println!("\n== phase 1: bytes per presence change ==");
    if let Err(e) = change_phase(&mut findings).await {
        findings.problems.push(format!("phase 1: {e}"));
        println!("phase 1 failed: {e}");
    }
    println!("\n== phase 2: bytes per idle peer-day ==");
    if let Err(e) = idle_phase(&mut findings, Duration::from_secs(args.idle_seconds)).await {
        findings.problems.push(format!("phase 2: {e}"));
        println!("phase 2 failed: {e}");
    }
    report(&findings, args, started.elapsed())
}

/// Phase 1: 50 users on beta watched from alpha; 1, 10, 50 of them change at once.
async fn change_phase(findings: &mut Findings) -> Result<(), String> {
    let timers = Timers { batch_ms: CHANGE_BATCH_MS, short_ms: CHANGE_SHORT_MS, long_ms: DEFAULT_LONG_MS };
    println!(
        "  timers: batch_ms {}, short_watchdog_ms {}, long_watchdog_ms {}",
        timers.batch_ms, timers.short_ms, timers.long_ms
    );
    let pair = Pair::start(timers).await?;
    let setup_start = Instant::now();
    let (watchers, targets) = tokio::join!(
        tidings_sytest::bench::register_all(
            pair.alpha.client(),
            (0..CHANGE_USERS).map(|i| format!("watcher{i:02}")).collect(),
            PASSWORD,
            SETUP_CONCURRENCY
        ),
        tidings_sytest::bench::register_all(
            pair.beta.client(),
            (0..CHANGE_USERS).map(|i| format!("user{i:02}")).collect(),
            PASSWORD,
            SETUP_CONCURRENCY
        ),
    );
    println!("  registered {CHANGE_USERS} watchers on alpha and {CHANGE_USERS} users on beta");
    connect(watchers.iter().cloned().zip(targets.iter().cloned()).collect()).await?;
    let settled = pair.settle(Duration::from_millis(CHANGE_BATCH_MS + 1000)).await?;
    let setup = pair.snapshot().await;
    for e in pair.to_beta.all_exchanges() {
        println!("    setup alpha -> beta {}", e.describe());
    }
    for e in pair.to_alpha.all_exchanges() {
        println!("    setup beta -> alpha {}", e.describe());
    }
    println!(
        "  setup done in {:.1} s: {CHANGE_USERS} accepted watch edges, every watcher holds its target's state; \
         setup traffic {} B, {} transactions; quiet after {:.1} s",
        setup_start.elapsed().as_secs_f64(),
        setup.wire_bytes(),
        setup.alpha.txns_sent + setup.beta.txns_sent,
        settled.as_secs_f64()
    );

    for (round, &n) in BATCH_SIZES.iter().enumerate() {
        let status_msg = format!("round {}", round + 1);
        let before = pair.snapshot().await;
        let first_put = Instant::now();
        let mut puts = JoinSet::new();
        for target in targets.iter().take(n).cloned() {
            let body = json!({ "presence": "online", "status_msg": status_msg });
            puts.spawn(async move {
                let (status, answer) = target.put(&status_path(&target.user_id), body).await;
                (status == 200).then_some(()).ok_or_else(|| format!("{} PUT status: {status} {answer}", target.user_id))
            });
        }
        while let Some(done) = puts.join_next().await {
            done.map_err(|e| format!("a PUT task failed: {e}"))??;
        }
        let puts_done = first_put.elapsed();
        // Delivered when every watcher of a changed user sees the new status on alpha.
        let mut waiting: Vec<(Session, String)> =
            watchers.iter().zip(&targets).take(n).map(|(w, t)| (w.clone(), t.user_id.clone())).collect();
        let deadline = Instant::now() + STEP_DEADLINE;
        while !waiting.is_empty() {
            if Instant::now() > deadline {
                return Err(format!("{} watchers never saw '{status_msg}' within {STEP_DEADLINE:?}", waiting.len()));
            }
            let mut checks = JoinSet::new();
            for (i, (watcher, target)) in waiting.iter().enumerate() {
                let (watcher, path, want) = (watcher.clone(), status_path(target), status_msg.clone());
                checks.spawn(async move {
                    let (status, body) = watcher.get(&path).await;
                    (i, status == 200 && body["status_msg"] == want.as_str())
                });
            }
            let mut seen = Vec::new();
            while let Some(done) = checks.join_next().await {
                if let Ok((i, true)) = done {
                    seen.push(i);
                }
            }
            seen.sort_unstable();
            for i in seen.into_iter().rev() {
                waiting.swap_remove(i);
            }
            if !waiting.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
        let delivery = first_put.elapsed();
        pair.settle(Duration::from_millis(CHANGE_BATCH_MS + 1000)).await?;
        let after = pair.snapshot().await;
        let delta = pair.delta(&before, &after);
        println!(
            "  batch {n}: {n} PUTs answered in {:.0} ms, all watchers saw the change {:.0} ms after the first PUT; \
             {} B on the wire ({} B from beta, {} B from alpha), {:.0} B per change, {} transaction(s), \
             {} new connection(s)",
            puts_done.as_secs_f64() * 1000.0,
            delivery.as_secs_f64() * 1000.0,
            delta.bytes,
            delta.beta_sent,
            delta.alpha_sent,
            delta.bytes as f64 / n as f64,
            delta.txns_sent(),
            delta.connections
        );
        for e in &delta.from_beta {
            println!("    beta -> alpha {}", e.describe());
        }
        for e in &delta.from_alpha {
            println!("    alpha -> beta {}", e.describe());
        }
        println!("    admin API byte counters for this window: {}", delta.admin_check());
        if delta.txns_sent() != 1 {
            findings.problems.push(format!(
                "batch {n}: {} transactions instead of 1 for changes made in one window",
                delta.txns_sent()
            ));
        }
        let pushed: usize = delta.exchanges().map(|e| e.pushes).sum();
        if pushed != n {
            findings.problems.push(format!("batch {n}: {pushed} users pushed for {n} changes"));
        }
        if delta.unframed > 0 {
            findings.problems.push(format!("batch {n}: {} bytes the proxy could not frame as HTTP", delta.unframed));
        }
        findings.changes.push(ChangeResult { changes: n, delta, delivery });
    }
    let (alpha_exit, beta_exit, alpha_log, beta_log) = pair.stop().await;
    collect_logs(findings, "phase 1", &alpha_log, &beta_log);
    findings.exits.push(format!("phase 1: alpha {alpha_exit}, beta {beta_exit}"));
    Ok(())
}

/// Phase 2: 100 watched users each way, nothing changes, reminders only.
async fn idle_phase(findings: &mut Findings, window: Duration) -> Result<(), String> {
    let timers = Timers { batch_ms: IDLE_BATCH_MS, short_ms: IDLE_SHORT_MS, long_ms: IDLE_LONG_MS };
    println!(
        "  timers: batch_ms {}, short_watchdog_ms {}, long_watchdog_ms {}",
        timers.batch_ms, timers.short_ms, timers.long_ms
    );
    let pair = Pair::start(timers).await?;
    let setup_start = Instant::now();
    let names = |prefix: &str| (0..IDLE_USERS).map(|i| format!("{prefix}{i:03}")).collect::<Vec<_>>();
    let (alpha_watchers, beta_users, beta_watchers, alpha_users) = tokio::join!(
        tidings_sytest::bench::register_all(pair.alpha.client(), names("watcher"), PASSWORD, SETUP_CONCURRENCY),
        tidings_sytest::bench::register_all(pair.beta.client(), names("user"), PASSWORD, SETUP_CONCURRENCY),
        tidings_sytest::bench::register_all(pair.beta.client(), names("watcher"), PASSWORD, SETUP_CONCURRENCY),
        tidings_sytest::bench::register_all(pair.alpha.client(), names("user"), PASSWORD, SETUP_CONCURRENCY),
    );
    println!("  registered {IDLE_USERS} users and {IDLE_USERS} watchers on each server");
    let mut edges: Vec<(Session, Session)> = alpha_watchers.into_iter().zip(beta_users).collect();
    edges.extend(beta_watchers.into_iter().zip(alpha_users));
    connect(edges).await?;
    let settled = pair.settle_to_reminders(IDLE_SETTLE_QUIET).await?;
    println!(
        "  setup done in {:.1} s: {IDLE_USERS} users on beta watched from alpha and {IDLE_USERS} on alpha watched \
         from beta; only reminders for {:.0} s after {:.1} s",
        setup_start.elapsed().as_secs_f64(),
        IDLE_SETTLE_QUIET.as_secs_f64(),
        settled.as_secs_f64()
    );

    let before = pair.snapshot().await;
    println!("  measuring an idle window of {} s ...", window.as_secs());
    tokio::time::sleep(window).await;
    let after = pair.snapshot().await;
    let delta = pair.delta(&before, &after);

    let mut reminders: Vec<(Instant, &str, u64)> = Vec::new();
    let mut other_txns = Vec::new();
    for (from, list) in [("alpha", &delta.from_alpha), ("beta", &delta.from_beta)] {
        for e in list {
            if e.is_reminder_only() {
                reminders.push((e.at, from, e.bytes()));
            } else {
                other_txns.push(format!("{from} -> {}", e.describe()));
            }
        }
    }
    reminders.sort_by_key(|r| r.0);
    let timeline: Vec<String> = reminders
        .iter()
        .map(|(at, from, _)| format!("{}{}", at.duration_since(before.at).as_millis(), &from[..1]))
        .collect();
    println!("  reminders sent (ms into the window, a = by alpha, b = by beta): {}", timeline.join(" "));
    // Reminders less than half a short period apart answer the same expiry: one cycle.
    let mut cycle_starts: Vec<Instant> = Vec::new();
    for (at, _, _) in &reminders {
        if cycle_starts.last().is_none_or(|s| at.duration_since(*s) >= Duration::from_millis(IDLE_SHORT_MS / 2)) {
            cycle_starts.push(*at);
        }
    }
    let cycle_period_ms = match (cycle_starts.first(), cycle_starts.last()) {
        (Some(first), Some(last)) if cycle_starts.len() > 1 => {
            Some(last.duration_since(*first).as_secs_f64() * 1000.0 / (cycle_starts.len() - 1) as f64)
        }
        _ => None,
    };
    let reminders_from_alpha = reminders.iter().filter(|r| r.1 == "alpha").count();
    let result = IdleResult {
        reminder_txns: reminders.len(),
        reminders_from_alpha,
        reminders_from_beta: reminders.len() - reminders_from_alpha,
        reminder_bytes: reminders.iter().map(|r| r.2).sum(),
        other_txns,
        cycles: cycle_starts.len(),
        cycle_period_ms,
        delta,
    };
    if let Some(first) = result.delta.exchanges().find(|e| e.is_reminder_only()) {
        println!("  a reminder: {}", first.describe());
    }
    println!(
        "  window {:.1} s: {} B on the wire, {} reminder transactions ({} from alpha, {} from beta) in {} cycles, \
         {} other exchanges, {} new connection(s)",
        result.delta.elapsed.as_secs_f64(),
        result.delta.bytes,
        result.reminder_txns,
        result.reminders_from_alpha,
        result.reminders_from_beta,
        result.cycles,
        result.other_txns.len(),
        result.delta.connections
    );
    for line in result.other_txns.iter().take(10) {
        println!("    not a reminder: {line}");
    }
    println!("    admin API byte counters for this window: {}", result.delta.admin_check());
    if !result.other_txns.is_empty() {
        findings.problems.push(format!(
            "idle window: {} exchanges other than reminder transactions crossed while nothing changed",
            result.other_txns.len()
        ));
    }
    if result.delta.unframed > 0 {
        findings.problems.push(format!("idle window: {} bytes the proxy could not frame", result.delta.unframed));
    }
    findings.idle = Some(result);
    let (alpha_exit, beta_exit, alpha_log, beta_log) = pair.stop().await;
    collect_logs(findings, "phase 2", &alpha_log, &beta_log);
    findings.exits.push(format!("phase 2: alpha {alpha_exit}, beta {beta_exit}"));
    Ok(())
}

/// Keeps the servers' warnings, errors and dropped EDUs.
fn collect_logs(findings: &mut Findings, phase: &str, alpha: &str, beta: &str) {
    for (name, log) in [("alpha", alpha), ("beta", beta)] {
        for line in log.lines() {
            if line.contains("WARN")
                || line.contains("ERROR")
                || line.contains("panicked")
                || line.contains("dropped an EDU")
                || line.contains("went quiet")
            {
                findings.log_lines.push(format!("{phase} {name}: {line}"));
            }
        }
    }
}

/// Prints the final block and picks the exit code.
fn report(findings: &Findings, args: Args, elapsed: Duration) -> ExitCode {
    if !findings.log_lines.is_empty() {
        println!("\nserver log lines worth a look ({}):", findings.log_lines.len());
        for line in findings.log_lines.iter().take(20) {
            println!("  {line}");
        }
    }
    println!();
    println!("===== federation-bench results =====");
    println!("transport: http (Matrix-style transactions, X-Matrix signatures, HTTP/1.1 keep-alive)");
    println!(
        "bytes: TCP payload through counting proxies, both directions, HTTP request and answer lines, headers and \
         bodies included (TCP/IP headers not counted)"
    );
    println!(
        "change_setup: {CHANGE_USERS} users on {BETA}, each watched by one polling user on {ALPHA}; \
         batch_ms {CHANGE_BATCH_MS}, short_watchdog_ms {CHANGE_SHORT_MS}"
    );
    for c in &findings.changes {
        let n = c.changes;
        println!("change_batch_{n}_bytes: {}", c.delta.bytes);
        println!("change_batch_{n}_bytes_per_change: {:.1}", c.delta.bytes as f64 / n as f64);
        println!(
            "change_batch_{n}_txns: {} (admin txns_sent: {} from beta, {} from alpha)",
            c.delta.txns_sent(),
            c.delta.beta.txns_sent,
            c.delta.alpha.txns_sent
        );
        println!("change_batch_{n}_delivery_ms: {:.0}", c.delivery.as_secs_f64() * 1000.0);
    }
    if let Some(one) = findings.changes.first()
        && let Some(txn) = one.delta.from_beta.iter().find(|e| e.is_txn())
    {
        println!(
            "change_batch_1_breakdown: request {} B (line+headers {} B of which X-Matrix line {} B, body {} B) + \
             answer {} B (line+headers {} B, body {} B)",
            txn.request_head + txn.request_body,
            txn.request_head,
            txn.auth_line,
            txn.request_body,
            txn.response_head + txn.response_body,
            txn.response_head,
            txn.response_body
        );
    }
    if findings.changes.len() >= 2 {
        let (first, last) = (&findings.changes[0], &findings.changes[findings.changes.len() - 1]);
        if last.changes > first.changes {
            let marginal = (last.delta.bytes as f64 - first.delta.bytes as f64) / (last.changes - first.changes) as f64;
            println!(
                "change_marginal_bytes_per_extra_user: {marginal:.1} (batch {} vs batch {})",
                last.changes, first.changes
            );
        }
    }
    if let Some(idle) = &findings.idle {
        let d = &idle.delta;
        let window_s = d.elapsed.as_secs_f64();
        println!(
            "idle_setup: {IDLE_USERS} users on {BETA} watched from {ALPHA} and {IDLE_USERS} on {ALPHA} watched from \
             {BETA}; short_watchdog_ms {IDLE_SHORT_MS}, long_watchdog_ms {IDLE_LONG_MS}, batch_ms {IDLE_BATCH_MS}"
        );
        println!("idle_window_s: {window_s:.1} (measured; asked for {})", args.idle_seconds);
        println!("idle_window_bytes: {} ({} from alpha, {} from beta)", d.bytes, d.alpha_sent, d.beta_sent);
        println!(
            "idle_window_reminder_txns: {} ({} from alpha, {} from beta); admin txns_sent: {}",
            idle.reminder_txns,
            idle.reminders_from_alpha,
            idle.reminders_from_beta,
            d.txns_sent()
        );
        println!("idle_window_other_exchanges: {}", idle.other_txns.len());
        if idle.reminder_txns > 0 {
            println!(
                "idle_bytes_per_reminder_exchange: {:.1} (one reminder transaction and its 200 answer)",
                idle.reminder_bytes as f64 / idle.reminder_txns as f64
            );
        }
        if idle.cycles > 0 {
            let per_cycle = d.bytes as f64 / idle.cycles as f64;
            let reminders_per_cycle = idle.reminder_txns as f64 / idle.cycles as f64;
            println!(
                "idle_cycles: {} (reminders less than short/2 apart count as one cycle); {reminders_per_cycle:.2} \
                 reminder transactions per cycle",
                idle.cycles
            );
            println!(
                "idle_cycle_period_ms: {} (short_watchdog_ms {IDLE_SHORT_MS} shortened by the per-direction factor; \
                 a due reminder closes the batch window at once)",
                idle.cycle_period_ms.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.0}"))
            );
            println!("idle_bytes_per_cycle: {per_cycle:.1} (window bytes / cycles)");
            let cycles_per_day = DAY_MS as f64 / DEFAULT_SHORT_MS as f64;
            println!(
                "idle_peer_day_bytes_extrapolated: {:.0} = idle_bytes_per_cycle × {DAY_MS} / {DEFAULT_SHORT_MS} \
                 (EXTRAPOLATION from the wire's bytes per cycle × one cycle per default short_watchdog_ms of 60 s; \
                 ignores the default long timer's at most {} extra reminders a day. The day measured over virtual time: \
                 cargo test --release -p tidings-federation --test simulated_day -- --nocapture)",
                per_cycle * cycles_per_day,
                DAY_MS / (DEFAULT_LONG_MS * 3 / 4)
            );
        }
    }
    println!(
        "anchors: Synapse 1,145 bytes on the wire per presence change (the issue); Matrix federation ~600 bytes of \
         HTTP, JSON and signature per change (DESIGN.md); streamed brotli ~23 bytes per JSON update; XMPP presence \
         stanza 100-450 bytes; Matrix CoAP low-bandwidth proxy 150-180 bytes per message"
    );
    for exit in &findings.exits {
        println!("server_exit: {exit}");
    }
    println!("server_log_lines_worth_a_look: {}", findings.log_lines.len());
    println!("run_s: {:.1}", elapsed.as_secs_f64());
    if findings.problems.is_empty() {
        println!("problems: none");
        ExitCode::SUCCESS
    } else {
        for p in &findings.problems {
            println!("problem: {p}");
        }
        println!("RESULT: problems seen (see above)");
        ExitCode::FAILURE
    }
}
