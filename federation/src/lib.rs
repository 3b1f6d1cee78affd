//! The server-server side of Tidings: signing keys, X-Matrix authentication,
//! transactions, and for each configured peer a sender with its batch window and two
//! watchdog timers. Core decides what must be said to whom (its outbound queues);
//! this crate carries it and hands what arrives back to core.
//! See spec/federation.md for the protocol.

pub mod config;
pub mod keyring;
pub mod keys;
pub mod peer;
pub mod receiver;
pub mod routes;
pub mod sender;
pub mod watchdog;
pub mod xmatrix;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use config::{FederationConfig, PeerConfig};
use serde_json::{Value, json};
use tidings_core::Core;

use crate::keyring::Keyring;
use crate::keys::ServerKey;
use crate::peer::{Peer, PeerStats};

/// Federation with the configured peers.
#[derive(Debug)]
pub struct Federation {
    core: Core,
    key: ServerKey,
    keyring: Keyring,
    peers: HashMap<String, Arc<Peer>>,
    http: reqwest::Client,
    batch_ms: u64,
    short_watchdog_ms: u64,
    long_watchdog_ms: u64,
    max_body: usize,
}

impl Federation {
    /// Federation for `core`, signing with `key`.
    pub fn new(core: Core, key: ServerKey, config: &FederationConfig, batch_ms: u64, max_body: usize) -> Arc<Self> {
        let peers = config
            .peers
            .iter()
            .map(|p| {
                (
                    p.server_name.clone(),
                    Arc::new(Peer::new(
                        &core.server_name,
                        p.clone(),
                        config.short_watchdog_ms,
                        config.long_watchdog_ms,
                    )),
                )
            })
            .collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Self {
            keyring: Keyring::with_client(http.clone(), Arc::clone(&core.clock)),
            core,
            key,
            peers,
            http,
            batch_ms,
            short_watchdog_ms: config.short_watchdog_ms,
            long_watchdog_ms: config.long_watchdog_ms,
            max_body,
        })
    }

    /// Run every peer's sender and the watchdogs until the process ends. Nothing here
    /// needs a clean stop: what is queued is on disk, and a transaction in flight is
    /// sent again with the same txnId after a restart.
    pub async fn run(self: Arc<Self>) {
        for peer in self.peers.values() {
            tokio::spawn(Arc::clone(&self).run_sender(Arc::clone(peer)));
        }
        self.run_watchdogs().await;
    }

    /// Check every peer's timers on a tick fine enough for both periods: a hundredth of
    /// the short one, so the two ends of a link (whose short periods differ by a few
    /// percent) do not fire on the same tick, and a four-hundredth of the long one, so
    /// staggered long expiries are not gathered onto one tick.
    async fn run_watchdogs(&self) {
        let tick = (self.short_watchdog_ms / 100).min(self.long_watchdog_ms / 400);
        let tick = Duration::from_millis(tick.clamp(5, 1000));
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let now = self.core.clock.now_ms();
            for peer in self.peers.values() {
                let active = self.core.presence.has_subscriptions_with(peer.name());
                let due = {
                    let mut w = peer.watchdog();
                    w.set_active(active, now);
                    w.poll(now)
                };
                if due.reminder {
                    peer.reminder_due.store(true, Ordering::SeqCst);
                    self.core.outbound.wake(peer.name());
                }
                if due.went_stale {
                    self.core.presence.mark_remote_unknown(peer.name());
                    peer.resubscribe.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Each peer's watchdogs, queue and traffic, for the admin API.
    pub async fn peer_stats(&self) -> Vec<Value> {
        let mut names: Vec<&String> = self.peers.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(peer) = self.peers.get(name) else { continue };
            let s = &peer.stats;
            let (short, long) = {
                let w = peer.watchdog();
                (w.short_due(), w.long_due())
            };
            let last = PeerStats::get(&s.last_received_ts);
            out.push(json!({
                "server_name": name,
                "last_received_ts": (last > 0).then_some(last),
                "short_watchdog_due_ts": short,
                "long_watchdog_due_ts": long,
                "queue_len": self.core.outbound.queue_len(name).await.unwrap_or(0),
                "txns_sent": PeerStats::get(&s.txns_sent),
                "txns_received": PeerStats::get(&s.txns_received),
                "bytes_sent": PeerStats::get(&s.bytes_sent),
                "bytes_received": PeerStats::get(&s.bytes_received),
            }));
        }
        out
    }
}
