//! The server-server carrier of Tidings: signing keys, X-Matrix authentication, the
//! per-destination sender, and the [`transport::Transport`] that carries stored
//! transactions (HTTP first). What is said to whom, and what arrives means, is core's
//! (`tidings_core::exchange`); this crate only carries it. See spec/federation.md.

pub mod config;
pub mod http;
pub mod keyring;
pub mod keys;
pub mod link;
pub mod peer;
pub mod receiver;
pub mod routes;
pub mod sender;
pub mod transport;
pub mod xmatrix;

use std::collections::HashMap;
use std::sync::Arc;

pub use config::{FederationConfig, PeerConfig};
use tidings_core::Core;

use crate::keyring::Keyring;
use crate::keys::ServerKey;
use crate::peer::{Peer, PeerStats};
use crate::transport::Transport;

/// Federation with the configured peers.
#[derive(Debug)]
pub struct Federation {
    core: Core,
    key: Arc<ServerKey>,
    receiver: receiver::Receiver,
    peers: Arc<HashMap<String, Arc<Peer>>>,
    transport: Arc<dyn Transport>,
    max_body: usize,
    /// The static link key, published in the key document (when links are configured).
    link_key: Option<Arc<link::LinkKey>>,
    links: Option<Arc<link::Links>>,
}

/// One peer as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// The peer's server name.
    pub server_name: String,
    /// Unix ms of the last verified request from it.
    pub last_received_ts: Option<u64>,
    /// When its short watchdog fires next.
    pub short_watchdog_due_ts: Option<u64>,
    /// When its long watchdog fires next.
    pub long_watchdog_due_ts: Option<u64>,
    /// EDUs waiting for it (queued, or in the transaction in flight).
    pub queue_len: u64,
    /// Transactions it acknowledged.
    pub txns_sent: u64,
    /// Transactions received from it.
    pub txns_received: u64,
    /// Bytes sent to it, headers included.
    pub bytes_sent: u64,
    /// Bytes received from it, headers included.
    pub bytes_received: u64,
    /// Bytes by what they carried, `[control, presence, short, bulk]`: for a linked
    /// peer what this side wrote on the line ([`link::LinkStatus::bytes_sent_by_class`]);
    /// for an HTTP peer the request and answer bytes of the transactions this side
    /// sent, by their class (control is 0: HTTP has no frames of its own).
    pub bytes_by_class: [u64; 4],
    /// `http` or `link`.
    pub transport: &'static str,
    /// The link's state and figures, for a linked peer.
    pub link: Option<link::LinkStatus>,
}

impl Federation {
    /// Federation for `core`, signing with `key`, over the HTTP transport. Transactions
    /// and key fetches share one client, TLS-verified as [`http::HttpTransport::client`]
    /// says; it fails when `federation.ca_file` cannot be used.
    pub fn new(core: Core, key: ServerKey, config: &FederationConfig, max_body: usize) -> Result<Arc<Self>, String> {
        let key = Arc::new(key);
        let http = http::HttpTransport::client(config)?;
        let transport = Arc::new(http::HttpTransport::new(http.clone(), Arc::clone(&key), &core.server_name));
        Ok(Self::with_transport(core, key, config, max_body, http, transport))
    }

    /// Federation for `core` with links: peers with `link` set are reached over the
    /// link ([`link::LinkTransport`]), the others over HTTP. `link_key` is published in
    /// the key document either way, so peers can dial this server. A peer's
    /// `link_key`, when set, is pinned: its key document is never fetched for the link.
    pub fn with_links(
        core: Core,
        key: ServerKey,
        config: &FederationConfig,
        link_config: &link::LinkConfig,
        link_key: link::LinkKey,
        max_body: usize,
    ) -> Result<Arc<Self>, String> {
        let key = Arc::new(key);
        let http = http::HttpTransport::client(config)?;
        let over_http: Arc<dyn Transport> =
            Arc::new(http::HttpTransport::new(http.clone(), Arc::clone(&key), &core.server_name));
        let peers = Self::peer_map(config);
        // Peers whose link key the configuration pins are never asked for it.
        let mut pins = Vec::new();
        for p in &config.peers {
            if let Some(pinned) = p.pinned_link_key()? {
                pins.push((p.server_name.clone(), pinned));
            }
        }
        let keyring = Arc::new(Keyring::with_client(http, Arc::clone(&core.clock)).with_pinned_link_keys(pins));
        let link_key = Arc::new(link_key);
        let inbound = Arc::new(link::transport::LinkInbound {
            exchange: Arc::clone(&core.exchange),
            peers: Arc::clone(&peers),
            clock: Arc::clone(&core.clock),
        });
        let links = Arc::new(link::Links::new(
            &core.server_name,
            Arc::clone(&link_key),
            link_config,
            config,
            Arc::clone(&keyring),
            inbound,
            max_body,
        ));
        let transport = Arc::new(link::LinkTransport::new(Arc::clone(&links), over_http));
        let receiver =
            receiver::Receiver::new(&core.server_name, Arc::clone(&core.exchange), keyring, Arc::clone(&peers));
        Ok(Arc::new(Self {
            receiver,
            core,
            key,
            peers,
            transport,
            max_body,
            link_key: Some(link_key),
            links: Some(links),
        }))
    }

