//! What crosses between this server and its peers, as core sees it: transactions of
//! EDUs. Core decides what each peer must be told and applies what peers tell it;
//! the federation crate only carries transactions (keys, auth, transports).
//!
//! Every kind of thing a peer gets is an [`EduFamily`]: a typed codec for its EDUs,
//! the handler that applies them, and what to gather for a destination. Presence
//! (with consent and subscriptions) is the first family; feeds and posts come next.
//!
//! - **Receiving is atomic.** Checking a transaction, applying every EDU in it and
//!   recording its txnId happen in one database transaction. A malformed or refused
//!   EDU is dropped and logged, and the transaction still succeeds; a failure that is
//!   not the sender's fault fails the whole transaction, nothing of it is applied,
//!   and the sender is answered 5xx so it retries the same txnId.
//! - **Sending is durable.** [`Exchange::next_transaction`] gathers what is due into
//!   one transaction and stores it before its first send; it is resent as it is until
//!   acknowledged, across restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::error::{Error, ErrorKind, Result};
use crate::lanes::Lane;
use crate::outbound::{Outbound, StoredTxn};
use crate::storage::{Db, Unit};
use crate::sync::BoxFuture;

/// The most EDUs in one transaction (the spec's limit).
pub const MAX_EDUS: usize = 100;

/// Queued EDU content bytes one transaction carries at most (feed items are large;
/// a peer's request limit is 1 MiB by default). A transport may ask for less
/// ([`Exchange::next_transaction`]'s `max_bytes`).
pub const TXN_BYTES: usize = 256 * 1024;

/// What [`Exchange::next_transaction`] gathered.
#[derive(Debug)]
pub struct Gathered {
    /// The transaction, stored; `None` when nothing was due.
    pub txn: Option<StoredTxn>,
    /// Outbox rows of the lane were left for the next transaction (it was full): the
    /// sender must gather again once this one is acknowledged, without waiting for a
    /// wake-up that already happened.
    pub more: bool,
    /// Everything in it is state that a later gather from the same cursor carries
    /// again, newest first (presence pushes: the cursor only advances on the ack), so
    /// while it waits for its ack a newer transaction may replace it
    /// ([`Exchange::replace_transaction`]) instead of waiting behind it.
    pub replaceable: bool,
}

/// One EDU of an incoming transaction.
#[derive(Debug, Clone)]
pub struct IncomingEdu {
    /// Its type.
    pub edu_type: String,
    /// Its content.
    pub content: Value,
}

/// What became of one incoming EDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Its effects are in the unit.
    Applied,
    /// Dropped, with the reason (logged; the transaction still succeeds).
    Refused(String),
}

/// What one transaction to a destination carries, as the families fill it.
#[derive(Default)]
pub struct Batch {
    /// The EDUs, as `{"edu_type", "content"}` objects.
    pub edus: Vec<Value>,
    /// The presence stream position this batch covers, committed as the
    /// destination's cursor when it is acknowledged.
    pub cursor: Option<u64>,
    /// Something in it will not be gathered again (an answer owed, a subscription, a
    /// reminder): see [`Gathered::replaceable`].
    one_off: bool,
    stored: Vec<Box<dyn FnOnce(bool) + Send>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("edus", &self.edus.len()).field("cursor", &self.cursor).finish()
    }
}

impl Batch {
    /// Add one EDU.
    pub fn push(&mut self, edu_type: &str, content: impl serde::Serialize) {
        self.edus.push(json!({ "edu_type": edu_type, "content": content }));
    }

    /// Mark that the batch carries something a later gather from the same cursor would
    /// not carry again, so its transaction must not be replaced by a newer one.
    pub fn one_off(&mut self) {
        self.one_off = true;
    }

    /// How many more EDUs fit.
    pub fn room(&self) -> usize {
        MAX_EDUS.saturating_sub(self.edus.len())
    }

    /// Run `f` once the batch was stored as a transaction (`true`) or could not be
    /// (`false`: put back what was taken for it).
    pub fn on_stored(&mut self, f: impl FnOnce(bool) + Send + 'static) {
        self.stored.push(Box::new(f));
    }

    fn stored(self, ok: bool) {
        for f in self.stored {
            f(ok);
        }
    }
}

