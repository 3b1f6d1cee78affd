//! `PUT /_matrix/federation/v1/send/{txnId}`: verify who sent it, then hand the
//! transaction to core, which acknowledges a retry without applying it twice and
//! applies the rest atomically. An EDU core refuses is logged and dropped; the
//! transaction still gets 200.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use tidings_core::clock::SharedClock;
use tidings_core::exchange::{Exchange, IncomingEdu};
use tidings_core::{Error, ErrorKind};

use crate::keyring::{Keyring, REFETCH_INTERVAL_MS};
use crate::peer::{Peer, PeerStats};
use crate::xmatrix::{self, AuthError};

/// The parts of a transaction Tidings reads.
#[derive(Debug, Deserialize)]
pub struct Transaction {
    /// The sending server, which must match the X-Matrix origin.
    pub origin: String,
    /// EDUs.
    #[serde(default)]
    pub edus: Vec<Edu>,
}

/// One EDU.
#[derive(Debug, Deserialize)]
pub struct Edu {
    /// Its type.
    pub edu_type: String,
    /// Its content.
    #[serde(default)]
    pub content: Value,
}

fn unauthorized(reason: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, reason)
}

/// Verifies requests from peers and hands their transactions to core.
#[derive(Debug)]
pub struct Receiver {
    server_name: String,
    exchange: Arc<Exchange>,
    keyring: Arc<Keyring>,
    peers: Arc<HashMap<String, Arc<Peer>>>,
    refusals: RefusalLog,
}

impl Receiver {
    /// A receiver for `server_name`'s peers.
    pub fn new(
        server_name: &str,
        exchange: Arc<Exchange>,
        keyring: Arc<Keyring>,
        peers: Arc<HashMap<String, Arc<Peer>>>,
    ) -> Self {
        let refusals = RefusalLog { clock: Arc::clone(keyring.clock()), origins: Mutex::new(HashMap::new()) };
        Self { server_name: server_name.to_owned(), exchange, keyring, peers, refusals }
    }

    /// Check the X-Matrix header of a request; on a verification failure the
    /// peer's keys are fetched again once before refusing, at most once a minute per
    /// peer (see [`Keyring`]). Refusals are logged at most once per interval per origin.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        method: &str,
        uri: &str,
        content: Option<&Value>,
    ) -> Result<Arc<Peer>, Error> {
        let header = header.ok_or_else(|| unauthorized("missing X-Matrix authorization"))?;
        let auth = xmatrix::parse_authorization(header).map_err(|e| unauthorized(e.to_string()))?;
        let peer = self
            .peers
            .get(&auth.origin)
            .cloned()
            .ok_or_else(|| unauthorized(format!("{} is not a peer of this server", auth.origin)))?;
        let checked = self
            .keyring
            .verify_with(&auth.origin, &auth.key, &peer.config.url, |key| {
                xmatrix::verify_request(&auth, &self.server_name, method, uri, content, key)
            })
            .await;
        match checked {
            Ok(()) => Ok(peer),
            Err(e) => {
                self.refusals.note(&auth.origin, &e);
                Err(unauthorized(e.to_string()))
            }
        }
    }

    /// Apply a verified transaction from `peer`, all of it or nothing: core checks
    /// it, applies its EDUs and records its txnId in one database transaction. A
    /// failure that is not the sender's fault is an error (5xx), so it retries.
    pub async fn receive(&self, peer: &Peer, txn_id: &str, txn: Transaction) -> Result<(), Error> {
        let origin = peer.name();
        if txn.origin != origin {
            return Err(unauthorized(format!("the body's origin {} is not the signer {origin}", txn.origin)));
        }
        PeerStats::add(&peer.stats.txns_received, 1);
        let edus = txn.edus.into_iter().map(|e| IncomingEdu { edu_type: e.edu_type, content: e.content }).collect();
        self.exchange.receive(origin, txn_id, edus).await?;
        Ok(())
    }
}

/// Refused requests per origin, logged once per [`REFETCH_INTERVAL_MS`] with a count,
/// so a peer (or a forger naming it) that keeps failing fills no log.
#[derive(Debug)]
struct RefusalLog {
    clock: SharedClock,
    /// Origin → (when last logged, refusals since then not logged).
    origins: Mutex<HashMap<String, (u64, u64)>>,
}

impl RefusalLog {
    fn note(&self, origin: &str, error: &AuthError) {
        let now = self.clock.now_ms();
        let suppressed = {
            let mut origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
            // Only configured peers get here, so the map is bounded by the peer map.
            let (last, count) = origins.entry(origin.to_owned()).or_insert((0, 0));
            if *last != 0 && now < last.saturating_add(REFETCH_INTERVAL_MS) {
                *count += 1;
                return;
            }
            let suppressed = *count;
            *last = now.max(1);
            *count = 0;
            suppressed
        };
        tracing::warn!(%origin, error = %error, suppressed, "refused a federation request (repeats within a minute are counted, not logged)");
    }
}
