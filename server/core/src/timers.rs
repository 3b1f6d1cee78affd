//! The one timer idiom of Tidings: a queue of deadlines over many keys, run by one
//! task that sleeps until the earliest and is woken by `Notify` when an earlier one
//! is set (the mini-redis way of timing many keys without a future per key).
//! Presence idleness and absence, the watchdogs of each peer and the batch windows
//! of each destination all run on it; times are Unix ms from the shared clock, which
//! follows tokio's pausable time, so tests run a simulated day in seconds.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::SharedClock;

#[derive(Debug)]
struct Queue<K> {
    by_time: BTreeSet<(u64, K)>,
    by_key: HashMap<K, u64>,
}

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Self { by_time: BTreeSet::new(), by_key: HashMap::new() }
    }
}

/// Deadlines keyed by `K`: at most one per key.
#[derive(Debug)]
pub struct Deadlines<K> {
    queue: Mutex<Queue<K>>,
    changed: Notify,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self { queue: Mutex::new(Queue::default()), changed: Notify::new() }
    }
}

impl<K: Ord + Hash + Clone> Deadlines<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<K>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set (or clear, with `None`) the deadline of `key`: the latest call wins.
    pub fn schedule(&self, key: &K, at: Option<u64>) {
        let mut q = self.queue();
        let old = q.by_key.get(key).copied();
        if old == at {
            return;
        }
        if let Some(old) = old {
            q.by_time.remove(&(old, key.clone()));
            q.by_key.remove(key);
        }
        let earliest_before = q.by_time.first().map(|(t, _)| *t);
        if let Some(at) = at {
            q.by_time.insert((at, key.clone()));
            q.by_key.insert(key.clone(), at);
        }
        drop(q);
        if at.is_some_and(|at| earliest_before.is_none_or(|e| at < e)) {
            self.changed.notify_one();
        }
    }

    /// Set the deadline of `key` unless it already has one at or before `at`: a
    /// window that starts at its first cause and is never extended.
    pub fn schedule_no_later(&self, key: &K, at: u64) {
        let current = self.queue().by_key.get(key).copied();
        if current.is_none_or(|c| at < c) {
            self.schedule(key, Some(at));
        }
    }

    /// The deadline of `key`, if any.
    pub fn get(&self, key: &K) -> Option<u64> {
        self.queue().by_key.get(key).copied()
    }

    /// Take every key whose deadline is at or before `now`.
    pub fn take_due(&self, now: u64) -> Vec<K> {
        let mut q = self.queue();
        let mut due = Vec::new();
        while let Some((at, _)) = q.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = q.by_time.pop_first() {
                q.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<u64> {
        self.queue().by_time.first().map(|(t, _)| *t)
    }

    /// Run forever: call `fire` with the keys that are due, sleeping in between.
    pub async fn run<F, Fut>(&self, clock: SharedClock, mut fire: F)
    where
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let now = clock.now_ms();
            let due = self.take_due(now);
            if !due.is_empty() {
                fire(due).await;
                continue;
            }
            match self.next() {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(now).max(1));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(name: &str) -> String {
        format!("@{name}:hs.test")
    }

    #[test]
    fn latest_schedule_wins_and_due_come_in_order() {
        let d = Deadlines::<String>::new();
        d.schedule(&u("a"), Some(30));
        d.schedule(&u("b"), Some(10));
        d.schedule(&u("a"), Some(20));
        assert_eq!(d.next(), Some(10));
        assert_eq!(d.take_due(25), vec![u("b"), u("a")]);
        assert!(d.take_due(1000).is_empty());
        d.schedule(&u("c"), Some(5));
        d.schedule(&u("c"), None);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn a_window_is_never_extended() {
        let d = Deadlines::<String>::new();
        d.schedule_no_later(&u("peer"), 100);
        d.schedule_no_later(&u("peer"), 150);
        assert_eq!(d.get(&u("peer")), Some(100));
        d.schedule_no_later(&u("peer"), 50);
        assert_eq!(d.get(&u("peer")), Some(50), "an earlier cause (a reminder due now) moves it sooner");
    }
}
