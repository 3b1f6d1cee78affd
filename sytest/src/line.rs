//! A line emulator: a loopback TCP relay that behaves like a thin serial line between
//! two sites. Each direction carries at most `rate` bytes per second, delivers each
//! byte `latency` after it went on the line, and holds no more than a modem would
//! (about 50 ms of bytes), so a sender that writes too much fills its own socket
//! buffers, as on a real line. [`Line::cut`] drops every connection (both ends see
//! the connection close, like a carrier lost) and refuses new ones until
//! [`Line::restore`]. Byte counters are exact: every byte that went on the line, per
//! direction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How much a modem buffers before it stops reading (line time).
const MODEM_BUFFER: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Control {
    rate: AtomicU64,
    latency_ms: AtomicU64,
    up: AtomicBool,
    cuts: watch::Sender<u64>,
    forward: AtomicU64,
    back: AtomicU64,
    calls: AtomicU64,
    /// The first (up to 64) bytes the caller sent in each call, in the order the calls came.
    heads: std::sync::Mutex<Vec<Vec<u8>>>,
    /// When each call got through, and when it ended (`None` while it lasts).
    call_log: std::sync::Mutex<Vec<(Instant, Option<Instant>)>>,
}

/// One emulated line towards `target`.
#[derive(Debug)]
pub struct Line {
    addr: SocketAddr,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Line {
    fn drop(&mut self) {
        self.task.abort();
        self.control.cuts.send_modify(|c| *c += 1);
    }
}

impl Line {
    /// A line on a free loopback port relaying to `target` at `rate` bytes per
    /// second (0 = unlimited) with `latency` each way.
    pub async fn start(target: SocketAddr, rate: u64, latency: Duration) -> Line {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the line's port");
        let addr = listener.local_addr().expect("the line's address");
        let (cuts, _) = watch::channel(0);
        let control = Arc::new(Control {
            rate: AtomicU64::new(rate),
            latency_ms: AtomicU64::new(latency.as_millis() as u64),
            up: AtomicBool::new(true),
            cuts,
            forward: AtomicU64::new(0),
            back: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            heads: std::sync::Mutex::new(Vec::new()),
            call_log: std::sync::Mutex::new(Vec::new()),
        });
        let c = Arc::clone(&control);
        let task = tokio::spawn(async move {
            while let Ok((caller, _)) = listener.accept().await {
                if !c.up.load(Ordering::SeqCst) {
                    drop(caller);
                    continue;
                }
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    let Ok(callee) = TcpStream::connect(target).await else { return };
                    // One entry in each log, at the same index.
                    let entry = {
                        let mut log = c.call_log.lock().unwrap_or_else(|p| p.into_inner());
                        let mut heads = c.heads.lock().unwrap_or_else(|p| p.into_inner());
                        log.push((Instant::now(), None));
                        heads.push(Vec::new());
                        c.calls.fetch_add(1, Ordering::SeqCst);
                        log.len() - 1
                    };
                    let _ = caller.set_nodelay(true);
                    let _ = callee.set_nodelay(true);
                    let mut cut = c.cuts.subscribe();
                    cut.mark_unchanged();
                    let (cr, cw) = caller.into_split();
                    let (tr, tw) = callee.into_split();
                    let there = pump(cr, tw, Arc::clone(&c), Some(entry));
                    let back = pump(tr, cw, Arc::clone(&c), None);
                    tokio::select! {
                        _ = async { tokio::join!(there, back) } => {}
                        _ = cut.changed() => {}
                    }
                    c.call_log.lock().unwrap_or_else(|p| p.into_inner())[entry].1 = Some(Instant::now());
                });
            }
        });
        Line { addr, control, task }
    }

    /// Where to dial the line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every connection now and refuse calls until [`Line::restore`].
    pub fn cut(&self) {
        self.control.up.store(false, Ordering::SeqCst);
        self.control.cuts.send_modify(|c| *c += 1);
    }

    /// Accept calls again.
    pub fn restore(&self) {
        self.control.up.store(true, Ordering::SeqCst);
    }

    /// Set the rate (bytes per second, 0 = unlimited).
    pub fn set_rate(&self, rate: u64) {
        self.control.rate.store(rate, Ordering::SeqCst);
    }

    /// Bytes that went on the line from the caller towards the target.
    pub fn bytes_forward(&self) -> u64 {
        self.control.forward.load(Ordering::SeqCst)
    }

    /// Bytes that went on the line from the target back to the caller.
    pub fn bytes_back(&self) -> u64 {
        self.control.back.load(Ordering::SeqCst)
    }

    /// Both directions.
    pub fn bytes(&self) -> u64 {
        self.bytes_forward() + self.bytes_back()
    }

    /// The first (up to 64) bytes the caller sent in the last call.
    pub fn head_of_last_call(&self) -> Vec<u8> {
        self.heads().pop().unwrap_or_default()
    }

    /// The first (up to 64) bytes the caller sent in each call that got through, in
    /// the order the calls came, as [`Line::call_times`] (the link's handshake: a full
    /// first message or a resume message, and what followed it).
    pub fn heads(&self) -> Vec<Vec<u8>> {
        self.control.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Calls that got through to the target.
    pub fn calls(&self) -> u64 {
        self.control.calls.load(Ordering::SeqCst)
    }

    /// When each call that got through began, and when it ended (`None` while it
    /// lasts), in the order they came. A call ends when both of its directions have
    /// closed (either side hung up) or at a cut.
    pub fn call_times(&self) -> Vec<(Instant, Option<Instant>)> {
        self.control.call_log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One direction: read what the line can take, serialize it at the rate, deliver
/// it `latency` later. `call`: the caller's direction of that call (its head is kept).
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    control: Arc<Control>,
    call: Option<usize>,
) {
    let forward = call.is_some();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let deliver = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if dst.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = dst.shutdown().await;
    };
    let read = async move {
        let mut line_free = Instant::now();
        let mut buf = [0u8; 32];
        loop {
            let now = Instant::now();
            if line_free > now + MODEM_BUFFER {
                tokio::time::sleep_until(line_free - MODEM_BUFFER).await;
            }
            let n = match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            let rate = control.rate.load(Ordering::SeqCst);
            let start = line_free.max(now);
            line_free = if rate == 0 { start } else { start + Duration::from_secs_f64(n as f64 / rate as f64) };
            if let Some(call) = call {
                let mut heads = control.heads.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(head) = heads.get_mut(call) {
                    let room = 64usize.saturating_sub(head.len());
                    head.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            let counter = if forward { &control.forward } else { &control.back };
            counter.fetch_add(n as u64, Ordering::SeqCst);
            let latency = Duration::from_millis(control.latency_ms.load(Ordering::SeqCst));
            if tx.send((line_free + latency, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    tokio::join!(read, deliver);
}
