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
//! **A line that calls** (the link's `sessions` mode, [`Watchdog::calls`]) is silent
//! between calls by design, so the short timer means nothing there and sends no
//! reminder (one riding each call would cost bytes both ways, and an answering
//! side's digest, taken before the caller's push arrived, would not match and make
//! the caller push everything again). The long timer's reminder still goes, riding
//! the next call ([`Due::urgent`] false). What the peer told us goes stale only after
//! long + 2 × short + `grace_ms` (how late a due call may come) with nothing heard;
//! after one long period of silence a reminder must go at once (it calls), so a
//! healthy line is heard long before that, and a dead line still goes unknown, one
//! long period later than a line that is always open.
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
    /// The line calls (sessions): the short timer sends no reminder; silence for this
    /// long makes one that must go at once.
    calls: Option<u64>,
    /// That reminder was asked for in this silence.
    silence_reminded: bool,
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
    /// It must go now; otherwise it rides whatever goes next (a line that calls).
    pub urgent: bool,
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
            calls: None,
            silence_reminded: false,
        }
    }

    /// The same timers for a line that calls (see the module's doc): no short
    /// reminders, and stale only after `long_ms + 2 × short_ms + grace_ms` of silence.
    pub fn calls(mut self, long_ms: u64, grace_ms: u64) -> Self {
        self.calls = Some(long_ms);
        self.stale_ms = long_ms.saturating_add(self.stale_ms).saturating_add(grace_ms);
        self
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
        self.silence_reminded = false;
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
            due.reminder |= self.calls.is_none();
        }
        if self.long_due.is_some_and(|t| now >= t) {
            self.long_due = Some(now + self.long_ms);
            due.reminder = true;
        }
        due.urgent = due.reminder && self.calls.is_none();
        if let Some(at) = self.silence_reminder_at()
            && now >= at
        {
            self.silence_reminded = true;
            due.reminder = true;
            due.urgent = true;
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
        let short = self.short_due.filter(|_| self.calls.is_none());
        [short, self.long_due, stale_at, self.silence_reminder_at()].into_iter().flatten().min()
    }

    /// A line that calls: when silence makes a reminder that must go at once.
    fn silence_reminder_at(&self) -> Option<u64> {
        let silence = self.calls?;
        (!self.silence_reminded && !self.stale).then(|| self.last_heard.map(|h| h + silence)).flatten()
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

    /// A sessions line: calls come every 30 min, each one heard (an exchange both
    /// ways); the long timer's reminders ride them.
    #[test]
    fn a_line_that_calls_stays_known_between_calls_and_its_reminders_ride() {
        let grace = 5 * SHORT;
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG).calls(LONG, grace);
        w.set_active(true, 0);
        let (mut reminders, mut urgent, mut stale) = (0, 0, 0);
        let mut now = 0;
        while now < 10 * LONG {
            now += 1000;
            let due = w.poll(now);
            stale += usize::from(due.went_stale);
            reminders += usize::from(due.reminder);
            urgent += usize::from(due.urgent);
            if now % (30 * 60_000) == 0 {
                w.heard(now);
            }
        }
        assert_eq!(stale, 0, "a healthy line that calls never goes unknown");
        assert_eq!(urgent, 0, "nothing calls on its own while calls come");
        // Only the long timer reminds: one per (staggered) long period, not 60 an hour.
        assert!((10..=14).contains(&reminders), "{reminders}");
        let mut fresh = Watchdog::new("a.test", "b.test", SHORT, LONG).calls(LONG, grace);
        fresh.set_active(true, 0);
        assert_eq!(fresh.next_due(), fresh.long_due(), "the short timer wakes nobody");
    }

    /// An idle sessions line: nothing to send, so the only calls are the reminders
    /// silence asks for, once per long period.
    #[test]
    fn an_idle_line_that_calls_calls_once_a_long_period_and_stays_known() {
        let grace = 5 * SHORT;
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG).calls(LONG, grace);
        w.set_active(true, 0);
        let (mut calls, mut stale) = (0, 0);
        let mut now = 0;
        while now < 10 * LONG {
            now += 1000;
            let due = w.poll(now);
            stale += usize::from(due.went_stale);
            if due.urgent {
                calls += 1;
                // The call comes as late as the grace allows and is heard.
                now += grace;
                w.heard(now);
            }
        }
        assert_eq!(stale, 0);
        assert!((9..=10).contains(&calls), "{calls}");
    }

    #[test]
    fn a_dead_line_that_calls_goes_stale_after_the_long_period() {
        let grace = 5 * SHORT;
        let mut w = Watchdog::new("a.test", "b.test", SHORT, LONG).calls(LONG, grace);
        w.set_active(true, 0);
        w.heard(1_000);
        let stale_at = 1_000 + LONG + 2 * SHORT + grace;
        let mut urgent = 0;
        for t in (1_000..stale_at).step_by(1000) {
            urgent += usize::from(w.poll(t).urgent);
        }
        assert_eq!(urgent, 1, "one call asked for after a long period of silence");
        assert!(w.poll(stale_at).went_stale, "nothing heard for long + 2 × short + grace");
        assert!(w.heard(stale_at + 1), "heard again after going stale");
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
