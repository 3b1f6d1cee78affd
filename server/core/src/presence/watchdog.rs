//! The two watchdog timers of one peer (seed 003, workflows 3 to 6), as pure logic
//! over `now`, plus when what the peer told us goes stale.
//!
//! - short: reset by any verified request from the peer or a 2xx answer from it;
//! - long: reset only by a status reminder from the peer. Its period is shortened
//!   per direction by a deterministic factor in [0.75, 1.0) from a hash of both
//!   names, so a server with many peers never sends (or gets) all its reminders at once;
//! - the short period is shortened per direction by a factor in [0.9, 1.0) from a hash
//!   of (our name, the peer's name): the two ends of an idle link then never fire
//!   together, the quicker one's reminder resets the other, and one reminder per
//!   period crosses instead of two;
//! - either expiring means: send the peer a status reminder (and ask again);
//! - nothing verified for 2 × short: the peer's users become "unknown".
//!
//! With no subscription either way the timers are off and nothing is sent.

use sha2::{Digest, Sha256};

/// Timers of one peer.
#[derive(Debug, Clone)]
pub struct Watchdog {
    short_ms: u64,
    long_ms: u64,
    stale_ms: u64,
    active: bool,
    short_due: Option<u64>,
    long_due: Option<u64>,
    last_heard: Option<u64>,
    stale: bool,
}

/// A deterministic number in [0, 1) from `text`.
fn unit_hash(text: &str) -> f64 {
    let hash = Sha256::digest(text.as_bytes());
    f64::from(u16::from_be_bytes([hash[0], hash[1]])) / 65536.0
}

/// The long-timer stagger factor of the direction `own` → `peer`: deterministic, in
/// [0.75, 1.0). It depends on both names, so a hub's timers toward its peers are
/// spread, and so are its peers' timers toward the hub, which would otherwise all
/// share the hub's factor and remind it together.
pub fn stagger(own: &str, peer: &str) -> f64 {
    0.75 + 0.25 * unit_hash(&format!("long\u{1f}{own}\u{1f}{peer}"))
}

/// The short-timer factor of the direction `own` → `peer`: in [0.9, 1.0), and
/// different for the two ends of a link.
pub fn short_factor(own: &str, peer: &str) -> f64 {
    0.9 + 0.1 * unit_hash(&format!("{own}\u{1f}{peer}"))
}

/// What the timers say should happen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Send a status reminder (a timer expired).
    pub reminder: bool,
    /// What the peer told us just went stale.
    pub went_stale: bool,
}

impl Watchdog {
    /// Timers that `own` keeps for `server_name` with these periods; off until
    /// [`Self::set_active`]. What the peer told us goes stale after 2 × `short_ms`
    /// (the configured period, not the shortened one).
    pub fn new(own: &str, server_name: &str, short_ms: u64, long_ms: u64) -> Self {
        let long_ms = ((long_ms as f64) * stagger(own, server_name)).round().max(1.0) as u64;
        let stale_ms = 2 * short_ms;
        let short_ms = ((short_ms as f64) * short_factor(own, server_name)).round().max(1.0) as u64;
        Self {
            short_ms,
            long_ms,
            stale_ms,
            active: false,
            short_due: None,
            long_due: None,
            last_heard: None,
            stale: false,
        }
    }

    /// The peer's effective long period (after staggering).
    pub fn long_period_ms(&self) -> u64 {
        self.long_ms
    }

    /// Turn the timers on or off (a subscription exists either way or not).
    pub fn set_active(&mut self, active: bool, now: u64) {
        if active && !self.active {
            self.short_due = Some(now + self.short_ms);
            self.long_due = Some(now + self.long_ms);
            self.last_heard = Some(self.last_heard.unwrap_or(now).max(now.saturating_sub(self.short_ms)));
        }
        if !active {
            self.short_due = None;
            self.long_due = None;
        }
        self.active = active;
    }

    /// A verified request from the peer, or a 2xx answer from it. Returns whether the
    /// peer had gone stale (so the caller asks again for what it lost).
    pub fn heard(&mut self, now: u64) -> bool {
        self.last_heard = Some(now);
        if self.active {
            self.short_due = Some(now + self.short_ms);
        }
        std::mem::take(&mut self.stale)
    }

    /// A status reminder from the peer: both timers reset.
    pub fn reminded(&mut self, now: u64) {
        if self.active {
            self.short_due = Some(now + self.short_ms);
            self.long_due = Some(now + self.long_ms);
        }
    }

    /// Check the timers at `now`; expired ones re-arm.
    pub fn poll(&mut self, now: u64) -> Due {
        let mut due = Due::default();
        if !self.active {
            return due;
        }
        if self.short_due.is_some_and(|t| now >= t) {
            self.short_due = Some(now + self.short_ms);
            due.reminder = true;
        }
        if self.long_due.is_some_and(|t| now >= t) {
            self.long_due = Some(now + self.long_ms);
            due.reminder = true;
        }
        if !self.stale && self.last_heard.is_some_and(|h| now >= h + self.stale_ms) {
            self.stale = true;
            due.went_stale = true;
        }
        due
    }

