//! The seam between the sender and the wire: a [`Transport`] delivers one stored
//! transaction to one peer and says what it cost. HTTP ([`crate::http::HttpTransport`],
//! Matrix's `PUT /send/{txnId}` with X-Matrix) is the first; the link for thin lines
//! is the next. A transport knows nothing of what the transaction carries, and
//! nothing above it knows which transport carried it.

use std::future::Future;
use std::pin::Pin;

use tidings_core::exchange::TXN_BYTES;
use tidings_core::lanes::Lane;
use tidings_core::outbound::{Outbound, StoredTxn};

use crate::config::PeerConfig;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one delivery attempt cost, delivered or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes put on the wire towards the peer.
    pub bytes_sent: u64,
    /// Bytes received from the peer.
    pub bytes_received: u64,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `Ok` when the peer acknowledged the transaction (a 2xx), else why not.
    pub result: Result<(), String>,
    /// What the attempt cost.
    pub traffic: Traffic,
    /// From sending to the answer, when there was an answer.
    pub rtt_ms: Option<u64>,
}

/// Carries transactions to peers.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Deliver `txn` to `peer` once; the sender retries with the same transaction.
    /// `replaceable`: the sender gives this attempt up for a newer transaction when
    /// something newer is due ([`Transport::replaces`]), so its ack is not urgent (the
    /// link then lets a small one's ack wait for a message that goes anyway).
    fn deliver<'a>(&'a self, peer: &'a PeerConfig, txn: &'a StoredTxn, replaceable: bool) -> BoxFuture<'a, Delivery>;

    /// The most queued EDU bytes one transaction of `lane` to `peer` should carry. A
    /// transaction is applied only when all of it arrived, and a cut repeats all of it,
    /// so a slow line wants smaller ones: each is a partial result the far side applies
    /// as it arrives. By default core's [`TXN_BYTES`] (256 KiB).
    fn txn_bytes(&self, peer: &PeerConfig, lane: Lane) -> usize {
        let _ = (peer, lane);
        TXN_BYTES
    }

    /// Whether a replaceable transaction to `peer` waiting for its ack may give way to
    /// a newer one ([`tidings_core::exchange::Exchange::replace_transaction`]): worth it
    /// where an ack takes long (a thin line's round trip is seconds, and a change made
    /// meanwhile would wait for it). The abandoned delivery is dropped, so the
    /// transport must not mind (the link: its ack just finds nobody waiting). By
    /// default: no.
    fn replaces(&self, peer: &PeerConfig) -> bool {
        let _ = peer;
        false
    }

    /// Wait, before the next transaction of `lane` is gathered for `peer`, until the
    /// line should carry it: a line that calls holds it until the oldest thing waiting
    /// ([`Outbound::waiting`]) reaches its kind's maximum wait, or a call is up. What
    /// waits meanwhile keeps coalescing in core. The sender keeps the [`Hold`] while it
    /// gathers and delivers: a call that is up is not hung up under it. By default: at
    /// once, holding nothing.
    fn hold<'a>(&'a self, peer: &'a PeerConfig, lane: Lane, outbound: &'a Outbound) -> BoxFuture<'a, Hold> {
        let _ = (peer, lane, outbound);
        Box::pin(async { Hold::default() })
    }
}

/// What [`Transport::hold`] gives the sender to keep while it gathers and delivers
/// the transaction it let go: a line that calls does not hang up a call while a
/// sender is about to use it (the gather reads the database; at a thin line's idle
/// hang-up of a few seconds that can be the whole margin).
#[derive(Default)]
pub struct Hold(Option<Box<dyn Send + Sync>>);

impl Hold {
    /// A hold on `what` until the sender is done (dropping `what` lets go).
    pub fn on(what: impl Send + Sync + 'static) -> Self {
        Self(Some(Box::new(what)))
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Hold(held)" } else { "Hold(none)" })
    }
}
