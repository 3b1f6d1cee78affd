//! `PUT /_matrix/federation/v1/send/{txnId}`: verify who sent it, acknowledge a
//! retry without applying it twice, apply each EDU through core. An EDU core refuses
//! is logged and dropped; the transaction still gets 200.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::Value;
use tidings_core::outbound::edus::{self, AnswerEdu, PresenceEdu, ReminderEdu, SubscribeEdu, WatchEdge};
use tidings_core::{Error, ErrorKind};

use crate::Federation;
use crate::peer::{Peer, PeerStats};
use crate::sender::MAX_EDUS;
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

impl Federation {
    /// Check the X-Matrix header of a request; on a verification failure the
    /// peer's key is fetched again once before refusing.
    pub(crate) async fn authenticate(
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
            match xmatrix::verify_request(&auth, &self.core.server_name, method, uri, content, &key) {
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

    /// Apply a verified transaction from `peer`.
    pub(crate) async fn receive(&self, peer: &Peer, txn_id: &str, txn: Transaction) -> Result<(), Error> {
        let origin = peer.name();
        if txn.origin != origin {
            return Err(unauthorized(format!("the body's origin {} is not the signer {origin}", txn.origin)));
        }
        if txn.edus.len() > MAX_EDUS {
            return Err(Error::new(ErrorKind::BadJson, format!("at most {MAX_EDUS} EDUs per transaction")));
        }
        PeerStats::add(&peer.stats.txns_received, 1);
        let outbound = &self.core.outbound;
        if outbound.was_received(origin, txn_id).await? {
            tracing::debug!(%origin, txn_id, "transaction seen before: acknowledged, not applied again");
            return Ok(());
        }
        for edu in txn.edus {
            if let Err(reason) = self.apply(peer, edu).await {
                tracing::info!(%origin, %reason, "dropped an EDU");
            }
        }
        outbound.mark_received(origin, txn_id).await?;
        Ok(())
    }

    async fn apply(&self, peer: &Peer, edu: Edu) -> Result<(), String> {
        let origin = peer.name();
        let presence = &self.core.presence;
        let parse_err = |e: serde_json::Error| format!("bad {} content: {e}", edu.edu_type);
        match edu.edu_type.as_str() {
            edus::PRESENCE => {
                let content: PresenceEdu = serde_json::from_value(edu.content).map_err(parse_err)?;
                let refused: Vec<String> =
                    content.push.into_iter().filter_map(|u| presence.apply_remote_presence(origin, u).err()).collect();
                if refused.is_empty() { Ok(()) } else { Err(refused.join("; ")) }
            }
            edus::INVITE => {
                let content: WatchEdge = serde_json::from_value(edu.content).map_err(parse_err)?;
                presence.apply_remote_invite(origin, content).await
            }
            edus::ANSWER => {
                let content: AnswerEdu = serde_json::from_value(edu.content).map_err(parse_err)?;
                presence.apply_remote_answer(origin, content).await
            }
            edus::DROP => {
                let content: WatchEdge = serde_json::from_value(edu.content).map_err(parse_err)?;
                presence.apply_remote_drop(origin, content).await
            }
            edus::SUBSCRIBE => {
                let content: SubscribeEdu = serde_json::from_value(edu.content).map_err(parse_err)?;
                let refused = presence.apply_remote_subscribe(origin, content).await?;
                if refused.is_empty() { Ok(()) } else { Err(refused.join("; ")) }
            }
            edus::REMINDER => {
                let content: ReminderEdu = serde_json::from_value(edu.content).map_err(parse_err)?;
                peer.watchdog().reminded(self.core.clock.now_ms());
                // Its reminder checked both directions (both digests): ours is not needed.
                peer.reminder_due.store(false, Ordering::SeqCst);
                if content.held != presence.digest_pushed(origin) {
                    // What the peer holds of our users differs: push it all again.
                    self.core.outbound.owe(origin, presence.pushable_to(origin));
                }
                if content.pushed != presence.digest_held(origin) {
                    // What we hold of theirs differs: ask again for all of it.
                    peer.resubscribe.store(true, Ordering::SeqCst);
                    self.core.outbound.wake(origin);
                }
                Ok(())
            }
            other => Err(format!("unknown EDU type {other}")),
        }
    }
}
