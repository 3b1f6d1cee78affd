//! One queue of deadlines for all users, run by one task: the mini-redis way of
//! timing many keys without a future per key.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

use crate::clock::SharedClock;

#[derive(Debug, Default)]
struct Queue {
    by_time: BTreeSet<(u64, OwnedUserId)>,
    by_user: HashMap<OwnedUserId, u64>,
}

/// Deadlines keyed by user: at most one per user, the latest schedule wins.
#[derive(Debug, Default)]
pub struct Deadlines {
    queue: Mutex<Queue>,
    changed: Notify,
}

impl Deadlines {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set (or clear, with `None`) the deadline of `user`.
    pub fn schedule(&self, user: &UserId, at: Option<u64>) {
        let mut q = self.queue();
        let old = q.by_user.get(user).copied();
        if old == at {
            return;
        }
        if let Some(old) = old {
            q.by_time.remove(&(old, user.to_owned()));
            q.by_user.remove(user);
        }
        let earliest_before = q.by_time.first().map(|(t, _)| *t);
        if let Some(at) = at {
            q.by_time.insert((at, user.to_owned()));
            q.by_user.insert(user.to_owned(), at);
        }
        drop(q);
        if at.is_some_and(|at| earliest_before.is_none_or(|e| at < e)) {
            self.changed.notify_one();
        }
    }

    /// Take every user whose deadline is at or before `now`.
    pub fn take_due(&self, now: u64) -> Vec<OwnedUserId> {
        let mut q = self.queue();
        let mut due = Vec::new();
        while let Some((at, _)) = q.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, user)) = q.by_time.pop_first() {
                q.by_user.remove(&user);
                due.push(user);
            }
        }
        due
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<u64> {
        self.queue().by_time.first().map(|(t, _)| *t)
    }

    /// Run forever: call `fire` with each due user, sleeping in between.
    pub async fn run<F, Fut>(&self, clock: SharedClock, mut fire: F)
    where
        F: FnMut(Vec<OwnedUserId>) -> Fut,
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

    fn u(name: &str) -> OwnedUserId {
        UserId::parse(format!("@{name}:hs.test")).expect("valid id")
    }

    #[test]
    fn latest_schedule_wins_and_due_come_in_order() {
        let d = Deadlines::new();
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
}
