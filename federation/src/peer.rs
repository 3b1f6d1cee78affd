//! What this server keeps about one peer: its watchdogs, its traffic figures, and
//! the flags its sender acts on.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ruma::OwnedUserId;
use tokio::sync::Notify;

use crate::config::PeerConfig;
use crate::watchdog::Watchdog;

/// One configured peer.
#[derive(Debug)]
pub struct Peer {
    /// Its name and URL.
    pub config: PeerConfig,
    /// Its two timers and staleness.
    pub watchdog: Mutex<Watchdog>,
    /// A reminder is to go out with the next transaction.
    pub reminder_due: AtomicBool,
    /// The next transaction re-sends our whole subscription (after staleness or a
    /// reminder whose digest did not match).
    pub resubscribe: AtomicBool,
    /// The subscription the peer last acknowledged; `None` until the first one.
    pub subscribed: Mutex<Option<BTreeSet<OwnedUserId>>>,
    /// Signalled when the peer is heard from, so a backed-off retry goes at once.
    pub heard: Notify,
    /// Traffic figures.
    pub stats: PeerStats,
}

/// Traffic with one peer; bytes include the HTTP request line, headers and body.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Unix ms of the last verified request from the peer; 0 = never.
    pub last_received_ts: AtomicU64,
    /// Transactions the peer acknowledged.
    pub txns_sent: AtomicU64,
    /// Transactions received from the peer (retries included).
    pub txns_received: AtomicU64,
    /// Bytes we sent to the peer (our requests and our answers to its requests).
    pub bytes_sent: AtomicU64,
    /// Bytes received from the peer (its requests and its answers to ours).
    pub bytes_received: AtomicU64,
}

impl PeerStats {
    /// Add to a figure.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read a figure.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl Peer {
    /// A peer with its timers off.
    pub fn new(own: &str, config: PeerConfig, short_ms: u64, long_ms: u64) -> Self {
        let watchdog = Mutex::new(Watchdog::new(own, &config.server_name, short_ms, long_ms));
        Self {
            config,
            watchdog,
            reminder_due: AtomicBool::new(false),
            resubscribe: AtomicBool::new(false),
            subscribed: Mutex::new(None),
            heard: Notify::new(),
            stats: PeerStats::default(),
        }
    }

    /// The peer's server name.
    pub fn name(&self) -> &str {
        &self.config.server_name
    }

    /// Lock the watchdog.
    pub fn watchdog(&self) -> std::sync::MutexGuard<'_, Watchdog> {
        self.watchdog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Heard from the peer (verified request or 2xx answer) at `now`: reset the short
    /// timer, wake a waiting retry. Returns whether the peer had gone stale.
    pub fn heard_at(&self, now: u64) -> bool {
        let was_stale = self.watchdog().heard(now);
        self.heard.notify_waiters();
        if was_stale {
            self.resubscribe.store(true, Ordering::SeqCst);
        }
        was_stale
    }
}

/// Size of an HTTP/1.1 message: start line, headers, blank line, body.
pub fn http_size<'a>(start_line: &str, headers: impl Iterator<Item = (&'a str, &'a [u8])>, body_len: usize) -> u64 {
    let head: usize = headers.map(|(k, v)| k.len() + 2 + v.len() + 2).sum();
    (start_line.len() + 2 + head + 2 + body_len) as u64
}
