//! `PUT /_matrix/federation/v1/send/{txnId}`: verify who sent it, then hand the
//! transaction to core, which acknowledges a retry without applying it twice and
//! applies the rest atomically. An EDU core refuses is logged and dropped; the
//! transaction still gets 200.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tidings_core::exchange::{Exchange, IncomingEdu};
use tidings_core::{Error, ErrorKind};

use crate::keyring::Keyring;
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
    keyring: Keyring,
    peers: Arc<HashMap<String, Arc<Peer>>>,
}

impl Receiver {
    /// A receiver for `server_name`'s peers.
    pub fn new(
        server_name: &str,
        exchange: Arc<Exchange>,
        keyring: Keyring,
        peers: Arc<HashMap<String, Arc<Peer>>>,
    ) -> Self {
        Self { server_name: server_name.to_owned(), exchange, keyring, peers }
    }

    /// Check the X-Matrix header of a request; on a verification failure the
    /// peer's key is fetched again once before refusing.
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
        let mut refetched = false;
        loop {
            let key = match self.keyring.key_for(&auth.origin, &auth.key, &peer.config.url).await {
                Ok(key) => key,
                Err(e) if !refetched => {
                    tracing::debug!(origin = %auth.origin, error = %e, "key lookup failed; fetching again");
                    self.keyring.forget(&auth.origin);
                    refetched = true;
                    continue;
                }
                Err(e) => return Err(unauthorized(e.to_string())),
            };
            match xmatrix::verify_request(&auth, &self.server_name, method, uri, content, &key) {
                Ok(()) => return Ok(peer),
                Err(AuthError::BadSignature | AuthError::UnknownKey) if !refetched => {
                    self.keyring.forget(&auth.origin);
                    refetched = true;
                }
                Err(e) => {
                    tracing::warn!(origin = %auth.origin, error = %e, "refused a federation request");
                    return Err(unauthorized(e.to_string()));
                }
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
