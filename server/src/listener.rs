//! The accept loop of the one listener (client, federation, key and admin APIs), in
//! plain HTTP/1.1 or HTTPS, with bounds so that no client can pin the server:
//!
//! - a connection that has not sent a whole request head within
//!   `request_header_timeout_ms` of opening (or of the first byte of a later request)
//!   is closed; for HTTPS the TLS handshake counts as part of the head;
//! - a keep-alive connection with no request in flight is closed after
//!   `keepalive_timeout_ms`. A request in flight (a long-poll `/sync` waiting for news)
//!   is not idle, however long it waits;
//! - at most `max_connections` connections are open at once. When the bound is
//!   reached the loop stops accepting: further connections wait in the kernel's listen
//!   backlog (they are not refused) until one closes, and the bound being hit is
//!   logged at most once per [`LOG_EVERY`]. While at the bound ("under pressure"),
//!   idle keep-alive connections are closed at once and a connection still waiting
//!   for its head gets at most [`PRESSURE_HEADER_TIMEOUT`], so a flood of silent
//!   sockets cannot hold the backlog for long. The bound is also kept below the
//!   process's file-descriptor limit, so the database and outgoing federation always
//!   have descriptors left.
//!
//! Shutdown: when `shutdown` resolves (it also wakes the waiting `/sync`s) the loop
//! stops accepting, every connection finishes the request in flight and closes, and
//! [`serve`] returns when the last one has.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Rate of the "bound reached" and "cannot accept" warnings.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// File descriptors kept free of client connections: the database (WAL and shm),
/// the log, outgoing federation connections, signal pipes.
const FD_RESERVE: u64 = 64;
/// Pause after an accept error that is not about one connection (out of file
/// descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// While at the bound, a connection waiting for its request head is closed this long
/// after it opened (if `request_header_timeout_ms` is not shorter).
pub const PRESSURE_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pressure ends when at least this share (1/N) of the bound is free again.
const PRESSURE_RELIEF_SHARE: usize = 8;
/// Pressure lasts at least this long after the bound was last hit, so that every
/// idle connection sees it before the room it made ends it.
const PRESSURE_MIN: Duration = Duration::from_secs(1);
/// How often an idle accept loop under pressure checks whether it has ended.
const PRESSURE_RELIEF_CHECK: Duration = Duration::from_millis(250);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The listen backlog: where connections wait while the bound is reached (the kernel
/// caps it at `net.core.somaxconn`). std's default of 128 made a burst of connects
/// drop SYNs and retry a second later.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Bind the listener like std does (`SO_REUSEADDR`), with a [`LISTEN_BACKLOG`] deep
/// backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The listener's bounds, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `request_header_timeout_ms`.
    pub request_header_timeout: Duration,
    /// `keepalive_timeout_ms`.
    pub keepalive_timeout: Duration,
    /// `max_connections`.
    pub max_connections: usize,
}

/// Serve `app` on `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves, then until every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let max = effective_bound(limits.max_connections, fd_soft_limit());
    let permits = Arc::new(Semaphore::new(max));
    let (closing_tx, closing_rx) = watch::channel(false);
    let (pressure_tx, pressure_rx) = watch::channel(false);
    let bound_log = Throttle::new(LOG_EVERY);
    let accept_log = Throttle::new(LOG_EVERY);
    let plain_log = Arc::new(Throttle::new(LOG_EVERY));
    let mut pressure_since = Instant::now();
    let mut relief = tokio::time::interval(PRESSURE_RELIEF_CHECK);
    relief.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    'accepting: loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                relieve(&pressure_tx, pressure_since, permits.available_permits(), max);
                permit
            }
            Err(_) => {
                pressure_tx.send_replace(true);
                pressure_since = Instant::now();
                if let Some(suppressed) = bound_log.ready() {
                    tracing::warn!(
                        max_connections = max,
                        suppressed,
                        "max_connections reached: new connections wait in the listen backlog until one closes"
                    );
                }
                tokio::select! {
                    permit = Arc::clone(&permits).acquire_owned() => permit.map_err(|e| e.to_string())?,
                    () = &mut shutdown => break 'accepting,
                }
            }
        };
        // Pressure also ends while waiting here, once enough connections closed.
        let accepted = loop {
            tokio::select! {
                accepted = listener.accept() => break accepted,
                () = &mut shutdown => break 'accepting,
                _ = relief.tick(), if *pressure_tx.borrow() => {
                    relieve(&pressure_tx, pressure_since, permits.available_permits() + 1, max);
                }
            }
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if let Some(suppressed) = accept_log.ready() {
                    tracing::warn!(error = %e, suppressed, open = max.saturating_sub(permits.available_permits() + 1),
                        "cannot accept a connection (file descriptors exhausted?); retrying");
                }
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut shutdown => break 'accepting,
                }
            }
        };
        let conn = Connection {
            remote,
            app: app.clone(),
            limits,
            closing: closing_rx.clone(),
            pressure: pressure_rx.clone(),
            plain_log: Arc::clone(&plain_log),
            _permit: permit,
        };
        tokio::spawn(conn.run(stream, tls.clone()));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a permit until it has closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _all_closed = permits.acquire_many(all).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// End the pressure when it has lasted [`PRESSURE_MIN`] and `free` of the `max`