    fn peer_map(config: &FederationConfig) -> Arc<HashMap<String, Arc<Peer>>> {
        Arc::new(config.peers.iter().map(|p| (p.server_name.clone(), Arc::new(Peer::new(p.clone())))).collect())
    }

    /// Federation over a given transport (the link, or a test's).
    pub fn with_transport(
        core: Core,
        key: Arc<ServerKey>,
        config: &FederationConfig,
        max_body: usize,
        http: reqwest::Client,
        transport: Arc<dyn Transport>,
    ) -> Arc<Self> {
        let peers = Self::peer_map(config);
        let keyring = Arc::new(Keyring::with_client(http, Arc::clone(&core.clock)));
        let receiver =
            receiver::Receiver::new(&core.server_name, Arc::clone(&core.exchange), keyring, Arc::clone(&peers));
        Arc::new(Self { receiver, core, key, peers, transport, max_body, link_key: None, links: None })
    }

    /// Run every peer's sender until the process ends. Nothing here needs a clean
    /// stop: what is queued is on disk, and a transaction in flight is sent again
    /// with the same txnId after a restart.
    pub async fn run(self: Arc<Self>) {
        if let Some(links) = &self.links {
            tokio::spawn(Arc::clone(links).run());
        }
        let senders: Vec<_> = self
            .peers
            .values()
            .flat_map(|peer| tidings_core::lanes::Lane::ALL.map(|lane| (peer, lane)))
            .map(|(peer, lane)| {
                let sender = sender::Sender {
                    exchange: Arc::clone(&self.core.exchange),
                    transport: Arc::clone(&self.transport),
                    peer: Arc::clone(peer),
                    lane,
                };
                tokio::spawn(sender.run())
            })
            .collect();
        for sender in senders {
            let _ = sender.await;
        }
    }

    /// Each peer's watchdogs, queue and traffic, sorted by name.
    pub async fn peer_status(&self) -> Vec<PeerStatus> {
        let mut names: Vec<&String> = self.peers.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(peer) = self.peers.get(name) else { continue };
            let s = &peer.stats;
            let due = self.core.presence_peers.watchdog_due(name);
            let last = PeerStats::get(&s.last_received_ts);
            let link = self.links.as_ref().and_then(|l| l.status(name));
            out.push(PeerStatus {
                server_name: name.clone(),
                last_received_ts: (last > 0).then_some(last),
                short_watchdog_due_ts: due.short,
                long_watchdog_due_ts: due.long,
                queue_len: self.core.outbound.queue_len(name).await.unwrap_or(0),
                txns_sent: PeerStats::get(&s.txns_sent),
                txns_received: PeerStats::get(&s.txns_received),
                bytes_sent: PeerStats::get(&s.bytes_sent) + link.as_ref().map_or(0, |l| l.bytes_sent),
                bytes_received: PeerStats::get(&s.bytes_received) + link.as_ref().map_or(0, |l| l.bytes_received),
                bytes_by_class: match &link {
                    Some(l) => l.bytes_sent_by_class,
                    None => {
                        let c = &s.exchange_bytes_by_class;
                        [0, PeerStats::get(&c[0]), PeerStats::get(&c[1]), PeerStats::get(&c[2])]
                    }
                },
                transport: if link.is_some() { "link" } else { "http" },
                link,
            });
        }
        out
    }
}
