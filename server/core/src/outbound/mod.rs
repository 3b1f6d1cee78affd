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
//!   written in the same database transaction as the change that caused them;
//! - a peer's *interest* (which of our users it asked to be pushed) is stored;
//! - *owed* answers (current state a peer asked for) are kept in memory: if they
//!   are lost in a crash, the peer's next reminder finds the difference and asks again.
//!
//! Batch windows run here, on the shared timer idiom: the first wake of a
//! destination opens its window (`batch_ms`), later wakes never extend it, and a due
//! reminder closes it at once. When it closes, the destination's sender is told.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::error::Result;
use crate::lanes::Lane;
use crate::storage::{Db, Store, Unit, federation as store};
use crate::timers::Deadlines;

pub mod waiting;

pub use store::{OutboxRow, StoredTxn};
pub use waiting::{Waiting, WaitingSince};

/// Queues, batch windows and wake-ups for every configured peer.
#[derive(Debug)]
pub struct Outbound {
    db: Db,
    clock: SharedClock,
    batch_ms: u64,
    peers: HashSet<String>,
    interest: Mutex<HashMap<String, HashSet<OwnedUserId>>>,
    owed: Mutex<HashMap<String, HashSet<OwnedUserId>>>,
    windows: Deadlines<String>,
    ready: HashMap<(String, Lane), Notify>,
    waiting: WaitingSince,
    /// Destinations whose line that calls is up now: nothing waits for a batch window.
    calling: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbound {
    /// Load peers' interest; `peers` are the server names we can reach, `batch_ms`
    /// how long a destination's changes wait to share a transaction.
    pub fn load(db: Db, clock: SharedClock, batch_ms: u64, peers: impl IntoIterator<Item = String>) -> Result<Self> {
        let peers: HashSet<String> = peers.into_iter().collect();
        let mut interest: HashMap<String, HashSet<OwnedUserId>> = HashMap::new();
        for (dest, user) in db.read_blocking(|s| s.load_interest())? {
            if let Ok(user) = UserId::parse(&user) {
                interest.entry(dest).or_default().insert(user);
            }
        }
        let ready = peers.iter().flat_map(|p| Lane::ALL.map(|lane| ((p.clone(), lane), Notify::new()))).collect();
        Ok(Self {
            db,
            clock,
            batch_ms,
            peers,
            interest: Mutex::new(interest),
            owed: Mutex::new(HashMap::new()),
            windows: Deadlines::new(),
            ready,
            waiting: WaitingSince::default(),
            calling: Mutex::new(HashSet::new()),
        })
    }

    /// Close batch windows as they come due, until the process ends.
    pub async fn run(&self) {
        let clock = std::sync::Arc::clone(&self.clock);
        self.windows
            .run(clock, |due| {
                for dest in due {
                    for lane in Lane::ALL {
                        if let Some(ready) = self.ready.get(&(dest.clone(), lane)) {
                            ready.notify_one();
                        }
                    }
                }
                async {}
            })
            .await;
    }

    /// Whether `server` is a peer we can send to.
    pub fn is_peer(&self, server: &str) -> bool {
        self.peers.contains(server)
    }

    /// Something of `kind` is (or may be) waiting for `destination`: open its batch
    /// window if none is open (the window is never extended), and note since when it
    /// waits ([`Self::waiting`]).
    pub fn wake(&self, destination: &str, kind: Waiting) {
        if self.is_peer(destination) {
            let now = self.clock.now_ms();
            self.waiting.note(destination, kind, now);
            let wait = if lock(&self.calling).contains(destination) { 0 } else { self.batch_ms };
            self.windows.schedule_no_later(&destination.to_owned(), now + wait);
        }
    }

    /// A short message for `destination` must not wait (a reminder is due): close its
    /// window now.
    pub fn wake_now(&self, destination: &str) {
        if self.is_peer(destination) {
            let now = self.clock.now_ms();
            self.waiting.note(destination, Waiting::Short, now);
            self.windows.schedule_no_later(&destination.to_owned(), now);
        }
    }

    /// A line to `destination` that calls is up (`true`: a call began) or down. While
    /// it is up nothing waits for a batch window, so what waits, and what comes up
    /// during the call, goes while the line is paid for.
    pub fn calling(&self, destination: &str, up: bool) {
        if !self.is_peer(destination) {
            return;
        }
        if up {
            lock(&self.calling).insert(destination.to_owned());
            self.windows.schedule_no_later(&destination.to_owned(), self.clock.now_ms());
        } else {
            lock(&self.calling).remove(destination);
        }
    }

    /// The clock [`Self::waiting`]'s times are read on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Since when the oldest unsent item of each kind waits, per destination (for a
    /// line that calls when one reaches its maximum wait).
    pub fn waiting(&self) -> &WaitingSince {
        &self.waiting
    }

    /// Wait until `destination`'s batch window closes (at once if it closed while
    /// nobody of `lane` waited). Each lane's sender waits on its own signal.
    pub async fn ready(&self, destination: &str, lane: Lane) {
        match self.ready.get(&(destination.to_owned(), lane)) {
            Some(ready) => ready.notified().await,
            None => std::future::pending().await,
        }
    }

    /// When `destination`'s batch window closes, if one is open.
    pub fn window_closes(&self, destination: &str) -> Option<u64> {
        self.windows.get(&destination.to_owned())
    }

    /// Queue an EDU for `destination` in `unit`; its sender is woken once the unit
    /// committed. Unknown destinations are logged and skipped: there is no route to them.
    pub fn queue_in(self: &std::sync::Arc<Self>, unit: &mut Unit, destination: &str, edu_type: &str, content: &Value) {
        if !self.is_peer(destination) {
            tracing::warn!(%destination, edu_type, "no route to this server (not in the peer map); not queued");
            return;
        }
        let (d, t, c, now) = (destination.to_owned(), edu_type.to_owned(), content.to_string(), self.clock.now_ms());
        unit.write(move |s| s.push_outbox(&d, &t, &c, now));
        let (me, d) = (std::sync::Arc::clone(self), destination.to_owned());
        let kind = if Lane::of_edu_type(edu_type) == Lane::Bulk { Waiting::Bulk } else { Waiting::Short };
        unit.after(move |ok| {
            if ok {
                me.wake(&d, kind);
            }
        });
    }

    /// The oldest queued EDUs of `destination` in `lane`.
    pub async fn outbox(&self, destination: &str, lane: Lane, limit: usize) -> Result<Vec<OutboxRow>> {
        let d = destination.to_owned();
        self.db.read(move |s| s.outbox(&d, lane, limit)).await
    }

    /// How many EDUs wait for `destination` (queued, or in the transaction in flight).
    pub async fn queue_len(&self, destination: &str) -> Result<u64> {
        let d = destination.to_owned();
        self.db.read(move |s| Ok(s.outbox_len(&d)? + s.pending_edus(&d)?)).await
    }

    /// How far the presence stream has been sent to `destination`.
    pub async fn cursor(&self, destination: &str) -> Result<u64> {
        let d = destination.to_owned();
        self.db.read(move |s| s.cursor(&d)).await
    }

    /// Write in `unit` that `destination` asks to be pushed `added` and no longer
    /// `removed` (`replace`: exactly `added`); mirrored in memory once committed.
    pub fn set_interest_in(
        self: &std::sync::Arc<Self>,
        unit: &mut Unit,
        destination: &str,
        added: Vec<OwnedUserId>,
        removed: Vec<OwnedUserId>,
        replace: bool,
    ) {
        let (d, now) = (destination.to_owned(), self.clock.now_ms());
        let a: Vec<String> = added.iter().map(ToString::to_string).collect();
        let r: Vec<String> = removed.iter().map(ToString::to_string).collect();
        unit.write(move |s: &dyn Store| s.set_interest(&d, &a, &r, replace, now));
        let (me, d) = (std::sync::Arc::clone(self), destination.to_owned());
        unit.after(move |ok| {
            if !ok {
                return;
            }
            let mut interest = lock(&me.interest);
            let set = interest.entry(d).or_default();
            if replace {
                set.clear();
            }
            for u in &removed {
                set.remove(u);
            }
            set.extend(added);
        });
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
        self.wake(destination, Waiting::Presence);
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

    /// The peers, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.peers.iter().cloned().collect();
        v.sort();
        v
    }
}