/// One kind of thing peers exchange: its EDU types, how to apply them, what to send.
pub trait EduFamily: Send + Sync + std::fmt::Debug {
    /// The EDU types this family reads.
    fn edu_types(&self) -> &'static [&'static str];

    /// Check one EDU from `origin` and add its effects to `unit` (writes, and what to
    /// do in memory once they committed). An `Err` fails the whole transaction.
    fn receive<'a>(&'a self, origin: &'a str, edu: IncomingEdu, unit: &'a mut Unit) -> BoxFuture<'a, Result<Handled>>;

    /// Add what is due for `destination` to `batch`.
    fn gather<'a>(&'a self, destination: &'a str, batch: &'a mut Batch) -> BoxFuture<'a, Result<()>>;

    /// `peer` was heard from (a verified request, or a 2xx answer) at `now`.
    fn heard(&self, peer: &str, now: u64);

    /// The lane this family's gathered EDUs travel in: by default the lane of its
    /// first EDU type ([`Lane::of_edu_type`]), so `tidings.feed_*` families are bulk.
    fn lane(&self) -> Lane {
        self.edu_types().first().map_or(Lane::Presence, |t| Lane::of_edu_type(t))
    }
}

/// Whether an incoming transaction was applied now or before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Applied now.
    Applied,
    /// Seen before: acknowledged again, not applied twice.
    Replay,
}

/// Transactions in and out, for every peer.
#[derive(Debug)]
pub struct Exchange {
    server_name: String,
    db: Db,
    clock: SharedClock,
    outbound: Arc<Outbound>,
    families: Vec<Arc<dyn EduFamily>>,
    by_type: HashMap<&'static str, usize>,
    /// One transaction of an origin applied at a time, so a retry racing its
    /// original is seen as a replay.
    receiving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The 8 hex digits of the next txnId: counted up from a random start. With the
    /// gather's ms they keep txnIds unique, across restarts too (a new random start),
    /// and consecutive ones differ by little, which the link writes in a byte.
    next_suffix: std::sync::atomic::AtomicU32,
}

