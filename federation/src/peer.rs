//! What the carrier keeps about one peer: its configuration and traffic figures, and
//! a signal for a backed-off retry. The presence protocol's state of a peer (its
//! watchdogs, subscription) lives in core.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::config::PeerConfig;

/// One configured peer.
#[derive(Debug)]
pub struct Peer {
    /// Its name and URL.
    pub config: PeerConfig,
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
    /// The last measured round trip of a delivery, in ms; 0 = none yet.
    pub rtt_ms: AtomicU64,
    /// Bytes of the exchanges of transactions we sent (request and answer, every
    /// attempt) by the transaction's class (`[presence, short, bulk]`, as the link
    /// classes them): what HTTP spends on each kind of traffic.
    pub exchange_bytes_by_class: [AtomicU64; 3],
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
    /// A peer as configured.
    pub fn new(config: PeerConfig) -> Self {
        Self { config, heard: Notify::new(), stats: PeerStats::default() }
    }

    /// The peer's server name.
    pub fn name(&self) -> &str {
        &self.config.server_name
    }
}

/// Size of an HTTP/1.1 message: start line, headers, blank line, body.
pub fn http_size<'a>(start_line: &str, headers: impl Iterator<Item = (&'a str, &'a [u8])>, body_len: usize) -> u64 {
    let head: usize = headers.map(|(k, v)| k.len() + 2 + v.len() + 2).sum();
    (start_line.len() + 2 + head + 2 + body_len) as u64
}
