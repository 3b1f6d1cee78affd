//! When a line that calls (`mode = "sessions"`) should call: when the oldest thing
//! waiting for the peer reaches its kind's maximum wait (`presence_max_wait_ms`,
//! `short_max_wait_ms`, `bulk_max_wait_ms`), or at once when a call is up anyway.
//! Each lane's sender waits here before core gathers its transaction, so what waits
//! keeps coalescing in core (newest presence per user) until the call.

use std::future::Future;
use std::time::Duration;

use tidings_core::lanes::Lane;
use tidings_core::outbound::{Waiting, WaitingSince};

use super::config::LinkConfig;
use super::frame::Class;

/// The maximum waits of a line that calls, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxWaits {
    /// Presence changes and answers.
    pub presence: u64,
    /// Consent, subscriptions, a reminder the long watchdog needs.
    pub short: u64,
    /// Feed traffic.
    pub bulk: u64,
}

impl MaxWaits {
    /// The waits of `[link]`.
    pub fn of(config: &LinkConfig) -> Self {
        Self { presence: config.presence_max_wait_ms, short: config.short_max_wait_ms, bulk: config.bulk_max_wait_ms }
    }

    /// The wait of a transaction of `class`.
    pub fn of_class(&self, class: Class) -> u64 {
        match class {
            Class::Presence => self.presence,
            Class::Short => self.short,
            Class::Bulk => self.bulk,
        }
    }

    fn of_kind(&self, kind: Waiting) -> u64 {
        match kind {
            Waiting::Presence => self.presence,
            Waiting::Short => self.short,
            Waiting::Bulk => self.bulk,
        }
    }

    /// When the oldest item of `lane` that waits since `since` (in the order of
    /// [`Waiting::ALL`]) is due, in Unix ms; `None` when nothing of the lane is noted.
    pub fn due(&self, since: [Option<u64>; 3], lane: Lane) -> Option<u64> {
        Waiting::ALL
            .into_iter()
            .zip(since)
            .filter(|(kind, _)| kind.lane() == lane)
            .filter_map(|(kind, at)| at.map(|t| t.saturating_add(self.of_kind(kind))))
            .min()
    }

    /// The longest wait of `lane`: how long a gather waits when nothing was noted
    /// (after a restart, what waited counts from then).
    fn longest(&self, lane: Lane) -> u64 {
        Waiting::ALL.into_iter().filter(|k| k.lane() == lane).map(|k| self.of_kind(k)).max().unwrap_or(0)
    }
}

/// Wait until `lane`'s oldest item for `peer` is due, or `call_up` resolves (a call
/// is up, so it rides along). `now` is the clock `waiting` notes on.
pub async fn hold<F: Future<Output = ()>>(
    waiting: &WaitingSince,
    peer: &str,
    lane: Lane,
    waits: MaxWaits,
    now: impl Fn() -> u64,
    call_up: F,
) {
    let mut call_up = std::pin::pin!(call_up);
    let start = now();
    loop {
        let news = waiting.changed(peer);
        let due = waits.due(waiting.since(peer), lane).unwrap_or(start.saturating_add(waits.longest(lane)));
        let t = now();
        if due <= t {
            return;
        }
        tokio::select! {
            _ = &mut call_up => return,
            _ = tokio::time::sleep(Duration::from_millis(due - t)) => {}
            _ = news => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITS: MaxWaits = MaxWaits { presence: 600_000, short: 120_000, bulk: 900_000 };

    #[test]
    fn the_oldest_item_of_the_lane_decides() {
        assert_eq!(WAITS.due([None, None, None], Lane::Presence), None);
        assert_eq!(WAITS.due([Some(1_000), None, Some(0)], Lane::Presence), Some(601_000));
        assert_eq!(WAITS.due([Some(1_000), Some(500_000), None], Lane::Presence), Some(601_000));
        assert_eq!(WAITS.due([Some(1_000), Some(400_000), None], Lane::Presence), Some(520_000));
        assert_eq!(WAITS.due([Some(1_000), Some(0), Some(5)], Lane::Bulk), Some(900_005));
    }

    fn clock() -> impl Fn() -> u64 {
        let start = tokio::time::Instant::now();
        move || start.elapsed().as_millis() as u64
    }

    #[tokio::test(start_paused = true)]
    async fn presence_waits_its_maximum_and_a_short_message_shortens_it() {
        let waiting = std::sync::Arc::new(WaitingSince::default());
        let now = clock();
        waiting.note("b.test", Waiting::Presence, now());
        let t0 = tokio::time::Instant::now();
        hold(&waiting, "b.test", Lane::Presence, WAITS, &now, std::future::pending()).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(WAITS.presence), "held exactly the maximum wait");

        // A short message noted after 60 s makes the gather due 120 s after it.
        waiting.take("b.test", Lane::Presence);
        let t1 = now();
        waiting.note("b.test", Waiting::Presence, t1);
        let w = std::sync::Arc::clone(&waiting);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            w.note("b.test", Waiting::Short, t1 + 60_000);
        });
        let t2 = tokio::time::Instant::now();
        hold(&waiting, "b.test", Lane::Presence, WAITS, &now, std::future::pending()).await;
        assert_eq!(t2.elapsed(), Duration::from_millis(60_000 + WAITS.short));
        later.await.expect("noter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_is_up_ends_the_wait_at_once() {
        let waiting = WaitingSince::default();
        let now = clock();
        waiting.note("b.test", Waiting::Bulk, now());
        let t0 = tokio::time::Instant::now();
        let up = tokio::time::sleep(Duration::from_secs(30));
        hold(&waiting, "b.test", Lane::Bulk, WAITS, &now, up).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_noted_a_gather_waits_the_lanes_longest_wait() {
        let waiting = WaitingSince::default();
        let now = clock();
        let t0 = tokio::time::Instant::now();
        hold(&waiting, "b.test", Lane::Presence, WAITS, &now, std::future::pending()).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(WAITS.presence));
    }
}
