//! What must leave this server for each peer: core's side of federation.
//!
//! Core never calls federation. It records here what a peer must be told, durably,
//! and wakes that peer's sender, which drains it:
//!
//! - presence pushes need no queue of their own: each peer has a cursor on the
//!   presence stream, so what must be pushed is "the peer's users' targets whose
//!   position passed the cursor". That gives durability across `kill -9` and
//!   newest-state-per-user coalescing for free;
//! - other EDUs (invites, answers, drops) go in the `federation_outbox` table,
//!   written before the request that caused them answers;
//! - a peer's *interest* (which of our users it asked to be pushed) is stored;
//! - *owed* answers (current state a peer asked for) are kept in memory: if they
//!   are lost in a crash, the peer's next reminder finds the difference and asks again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::error::Result;
use crate::storage::{Db, federation as store};

pub use store::{OutboxRow, StoredTxn};

/// Queues and wake-ups for every configured peer.
#[derive(Debug)]
pub struct Outbound {
    db: Db,
    clock: SharedClock,
    peers: HashSet<String>,
    interest: Mutex<HashMap<String, HashSet<OwnedUserId>>>,
    owed: Mutex<HashMap<String, HashSet<OwnedUserId>>>,
    wake: HashMap<String, watch::Sender<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbound {
    /// Load peers' interest; `peers` are the server names we can reach.
    pub fn load(db: Db, clock: SharedClock, peers: impl IntoIterator<Item = String>) -> Result<Self> {
        let peers: HashSet<String> = peers.into_iter().collect();
        let mut interest: HashMap<String, HashSet<OwnedUserId>> = HashMap::new();
        for (dest, user) in db.call_blocking(|c| store::load_interest(c))? {
            if let Ok(user) = UserId::parse(&user) {
                interest.entry(dest).or_default().insert(user);
            }
        }
        let wake = peers.iter().map(|p| (p.clone(), watch::channel(0).0)).collect();
        Ok(Self { db, clock, peers, interest: Mutex::new(interest), owed: Mutex::new(HashMap::new()), wake })
    }

    /// Whether `server` is a peer we can send to.
    pub fn is_peer(&self, server: &str) -> bool {
        self.peers.contains(server)
    }

    /// Something is (or may be) waiting for `destination`: wake its sender.
    pub fn wake(&self, destination: &str) {
        if let Some(tx) = self.wake.get(destination) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A receiver that changes whenever `destination` is woken.
    pub fn wakes(&self, destination: &str) -> Option<watch::Receiver<u64>> {
        self.wake.get(destination).map(watch::Sender::subscribe)
    }

    /// Queue an EDU for `destination` durably, then wake its sender. Unknown
    /// destinations are logged and skipped: there is no route to them.
    pub async fn queue_edu(&self, destination: &str, edu_type: &str, content: &Value) -> Result<()> {
        if !self.is_peer(destination) {
            tracing::warn!(%destination, edu_type, "no route to this server (not in the peer map); not queued");
            return Ok(());
        }
        let (d, t, c, now) = (destination.to_owned(), edu_type.to_owned(), content.to_string(), self.clock.now_ms());
        self.db.call(move |conn| store::push_outbox(conn, &d, &t, &c, now)).await?;
        self.wake(destination);
        Ok(())
    }

    /// The oldest queued EDUs of `destination`.
    pub async fn outbox(&self, destination: &str, limit: usize) -> Result<Vec<OutboxRow>> {
        let d = destination.to_owned();
        self.db.call(move |c| store::outbox(c, &d, limit)).await
    }

    /// How many EDUs wait for `destination` (queued, or in the transaction in flight).
    pub async fn queue_len(&self, destination: &str) -> Result<u64> {
        let d = destination.to_owned();
        self.db.call(move |c| Ok(store::outbox_len(c, &d)? + store::pending_txn(c, &d)?.map_or(0, |t| t.edus))).await
    }

    /// The transaction in flight to `destination`.
    pub async fn pending_txn(&self, destination: &str) -> Result<Option<StoredTxn>> {
        let d = destination.to_owned();
        self.db.call(move |c| store::pending_txn(c, &d)).await
    }

    /// Store a transaction before its first send.
    pub async fn store_txn(&self, destination: &str, txn: StoredTxn) -> Result<()> {
        let (d, now) = (destination.to_owned(), self.clock.now_ms());
        self.db.call(move |c| store::store_txn(c, &d, &txn, now)).await
    }

    /// The transaction was acknowledged.
    pub async fn ack_txn(&self, destination: &str, txn: StoredTxn) -> Result<()> {
        let d = destination.to_owned();
        self.db.call(move |c| store::ack_txn(c, &d, &txn)).await
    }

    /// How far the presence stream has been sent to `destination`.
    pub async fn cursor(&self, destination: &str) -> Result<u64> {
        let d = destination.to_owned();
        self.db.call(move |c| store::cursor(c, &d)).await
    }

    /// Nothing for `destination` moved up to `pos`: remember how far we looked.
    pub async fn advance_cursor(&self, destination: &str, pos: u64) -> Result<()> {
        let d = destination.to_owned();
        self.db.call(move |c| store::advance_cursor(c, &d, pos)).await
    }

    /// `destination` asks to be pushed `added` and no longer `removed` (`replace`: exactly `added`).
    pub async fn set_interest(
        &self,
        destination: &str,
        added: &[OwnedUserId],
        removed: &[OwnedUserId],
        replace: bool,
    ) -> Result<()> {
        let (d, now) = (destination.to_owned(), self.clock.now_ms());
        let a: Vec<String> = added.iter().map(ToString::to_string).collect();
        let r: Vec<String> = removed.iter().map(ToString::to_string).collect();
        self.db.call(move |c| store::set_interest(c, &d, &a, &r, replace, now)).await?;
        let mut interest = lock(&self.interest);
        let set = interest.entry(destination.to_owned()).or_default();
        if replace {
            set.clear();
        }
        for u in removed {
            set.remove(u);
        }
        set.extend(added.iter().cloned());
        Ok(())
    }

    /// Whether `destination` asked to be pushed `user`.
    pub fn is_interested(&self, destination: &str, user: &UserId) -> bool {
        lock(&self.interest).get(destination).is_some_and(|s| s.contains(user))
    }

    /// The users `destination` asked to be pushed.
    pub fn interest(&self, destination: &str) -> Vec<OwnedUserId> {
        let mut v: Vec<_> =
            lock(&self.interest).get(destination).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// `destination` is owed the current state of `users` (an answer), then woken.
    pub fn owe(&self, destination: &str, users: impl IntoIterator<Item = OwnedUserId>) {
        lock(&self.owed).entry(destination.to_owned()).or_default().extend(users);
        self.wake(destination);
    }

    /// Take what `destination` is owed.
    pub fn take_owed(&self, destination: &str) -> HashSet<OwnedUserId> {
        lock(&self.owed).remove(destination).unwrap_or_default()
    }

    /// Put back what could not be sent.
    pub fn restore_owed(&self, destination: &str, users: HashSet<OwnedUserId>) {
        if !users.is_empty() {
            lock(&self.owed).entry(destination.to_owned()).or_default().extend(users);
        }
    }

    /// Record a received transaction; `false` if it was applied before.
    pub async fn mark_received(&self, origin: &str, txn_id: &str) -> Result<bool> {
        let (o, t, now) = (origin.to_owned(), txn_id.to_owned(), self.clock.now_ms());
        self.db.call(move |c| store::mark_received(c, &o, &t, now)).await
    }

    /// Whether a transaction was applied before.
    pub async fn was_received(&self, origin: &str, txn_id: &str) -> Result<bool> {
        let (o, t) = (origin.to_owned(), txn_id.to_owned());
        self.db.call(move |c| store::was_received(c, &o, &t)).await
    }

    /// The peers.
    pub fn peers(&self) -> impl Iterator<Item = &String> {
        self.peers.iter()
    }
}

pub mod edus;