    /// When the short timer fires next (Unix ms), if on.
    pub fn short_due(&self) -> Option<u64> {
        self.short_due
    }

    /// When the long timer fires next (Unix ms), if on.
    pub fn long_due(&self) -> Option<u64> {
        self.long_due
    }

    /// Whether the timers are on.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// When [`Self::poll`] next has something to say (a timer, or going stale), if ever.
    pub fn next_due(&self) -> Option<u64> {
        if !self.active {
            return None;
        }
        let stale_at = (!self.stale).then(|| self.last_heard.map(|h| h + self.stale_ms)).flatten();
        [self.short_due, self.long_due, stale_at].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: u64 = 60_000;
    const LONG: u64 = 3_600_000;

    #[test]
    fn off_without_subscriptions() {
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG);
        assert_eq!(w.poll(10 * LONG), Due::default());
        assert_eq!(w.short_due(), None);
    }

    #[test]
    fn idle_peer_gets_reminders_on_the_short_period() {
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG);
        w.set_active(true, 0);
        let mut reminders = 0;
        let mut now = 0;
        while now < 10 * SHORT {
            now += 1000;
            // The peer answers each reminder with 2xx, which is "heard".
            if w.poll(now).reminder {
                reminders += 1;
                w.heard(now);
            }
        }
        assert!((9..=10).contains(&reminders), "{reminders}");
    }

    #[test]
    fn steady_traffic_leaves_only_the_long_timer() {
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG);
        w.set_active(true, 0);
        let mut reminders = Vec::new();
        let mut now = 0;
        while now < 3 * LONG {
            now += 10_000;
            w.heard(now); // something every 10 s
            if w.poll(now).reminder {
                reminders.push(now);
            }
        }
        assert_eq!(reminders.len(), 3, "{reminders:?}");
        assert!(reminders[0] >= LONG * 3 / 4 && reminders[0] <= LONG);
    }

    #[test]
    fn a_reminder_resets_both() {
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG);
        w.set_active(true, 0);
        w.reminded(LONG - 1);
        assert_eq!(w.long_due(), Some(LONG - 1 + w.long_period_ms()));
        let short = w.short_due().map(|t| t - (LONG - 1));
        assert!(short.is_some_and(|s| s > SHORT * 9 / 10 && s <= SHORT), "{short:?}");
    }

    #[test]
    fn silence_for_two_short_periods_goes_stale_once_and_recovers() {
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG);
        w.set_active(true, 0);
        w.heard(1_000);
        assert!(!w.poll(1_000 + 2 * SHORT - 1).went_stale);
        assert!(w.poll(1_000 + 2 * SHORT).went_stale);
        assert!(!w.poll(1_000 + 3 * SHORT).went_stale, "only once");
        assert!(w.heard(1_000 + 4 * SHORT), "heard again after going stale");
        assert!(!w.heard(1_000 + 4 * SHORT + 1));
    }

    #[test]
    fn the_two_ends_of_a_link_have_different_short_periods() {
        let mut a = Watchdog::new("a.test", "b.test", SHORT, LONG);
        let mut b = Watchdog::new("b.test", "a.test", SHORT, LONG);
        a.set_active(true, 0);
        b.set_active(true, 0);
        assert_ne!(a.short_due(), b.short_due());
        // An idle link: whoever fires first reminds the other, which resets and stays quiet.
        let (mut from_a, mut from_b) = (0, 0);
        for now in (0..20 * SHORT).step_by(100) {
            if a.poll(now).reminder {
                from_a += 1;
                b.heard(now);
                b.reminded(now);
                a.heard(now);
            }
            if b.poll(now).reminder {
                from_b += 1;
                a.heard(now);
                a.reminded(now);
                b.heard(now);
            }
        }
        assert!(from_a == 0 || from_b == 0, "both ends sent reminders: {from_a} and {from_b}");
        assert!(from_a + from_b >= 19, "{from_a} + {from_b}");
    }

    #[test]
    fn long_expiries_spread_across_peers() {
        let mut dues: Vec<u64> = (0..1000)
            .map(|i| {
                let mut w = Watchdog::new("hub.test", &format!("peer{i}.test"), SHORT, LONG);
                w.set_active(true, 0);
                w.long_due().unwrap_or(0)
            })
            .collect();
        dues.sort();
        dues.dedup();
        assert!(dues.len() > 900, "expiries collide: {} distinct", dues.len());
        // Spread evenly over a quarter of the period (900 s), ten seconds hold about 11
        // expiries; a burst would put far more in one window.
        let worst = dues.iter().map(|&t| dues.iter().filter(|&&u| u >= t && u < t + 10_000).count()).max();
        assert!(worst.unwrap_or(0) <= 30, "{worst:?}");
        assert!(*dues.first().unwrap_or(&0) >= LONG * 3 / 4);
    }
}