impl Exchange {
    /// The exchange over `families`.
    pub fn new(
        server_name: &str,
        db: Db,
        clock: SharedClock,
        outbound: Arc<Outbound>,
        families: Vec<Arc<dyn EduFamily>>,
    ) -> Self {
        let mut by_type = HashMap::new();
        for (i, family) in families.iter().enumerate() {
            for t in family.edu_types() {
                by_type.insert(*t, i);
            }
        }
        Self {
            server_name: server_name.to_owned(),
            db,
            clock,
            outbound,
            families,
            by_type,
            receiving: Mutex::new(HashMap::new()),
            next_suffix: std::sync::atomic::AtomicU32::new(rand::thread_rng().r#gen()),
        }
    }

    /// The queues and wake-ups of every destination.
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// `peer` was heard from now.
    pub fn heard(&self, peer: &str) {
        let now = self.clock.now_ms();
        for family in &self.families {
            family.heard(peer, now);
        }
    }

    /// Apply a verified transaction from `origin`, all of it or nothing.
    pub async fn receive(&self, origin: &str, txn_id: &str, edus: Vec<IncomingEdu>) -> Result<Received> {
        if edus.len() > MAX_EDUS {
            return Err(Error::new(ErrorKind::BadJson, format!("at most {MAX_EDUS} EDUs per transaction")));
        }
        let lock = {
            let mut receiving = self.receiving.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(receiving.entry(origin.to_owned()).or_default())
        };
        let _one_at_a_time = lock.lock().await;
        let (o, t) = (origin.to_owned(), txn_id.to_owned());
        if self.db.read(move |s| s.was_received(&o, &t)).await? {
            tracing::debug!(%origin, txn_id, "transaction seen before: acknowledged, not applied again");
            return Ok(Received::Replay);
        }
        let mut unit = Unit::new();
        for edu in edus {
            let Some(&i) = self.by_type.get(edu.edu_type.as_str()) else {
                tracing::info!(%origin, edu_type = %edu.edu_type, "dropped an EDU of a type this server does not know");
                continue;
            };
            let edu_type = edu.edu_type.clone();
            if let Handled::Refused(reason) = self.families[i].receive(origin, edu, &mut unit).await? {
                tracing::info!(%origin, %edu_type, %reason, "dropped an EDU");
            }
        }
        let (o, t, now) = (origin.to_owned(), txn_id.to_owned(), self.clock.now_ms());
        unit.write(move |s| s.mark_received(&o, &t, now).map(|_| ()));
        self.db.submit_unit(unit).wait().await?;
        Ok(Received::Applied)
    }

    /// The transaction stored for `destination` in `lane` and not yet acknowledged.
    pub async fn pending(&self, destination: &str, lane: Lane) -> Result<Option<StoredTxn>> {
        let d = destination.to_owned();
        self.db.read(move |s| s.pending_txn(&d, lane)).await
    }

    /// Gather what is due for `destination` in `lane` (from the families of that lane
    /// and the outbox rows of that lane) into one transaction of at most `max_bytes`
    /// of queued EDUs (but always at least one) and store it.
    /// What waited for the lane counts as taken (the outbound's [`Outbound::waiting`]);
    /// it is put back when the gather fails or leaves outbox rows behind.
    pub async fn next_transaction(&self, destination: &str, lane: Lane, max_bytes: usize) -> Result<Gathered> {
        let waiting = self.outbound.waiting();
        let taken = waiting.take(destination, lane);
        let result = self.gather(destination, lane, max_bytes, None).await;
        if !matches!(result, Ok(Gathered { more: false, .. })) {
            waiting.restore(destination, taken);
        }
        result
    }

    /// While the replaceable transaction `old` ([`Gathered::replaceable`]) waits for
    /// its ack, something newer became due: gather again from the same cursor and store
    /// the result in `old`'s place, so it carries `old`'s state and the newer, and goes
    /// without waiting a round trip for `old`'s ack (whose late arrival then changes
    /// nothing). `None` (and `old` stays) when the gather brings nothing `old` lacks.
    pub async fn replace_transaction(
        &self,
        destination: &str,
        old: &StoredTxn,
        max_bytes: usize,
    ) -> Result<Option<Gathered>> {
        let waiting = self.outbound.waiting();
        let taken = waiting.take(destination, old.lane);
        let result = self.gather(destination, old.lane, max_bytes, Some(old)).await;
        if !matches!(result, Ok(Gathered { txn: Some(_), more: false, .. })) {
            waiting.restore(destination, taken);
        }
        result.map(|g| g.txn.is_some().then_some(g))
    }

    /// [`Self::next_transaction`]'s work (and [`Self::replace_transaction`]'s, with
    /// the transaction to replace).
    async fn gather(
        &self,
        destination: &str,
        lane: Lane,
        max_bytes: usize,
        replacing: Option<&StoredTxn>,
    ) -> Result<Gathered> {
        let mut batch = Batch::default();
        for family in self.families.iter().filter(|f| f.lane() == lane) {
            family.gather(destination, &mut batch).await?;
        }
        let room = batch.room();
        let mut rows = self.outbound.outbox(destination, lane, room).await?;
        let mut left = rows.len() == room && room > 0;
        // Keep the transaction under the byte budget (always at least one EDU): the
        // rest waits for the next one, in order.
        let mut bytes = 0;
        let fits = rows
            .iter()
            .take_while(|r| {
                bytes += r.content.len();
                bytes <= max_bytes.min(TXN_BYTES)
            })
            .count();
        left |= fits.max(1) < rows.len();
        rows.truncate(fits.max(1));
        let outbox_upto = rows.last().map_or(0, |r| r.id);
        for row in &rows {
            let content: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
            batch.edus.push(json!({ "edu_type": row.edu_type, "content": content }));
        }
        let cursor = batch.cursor.unwrap_or(0);
        let replaceable = !batch.one_off && rows.is_empty();
        if let Some(old) = replacing {
            let old_edus = serde_json::from_str::<Value>(&old.body).ok().and_then(|b| b.get("edus").cloned());
            if batch.edus.is_empty() || old_edus.as_ref() == Some(&Value::Array(batch.edus.clone())) {
                // Nothing newer: `old` goes on; what was taken for this batch goes back.
                batch.stored(false);
                return Ok(Gathered { txn: None, more: left, replaceable: false });
            }
        }
        if batch.edus.is_empty() {
            // Nothing to say: remember how far the presence stream was looked at.
            let result = match batch.cursor {
                Some(cursor) => {
                    let d = destination.to_owned();
                    self.db.write(move |s| s.advance_cursor(&d, cursor)).await
                }
                None => Ok(()),
            };
            batch.stored(result.is_ok());
            return result.map(|()| Gathered { txn: None, more: left, replaceable: false });
        }
        let now = self.clock.now_ms();
        let suffix = self.next_suffix.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({ "origin": self.server_name, "origin_server_ts": now, "pdus": [], "edus": batch.edus });
        let txn = StoredTxn {
            txn_id: format!("{now}.{suffix:08x}"),
            body: body.to_string(),
            presence_upto: cursor,
            outbox_upto,
            edus: batch.edus.len() as u64,
            lane,
        };
        let (d, stored, old) = (destination.to_owned(), txn.clone(), replacing.map(|t| t.txn_id.clone()));
        let result = self
            .db
            .write(move |s| match old {
                Some(old) => s.replace_txn(&d, &old, &stored, now),
                None => s.store_txn(&d, &stored, now),
            })
            .await;
        batch.stored(result.is_ok());
        result.map(|()| Gathered { txn: Some(txn), more: left, replaceable })
    }

    /// `destination` acknowledged `txn`: drop it and what it carried.
    pub async fn acknowledged(&self, destination: &str, txn: StoredTxn) -> Result<()> {
        let d = destination.to_owned();
        self.db.write(move |s| s.ack_txn(&d, &txn)).await
    }
}