/// slots are at least a [`PRESSURE_RELIEF_SHARE`]th.
fn relieve(pressure: &watch::Sender<bool>, since: Instant, free: usize, max: usize) {
    if *pressure.borrow() && since.elapsed() >= PRESSURE_MIN && free >= (max / PRESSURE_RELIEF_SHARE).max(1) {
        pressure.send_replace(false);
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// `max_connections`, lowered when the process may not open that many descriptors.
fn effective_bound(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return configured };
    let room = if limit > 2 * FD_RESERVE { limit - FD_RESERVE } else { limit / 2 };
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if configured > room {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = limit,
            using = room,
            "max_connections is above what the file-descriptor limit allows; using less (raise `ulimit -n` to allow more)"
        );
        room
    } else {
        configured
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits` (Linux); `None`
/// elsewhere or when unlimited.
fn fd_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Lets a message through at most once per period; counts what it held back.
#[derive(Debug)]
pub struct Throttle {
    period_ms: u64,
    started: Instant,
    /// Milliseconds after `started` of the last message let through, plus one (0: none yet).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(how many were held back since the last one)` when a message may go now.
    pub fn ready(&self) -> Option<u64> {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Where a connection is in its life, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head since then.
    Head(Instant),
    /// This many requests are in flight.
    Busy(usize),
    /// Kept alive with nothing in flight since then.
    Idle(Instant),
}

/// The timers' view of one connection, shared by its I/O and its requests.
#[derive(Debug)]
struct ConnState {
    phase: Mutex<Phase>,
    limits: Limits,
    /// Whether the listener is at its bound.
    pressure: watch::Receiver<bool>,
    /// Wakes the watchdog when the last request in flight ends (an idle deadline may
    /// be earlier than the one it sleeps towards).
    turned_idle: tokio::sync::Notify,
}

impl ConnState {
    fn new(limits: Limits, pressure: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            limits,
            pressure,
            turned_idle: tokio::sync::Notify::new(),
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes came in: on an idle connection that starts the next request head.
    fn on_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }

    /// Bytes went out (the end of a response to a slow reader): not idle yet.
    fn on_write(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }

    /// A whole request head arrived and its request is being answered.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        InFlight(Arc::clone(self))
    }

    /// When the connection is due to be closed, and why; `None` while busy.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let pressure = *self.pressure.borrow();
        let header = self.limits.request_header_timeout;
        match *self.phase() {
            Phase::Head(since) if pressure && header > PRESSURE_HEADER_TIMEOUT => {
                Some((since + PRESSURE_HEADER_TIMEOUT, "request_header_timeout_ms (shortened at max_connections)"))
            }
            Phase::Head(since) => Some((since + header, "request_header_timeout_ms")),
            Phase::Idle(since) if pressure => Some((since, "keepalive_timeout_ms (idle at max_connections)")),
            Phase::Idle(since) => Some((since + self.limits.keepalive_timeout, "keepalive_timeout_ms")),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves with the timeout's name when the connection has overstayed it.
    async fn expired(&self) -> &'static str {
        let recheck = self.limits.request_header_timeout.min(self.limits.keepalive_timeout);
        let mut pressure = self.pressure.clone();
        loop {
            let wait = match self.deadline() {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => tokio::time::sleep_until(at),
                None => tokio::time::sleep(recheck),
            };
            tokio::select! {
                () = wait => {}
                () = self.turned_idle.notified() => {}
                changed = pressure.changed() => {
                    if changed.is_err() {
                        // The listener is gone: no more pressure changes; plain timers.
                        pressure = watch::channel(false).1;
                    }
                }
            }
        }
    }
}

/// A request in flight; when dropped (its response handed to hyper) the connection
/// turns idle if it was the last.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        if let Phase::Idle(_) = *phase {
            self.0.turned_idle.notify_one();
        }
    }
}

