//! The sender of one peer and lane: wait until its batch window closes (core runs the
//! windows), take the transaction core gathers and stores for the lane, and deliver it
//! through the peer's transport until the peer acknowledges it, with the same txnId on
//! every retry and across restarts. Each lane ([`Lane`]) of a peer has its own sender,
//! so a bulk transaction in flight never holds presence back.

use std::sync::Arc;
use std::time::Duration;

use tidings_core::exchange::{Exchange, Gathered};
use tidings_core::lanes::Lane;
use tidings_core::outbound::StoredTxn;

use crate::peer::{Peer, PeerStats};
use crate::transport::Transport;

/// The first retry delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to wait after the database failed before trying again.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// The sender of one peer.
#[derive(Debug)]
pub struct Sender {
    /// What to send, from core.
    pub exchange: Arc<Exchange>,
    /// How it travels.
    pub transport: Arc<dyn Transport>,
    /// To whom.
    pub peer: Arc<Peer>,
    /// Which lane of transactions.
    pub lane: Lane,
}

impl Sender {
    /// Run forever.
    pub async fn run(self) {
        let peer = Arc::clone(&self.peer);
        let dest = peer.name().to_owned();
        let exchange = Arc::clone(&self.exchange);
        // At start there may be a stored transaction, queued EDUs or presence past the cursor.
        let mut look_now = true;
        loop {
            match exchange.pending(&dest, self.lane).await {
                Ok(Some(txn)) => {
                    // Stored before a restart: what it carries is not known, so it is
                    // not replaced.
                    self.deliver(&peer, txn, false).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(peer = %dest, error = %e, "cannot read the stored transaction; retrying");
                    tokio::time::sleep(STORAGE_RETRY).await;
                    continue;
                }
            }
            if !look_now {
                exchange.outbound().ready(&dest, self.lane).await;
            }
            // A line that calls gathers only when it is time to call (or a call is up),
            // and keeps the call up until this iteration delivered what it gathered.
            let _call = self.transport.hold(&peer.config, self.lane, exchange.outbound()).await;
            let max_bytes = self.transport.txn_bytes(&peer.config, self.lane);
            match exchange.next_transaction(&dest, self.lane, max_bytes).await {
                Ok(gathered) => {
                    // A full transaction left rows behind: their wake-up was spent on
                    // this one, so gather again as soon as it is acknowledged.
                    look_now = gathered.more;
                    if let Some(txn) = gathered.txn {
                        look_now |= self.deliver(&peer, txn, gathered.replaceable).await;
                    }
                }
                Err(e) => {
                    tracing::error!(peer = %dest, error = %e, "cannot form a transaction; retrying");
                    look_now = true;
                    tokio::time::sleep(STORAGE_RETRY).await;
                }
            }
        }
    }

    /// Deliver a stored transaction until the peer acknowledges it. A `replaceable`
    /// one may give way to a newer one while it waits (see [`Self::attempt`]); says
    /// whether the last one delivered left outbox rows behind.
    async fn deliver(&self, peer: &Peer, mut txn: StoredTxn, mut replaceable: bool) -> bool {
        let mut backoff = FIRST_BACKOFF;
        let mut more = false;
        loop {
            let delivery = match self.attempt(peer, &txn, replaceable).await {
                Attempt::Delivered(delivery) => delivery,
                Attempt::Replaced { txn: newer, replaceable: r, more: m } => {
                    (txn, replaceable, more) = (newer, r, m);
                    continue;
                }
            };
            PeerStats::add(&peer.stats.bytes_sent, delivery.traffic.bytes_sent);
            PeerStats::add(&peer.stats.bytes_received, delivery.traffic.bytes_received);
            let class = crate::link::transport::class_of(&txn);
            PeerStats::add(
                &peer.stats.exchange_bytes_by_class[class.index()],
                delivery.traffic.bytes_sent + delivery.traffic.bytes_received,
            );
            if let Some(rtt) = delivery.rtt_ms {
                peer.stats.rtt_ms.store(rtt, std::sync::atomic::Ordering::Relaxed);
            }
            match delivery.result {
                Ok(()) => {
                    self.exchange.heard(peer.name());
                    loop {
                        match self.exchange.acknowledged(peer.name(), txn.clone()).await {
                            Ok(()) => break,
                            Err(e) => {
                                tracing::error!(peer = peer.name(), error = %e, "cannot record an acknowledged transaction");
                                tokio::time::sleep(STORAGE_RETRY).await;
                            }
                        }
                    }
                    PeerStats::add(&peer.stats.txns_sent, 1);
                    return more;
                }
                Err(reason) => {
                    tracing::warn!(peer = peer.name(), txn = %txn.txn_id, %reason, retry_in_ms = backoff.as_millis() as u64, "transaction not delivered");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = peer.heard.notified() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One delivery attempt of `txn`. When it is `replaceable`, the transport allows
    /// it, and the batch window closes again while the ack is awaited (something newer
    /// is due), a newer transaction is gathered from the same cursor in its place
    /// ([`Exchange::replace_transaction`]) and this attempt is abandoned for it: a
    /// change made during a thin line's round trip goes at once instead of waiting for
    /// the previous one's ack.
    async fn attempt(&self, peer: &Peer, txn: &StoredTxn, replaceable: bool) -> Attempt {
        let mut may_replace = replaceable && self.transport.replaces(&peer.config);
        let delivery = self.transport.deliver(&peer.config, txn, may_replace);
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                delivery = &mut delivery => return Attempt::Delivered(delivery),
                () = self.exchange.outbound().ready(peer.name(), self.lane), if may_replace => {
                    let max_bytes = self.transport.txn_bytes(&peer.config, self.lane);
                    match self.exchange.replace_transaction(peer.name(), txn, max_bytes).await {
                        Ok(Some(Gathered { txn: Some(txn), replaceable, more })) => {
                            return Attempt::Replaced { txn, replaceable, more };
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(peer = peer.name(), error = %e, "cannot replace a transaction in flight; it goes on");
                            may_replace = false;
                        }
                    }
                }
            }
        }
    }
}

/// How one delivery attempt ended.
enum Attempt {
    /// The transport answered.
    Delivered(crate::transport::Delivery),
    /// A newer transaction took its place (stored); deliver that one.
    Replaced {
        /// The newer transaction.
        txn: StoredTxn,
        /// Whether it may be replaced in turn.
        replaceable: bool,
        /// Whether it left outbox rows behind.
        more: bool,
    },
}
