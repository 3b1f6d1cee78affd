//! How long the oldest unsent thing of each kind has waited for a destination.
//!
//! A line billed by the minute (the link's `sessions` mode) calls when the oldest
//! waiting item reaches its kind's maximum wait, not when a batch window closes. The
//! carrier knows those maximum waits; core knows what waits. So core notes, per
//! destination, when the oldest item of each [`Waiting`] kind appeared, and clears a
//! lane's kinds when it gathers a transaction for that lane. The carrier reads
//! [`WaitingSince::since`] and sleeps until the earliest deadline, woken by
//! [`WaitingSince::changed`] when something new (perhaps more urgent) appears. Nothing
//! here is durable: after a restart everything waiting counts from the start.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::lanes::Lane;

/// A kind of thing waiting for a destination, by how long it may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Waiting {
    /// Presence changes and answers (pushes of current state).
    Presence,
    /// Consent, subscriptions and reminders that must go: the rest of the presence lane.
    Short,
    /// Feed traffic (the bulk lane).
    Bulk,
}

impl Waiting {
    /// Every kind, in the order of [`WaitingSince::since`].
    pub const ALL: [Waiting; 3] = [Waiting::Presence, Waiting::Short, Waiting::Bulk];

    /// The lane it travels in.
    pub fn lane(self) -> Lane {
        match self {
            Waiting::Presence | Waiting::Short => Lane::Presence,
            Waiting::Bulk => Lane::Bulk,
        }
    }

    fn index(self) -> usize {
        match self {
            Waiting::Presence => 0,
            Waiting::Short => 1,
            Waiting::Bulk => 2,
        }
    }
}

/// The oldest waiting time of each kind, per destination.
#[derive(Debug, Default)]
pub struct WaitingSince {
    since: Mutex<HashMap<String, [Option<u64>; 3]>>,
    changed: Mutex<HashMap<String, std::sync::Arc<Notify>>>,
}

impl WaitingSince {
    fn notify(&self, destination: &str) -> std::sync::Arc<Notify> {
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        std::sync::Arc::clone(changed.entry(destination.to_owned()).or_default())
    }

    /// Something of `kind` waits for `destination` since `now` (an older one keeps its time).
    pub fn note(&self, destination: &str, kind: Waiting, now: u64) {
        let newly = {
            let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
            let slot = &mut since.entry(destination.to_owned()).or_default()[kind.index()];
            let newly = slot.is_none();
            if newly {
                *slot = Some(now);
            }
            newly
        };
        if newly {
            self.notify(destination).notify_waiters();
        }
    }

    /// A transaction of `lane` is being gathered for `destination`: what of that lane
    /// waited is being taken. Returns what was noted, for [`Self::restore`].
    pub fn take(&self, destination: &str, lane: Lane) -> [Option<u64>; 3] {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = [None; 3];
        if let Some(slots) = since.get_mut(destination) {
            for kind in Waiting::ALL.into_iter().filter(|k| k.lane() == lane) {
                taken[kind.index()] = slots[kind.index()].take();
            }
        }
        taken
    }

    /// Put back what [`Self::take`] took (the gather failed, or left some behind).
    pub fn restore(&self, destination: &str, taken: [Option<u64>; 3]) {
        for kind in Waiting::ALL {
            if let Some(at) = taken[kind.index()] {
                self.note(destination, kind, at);
            }
        }
    }

    /// When the oldest item of each kind began to wait for `destination`, in the order
    /// of [`Waiting::ALL`].
    pub fn since(&self, destination: &str) -> [Option<u64>; 3] {
        let since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.get(destination).copied().unwrap_or_default()
    }

    /// Resolves when something new begins to wait for `destination` (create the
    /// future before reading [`Self::since`], so nothing slips between).
    pub fn changed(&self, destination: &str) -> tokio::sync::futures::OwnedNotified {
        self.notify(destination).notified_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_of_each_kind_counts_and_a_gather_takes_its_lane() {
        let w = WaitingSince::default();
        w.note("b.test", Waiting::Presence, 10);
        w.note("b.test", Waiting::Presence, 20);
        w.note("b.test", Waiting::Bulk, 30);
        assert_eq!(w.since("b.test"), [Some(10), None, Some(30)]);
        assert_eq!(w.since("c.test"), [None, None, None]);
        w.note("b.test", Waiting::Short, 40);
        let taken = w.take("b.test", Lane::Presence);
        assert_eq!(taken, [Some(10), Some(40), None]);
        assert_eq!(w.since("b.test"), [None, None, Some(30)]);
        w.note("b.test", Waiting::Presence, 50);
        w.restore("b.test", taken);
        assert_eq!(w.since("b.test"), [Some(50), Some(40), Some(30)], "a newer note keeps its time");
        assert_eq!(w.take("b.test", Lane::Bulk), [None, None, Some(30)]);
    }

    #[tokio::test]
    async fn a_new_kind_wakes_whoever_waits_and_an_older_one_does_not() {
        let w = WaitingSince::default();
        w.note("b.test", Waiting::Presence, 10);
        let mut changed = std::pin::pin!(w.changed("b.test"));
        w.note("b.test", Waiting::Presence, 20);
        // One poll (a zero timeout polls the future first): not woken.
        let woke = tokio::time::timeout(std::time::Duration::ZERO, &mut changed).await;
        assert!(woke.is_err(), "a second presence change is not news");
        w.note("b.test", Waiting::Short, 30);
        let woke = tokio::time::timeout(std::time::Duration::ZERO, &mut changed).await;
        assert!(woke.is_ok(), "a new kind wakes the waiter");
    }
}