/// A TCP stream that tells its [`ConnState`] about traffic.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.state.on_write();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One accepted connection.
struct Connection {
    remote: SocketAddr,
    app: Router,
    limits: Limits,
    closing: watch::Receiver<bool>,
    pressure: watch::Receiver<bool>,
    plain_log: Arc<Throttle>,
    /// Held until the connection has closed: the `max_connections` bound.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let state = ConnState::new(self.limits, self.pressure.clone());
        let remote = self.remote;
        let io = Tracked { inner: stream, state: Arc::clone(&state) };
        let serve = async {
            match tls {
                None => self.http(io, &state).await,
                Some(acceptor) => self.https(io, acceptor, &state).await,
            }
        };
        tokio::select! {
            () = serve => {}
            why = state.expired() => {
                tracing::debug!(%remote, timeout = why, "closing a connection that overstayed its timeout");
            }
        }
    }

    /// TLS: the handshake (bounded by the header timeout, like the head that follows),
    /// then HTTP inside. A client speaking plain HTTP gets a 400 Matrix error in plain
    /// HTTP and the connection is closed.
    async fn https(&self, mut io: Tracked, acceptor: TlsAcceptor, state: &Arc<ConnState>) {
        let mut first = [0u8; 1];
        match io.inner.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if first[0] != TLS_HANDSHAKE {
            if let Some(suppressed) = self.plain_log.ready() {
                tracing::info!(remote = %self.remote, suppressed, "plain HTTP on the TLS listener: answered 400 and closed");
            }
            answer_plain_http(&mut io).await;
            return;
        }
        match acceptor.accept(io).await {
            Ok(stream) => self.http(stream, state).await,
            Err(e) => tracing::debug!(remote = %self.remote, error = %e, "TLS handshake failed"),
        }
    }

    /// HTTP/1.1 with keep-alive; every request gets `ConnectInfo<SocketAddr>` (the rate
    /// limiter keys on it).
    async fn http<I>(&self, io: I, state: &Arc<ConnState>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let remote = self.remote;
        let app = self.app.clone();
        let state = Arc::clone(state);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let in_flight = state.begin_request();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Our own timers bound the head; hyper's would also cut idle keep-alive
        // connections at the header timeout.
        builder.header_read_timeout(None).keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = self.closing.clone();
        let mut asked_to_close = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.wait_for(|c| *c), if !asked_to_close => {
                    asked_to_close = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The answer to plain HTTP on the TLS port; the connection closes after it. The
/// request is drained a little first, so the close is not a reset that would lose the
/// answer.
async fn answer_plain_http(io: &mut Tracked) {
    const BODY: &str = r#"{"errcode":"M_UNRECOGNIZED","error":"this port speaks HTTPS: use an https:// URL"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(50), io.read(&mut scratch)).await;
    if io.write_all(answer.as_bytes()).await.is_ok() {
        let _ = io.shutdown().await;
        let drain = async {
            let mut total = 0usize;
            while total < 64 * 1024 {
                match io.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_stays_under_the_descriptor_limit() {
        assert_eq!(effective_bound(768, None), 768);
        assert_eq!(effective_bound(768, Some(1024)), 768);
        assert_eq!(effective_bound(768, Some(256)), 192);
        assert_eq!(effective_bound(20, Some(256)), 20);
        assert_eq!(effective_bound(768, Some(100)), 50);
    }

    #[test]
    fn the_throttle_lets_one_through_per_period() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_not_idle() {
        let limits = Limits {
            request_header_timeout: Duration::from_millis(500),
            keepalive_timeout: Duration::from_millis(2000),
            max_connections: 1,
        };
        let (pressure_tx, pressure_rx) = watch::channel(false);
        let state = ConnState::new(limits, pressure_rx);
        let start = Instant::now();
        assert_eq!(state.deadline().map(|(_, why)| why), Some("request_header_timeout_ms"));
        let in_flight = state.begin_request();
        assert_eq!(state.deadline(), None);
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(in_flight);
        assert_eq!(state.deadline().map(|(_, why)| why), Some("keepalive_timeout_ms"));
        assert_eq!(state.expired().await, "keepalive_timeout_ms");
        assert!(start.elapsed() >= Duration::from_secs(62));
        state.on_read();
        assert_eq!(state.deadline().map(|(_, why)| why), Some("request_header_timeout_ms"));
        drop(state.begin_request());
        let idle_since = Instant::now();
        // At the bound an idle connection is due at once, and a head gets less time.
        pressure_tx.send_replace(true);
        assert_eq!(state.deadline(), Some((idle_since, "keepalive_timeout_ms (idle at max_connections)")));
        state.on_read();
        assert_eq!(state.deadline().map(|(_, why)| why), Some("request_header_timeout_ms"), "500 ms < 5 s");
    }

    #[tokio::test(start_paused = true)]
    async fn pressure_wakes_an_idle_connection() {
        let limits = Limits {
            request_header_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 1,
        };
        let (pressure_tx, pressure_rx) = watch::channel(false);
        let state = ConnState::new(limits, pressure_rx);
        drop(state.begin_request());
        let start = Instant::now();
        let expired = tokio::spawn({
            let state = Arc::clone(&state);
            async move { state.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        pressure_tx.send_replace(true);
        let why = expired.await.expect("the watchdog");
        assert_eq!(why, "keepalive_timeout_ms (idle at max_connections)");
        assert!(start.elapsed() < Duration::from_secs(11), "{:?}", start.elapsed());
    }
}
