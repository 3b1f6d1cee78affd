//! Flow control: how many bytes may be on the line, not yet reported received by the
//! far side. The link must never fill the line's buffers (a modem's, the kernel's):
//! a presence frame written behind a minute of bulk waits a minute. So the sender
//! keeps `in flight = sent - reported` within a window, and the receiver reports what
//! it got (`Received` frames, piggybacked when it can).
//!
//! The window follows the queueing delay, as Vegas and BBR do: each report gives a
//! round-trip sample for the oldest write it newly covers. (The far side sends a
//! report a cork after the first message it has not reported arrived, so that
//! write's sample carries the same cork every time; a newer write's carries part of
//! it, and on a line that carries several messages a cork the samples would scatter
//! by more than the band below.) The smallest sample is the line's own round trip; a
//! sample more than [`QUEUE_HIGH`] above it means bytes are queueing somewhere, and
//! the window shrinks to what would have queued [`QUEUE_LOW`] (once per round trip);
//! a sample below [`QUEUE_LOW`] above it while the sender was held back lets the
//! window grow, once per round trip (the delay signal lags by one, so growing faster
//! would overshoot), towards what would queue the middle of the band and by a
//! quarter at most (a quarter more of a 2.4 s round trip's window would queue 0.6 s
//! at once).
//!
//! The window bounds the bytes on the line, not how fast they go on it: after a
//! pause (one round trip between two transactions of a lane) a whole window would
//! go at once, two seconds of bulk on the seed's line. So writes are also paced at
//! the window over the round trip, at most [`PACE_AHEAD`] ahead of the line.
//!
//! The rate estimate (window over round trip) sizes messages: one message takes at
//! most about [`MESSAGE_TIME`] of line time. A presence frame (which neither the
//! window nor the pacing holds back) so waits behind at most the queue target, the
//! message being written and what the pacing lets ahead: about half a second of bulk.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Queueing delay under which the window may grow.
pub const QUEUE_LOW: Duration = Duration::from_millis(150);
/// Queueing delay over which the window shrinks.
pub const QUEUE_HIGH: Duration = Duration::from_millis(350);
/// How far ahead of the line the pacing lets a sender write: what a presence frame
/// may wait behind of a burst, besides one message.
pub const PACE_AHEAD: Duration = QUEUE_LOW;
/// The queueing delay growth aims at: the middle of the band.
const QUEUE_MID: Duration = Duration::from_millis(250);
/// The smallest growth step, in bytes.
const GROW_STEP: u64 = 16;
/// The line time one message may take at the estimated rate.
pub const MESSAGE_TIME: Duration = Duration::from_millis(250);
/// The smallest window.
const MIN_WINDOW: u64 = 256;
/// The largest window (a fast line needs no more to stay busy across a loopback).
const MAX_WINDOW: u64 = 4 << 20;
/// The first window, before anything was measured.
const FIRST_WINDOW: u64 = 512;
/// The smallest message budget (one presence change must fit).
const MIN_MESSAGE: usize = 64;
/// The largest message budget.
const MAX_MESSAGE: usize = 16 * 1024;

/// One connection's sending window.
#[derive(Debug)]
pub struct Flow {
    sent: u64,
    reported: u64,
    /// Bytes of messages with data not yet covered by a report (only those make the
    /// far side report; control-only messages are covered by the next report).
    data_in_flight: u64,
    window: u64,
    min_rtt: Option<Duration>,
    last_rtt: Option<Duration>,
    writes: VecDeque<(u64, Instant, u64)>,
    held_back: bool,
    next_adjust: Instant,
    next_grow: Instant,
    /// The round trip measured by the handshake, until a report gives one.
    first_rtt: Duration,
    /// When the line will have carried everything written, at the pacing rate.
    line_free: Instant,
}

impl Flow {
    /// A window for a new connection whose handshake took `first_rtt`.
    pub fn new(now: Instant, first_rtt: Duration) -> Self {
        Self {
            sent: 0,
            reported: 0,
            data_in_flight: 0,
            window: FIRST_WINDOW,
            min_rtt: None,
            last_rtt: None,
            writes: VecDeque::new(),
            held_back: false,
            next_adjust: now,
            next_grow: now,
            first_rtt,
            line_free: now,
        }
    }

    /// Bytes written on the connection so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes of data messages on the line not yet reported received.
    pub fn in_flight(&self) -> u64 {
        self.data_in_flight
    }

    /// Whether `n` more bytes may go at `now`: within the window (nothing in flight
    /// always may) and the pacing. The window alone would let a whole window go at
    /// once after a pause (between two transactions of a lane, say): on the seed's
    /// line 2 s of bulk that a presence frame would then wait behind.
    pub fn may_send(&mut self, n: usize, now: Instant) -> bool {
        if self.in_flight() == 0 {
            // Everything sent was reported received: the line is empty.
            self.line_free = self.line_free.min(now);
        }
        let window = self.in_flight() == 0 || self.in_flight() + n as u64 <= self.window;
        let ok = window && self.line_free <= now + PACE_AHEAD;
        if !ok {
            self.held_back = true;
        }
        ok
    }

    /// When a write held back by the pacing may go, if later than `now`.
    pub fn paced_until(&self, now: Instant) -> Option<Instant> {
        let at = self.line_free.checked_sub(PACE_AHEAD)?;
        (at > now).then_some(at)
    }

    /// The pacing rate, in bytes per second: the window over the line's round trip,
    /// a little above the line's rate once the window holds the queue target (the
    /// window, not the pacing, bounds the queue); far above it on a fast line.
    fn pace_rate(&self) -> f64 {
        let rtt = self.min_rtt.unwrap_or(self.first_rtt).as_secs_f64().max(0.000_001);
        self.window as f64 / rtt
    }

    /// A message of `n` bytes was written at `now`; `data`: it held data frames.
    pub fn wrote(&mut self, n: usize, now: Instant, data: bool) {
        self.line_free = self.line_free.max(now) + Duration::from_secs_f64(n as f64 / self.pace_rate());
        self.sent += n as u64;
        if data {
            self.data_in_flight += n as u64;
            // Bounded: one entry per data message in flight, and the window bounds those.
            self.writes.push_back((self.sent, now, n as u64));
        }
    }

    /// An ack says the far side received `total` bytes, some time ago (it comes after
    /// the transaction was applied): in flight drops, but it is no round-trip sample.
    pub fn acked(&mut self, total: u64) {
        self.advance(total);
    }

    /// Drop what `total` covers from in flight; the time of the oldest write it newly
    /// covers (the module's doc says why the oldest).
    fn advance(&mut self, total: u64) -> Option<Instant> {
        if total <= self.reported || total > self.sent {
            return None;
        }
        self.reported = total;
        let mut oldest = None;
        while let Some(&(end, at, n)) = self.writes.front() {
            if end > total {
                break;
            }
            oldest.get_or_insert(at);
            self.data_in_flight -= n;
            self.writes.pop_front();
        }
        oldest
    }

    /// The far side reported `total` bytes received, at `now`.
    pub fn reported(&mut self, total: u64, now: Instant) {
        let Some(at) = self.advance(total) else { return };
        let rtt = now.saturating_duration_since(at);
        self.last_rtt = Some(rtt);
        let min = *self.min_rtt.get_or_insert(rtt);
        let min = if rtt < min {
            self.min_rtt = Some(rtt);
            rtt
        } else {
            min
        };
        let queue = rtt.saturating_sub(min);
        if queue > QUEUE_HIGH {
            if now >= self.next_adjust {
                // Aim at the target at once: the window that would have queued QUEUE_LOW.
                let target = (min + QUEUE_LOW).as_secs_f64() / rtt.as_secs_f64().max(0.001);
                self.window = ((self.window as f64 * target) as u64).max(MIN_WINDOW);
                self.next_adjust = now + rtt;
                self.next_grow = now + rtt;
            }
        } else if queue < QUEUE_LOW && self.held_back && now >= self.next_grow {
            // Grow once per round trip (the delay signal lags by one), towards the window
            // that would queue the middle of the band, by a quarter at most. A quarter
            // more of a long round trip's window would queue a quarter of that round trip
            // at once (half a second on the seed's line), before the signal could say so.
            let target = (min + QUEUE_MID).as_secs_f64() / rtt.as_secs_f64().max(0.001);
            let grown = (self.window as f64 * target.min(1.25)) as u64;
            self.window = grown.max(self.window + GROW_STEP).min(MAX_WINDOW);
            self.held_back = false;
            self.next_grow = now + rtt;
        }
    }

    /// The window: bytes of data messages that may be in flight.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The smallest round trip measured: the line's own.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The last round-trip sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// The line's rate, as the window over the round trip, in bytes per second.
    pub fn rate(&self) -> f64 {
        let rtt = self.min_rtt.map_or(1.0, |r| r.as_secs_f64().max(0.001));
        self.window as f64 / (rtt + QUEUE_LOW.as_secs_f64())
    }

    /// How many plaintext bytes one message may hold.
    pub fn message_budget(&self) -> usize {
        ((self.rate() * MESSAGE_TIME.as_secs_f64()) as usize).clamp(MIN_MESSAGE, MAX_MESSAGE)
    }
}

/// The line time one transaction's queued EDUs take at the estimated rate, counted
/// before compression (so on the line it is a fraction of it).
pub const TXN_LINE_TIME: Duration = Duration::from_secs(60);
/// The smallest transaction budget (a feed EDU of 20 items fits).
const MIN_TXN_BYTES: usize = 8 * 1024;

/// The most queued EDU bytes one transaction should carry on a line of `rate` B/s (0:
/// not measured yet). A transaction is applied only once all of it arrived, and a cut
/// sends it again from its start, so on a slow line a large result goes as several
/// transactions the far side applies one by one as they arrive (200 KB of feed items
/// at 240 B/s: a transaction about every 20 s instead of one after 15 minutes), and a
/// cut repeats at most one of them. On a fast line this is core's limit.
pub fn txn_bytes(rate: f64) -> usize {
    ((rate * TXN_LINE_TIME.as_secs_f64()) as usize).clamp(MIN_TXN_BYTES, tidings_core::exchange::TXN_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `rate` B/s with `latency` each way, fed as fast as the window lets
    /// with messages of a budget and 19 bytes of framing, reported the way the far
    /// side reports: a cork (a tenth of the round trip) after the first data message
    /// not yet reported, by a 20-byte message back. The flow after ten minutes, and
    /// the longest a message waited for the line after the first two (what presence
    /// waits behind bulk).
    fn settle(rate: f64, latency: Duration) -> (Flow, Duration) {
        let start = Instant::now();
        let mut flow = Flow::new(start, latency * 2);
        let cork = latency * 2 / 10;
        let report_back = latency + Duration::from_secs_f64(20.0 / rate);
        let mut t = Duration::ZERO;
        let mut line_free = Duration::ZERO; // when the line finishes what it was given
        let mut arrivals: VecDeque<(Duration, u64)> = VecDeque::new();
        let mut received = 0;
        let mut first_unreported = None;
        let mut reports: VecDeque<(Duration, u64)> = VecDeque::new();
        let mut worst_queue = Duration::ZERO;
        while t < Duration::from_secs(600) {
            while let Some(&(at, total)) = arrivals.front().filter(|(at, _)| *at <= t) {
                received = total;
                first_unreported.get_or_insert(at);
                arrivals.pop_front();
            }
            if first_unreported.is_some_and(|first| t >= first + cork) {
                reports.push_back((t + report_back, received));
                first_unreported = None;
            }
            while let Some(&(at, total)) = reports.front().filter(|(at, _)| *at <= t) {
                flow.reported(total, start + at);
                reports.pop_front();
            }
            let n = flow.message_budget() + 19;
            if flow.may_send(n, start + t) {
                flow.wrote(n, start + t, true);
                let begin = line_free.max(t);
                if t > Duration::from_secs(120) {
                    worst_queue = worst_queue.max(begin - t);
                }
                line_free = begin + Duration::from_secs_f64(n as f64 / rate);
                arrivals.push_back((line_free + latency, flow.sent));
            } else {
                t += Duration::from_millis(5);
            }
        }
        (flow, worst_queue)
    }

    #[test]
    fn on_a_2400_baud_line_the_queue_stays_short_and_the_line_busy() {
        // The bound: presence never waits behind more than about half a
        // second of bulk. Growing by a quarter, the queue reached 0.94 s here.
        for (rate, latency_ms) in [(240.0, 1_000), (240.0, 500), (480.0, 1_000)] {
            let (flow, worst_queue) = settle(rate, Duration::from_millis(latency_ms));
            let busy = flow.sent() as f64 / 600.0 / rate;
            eprintln!("{rate} B/s, {latency_ms} ms: worst queue {worst_queue:?}, line busy {busy:.2}");
            assert!(
                worst_queue <= Duration::from_millis(500),
                "{rate} B/s, {latency_ms} ms: queue reached {worst_queue:?}"
            );
            assert!(busy >= 0.8, "{rate} B/s, {latency_ms} ms: the line was busy {busy:.2} of the time");
        }
        let (flow, _) = settle(240.0, Duration::from_secs(1));
        assert!(flow.message_budget() <= 160, "budget {}", flow.message_budget());
    }

    #[test]
    fn after_a_pause_a_window_does_not_go_at_once() {
        let (mut flow, _) = settle(240.0, Duration::from_secs(1));
        // Everything written is reported (the pause between two transactions).
        let later = Instant::now() + Duration::from_secs(700);
        flow.acked(flow.sent());
        assert_eq!(flow.in_flight(), 0);
        let mut burst = 0;
        while flow.may_send(80, later) {
            flow.wrote(80, later, true);
            burst += 80;
        }
        // The window alone would let all of it go at once: over 1.6 s of this line.
        assert!(flow.window() > 400, "window {}", flow.window());
        // Paced: one message, and what the pacing lets ahead of the line.
        let ahead = (PACE_AHEAD.as_secs_f64() * flow.pace_rate()) as u64;
        assert!(burst <= 80 + ahead + 80, "{burst} bytes at once (window {})", flow.window());
        let next = flow.paced_until(later).expect("the writer is told when to try again");
        assert!(next > later && next <= later + Duration::from_secs(2), "{:?}", next - later);
        assert!(flow.may_send(80, next), "at that time the next message may go");
    }

    #[test]
    fn on_a_fast_line_the_window_opens() {
        let (flow, _) = settle(10_000_000.0, Duration::from_micros(50));
        assert!(flow.window > 64 * 1024, "window {}", flow.window);
        assert_eq!(txn_bytes(flow.rate()), tidings_core::exchange::TXN_BYTES, "a fast line takes core's largest");
    }

    #[test]
    fn on_a_2400_baud_line_a_transaction_is_about_a_minute_of_it() {
        let (flow, _) = settle(240.0, Duration::from_secs(1));
        let bytes = txn_bytes(flow.rate());
        // A minute at 240 B/s is 14,400 bytes; the estimate may be off by the queueing margin.
        assert!((8 * 1024..=20_000).contains(&bytes), "{bytes} bytes at {} B/s", flow.rate());
        assert_eq!(txn_bytes(0.0), MIN_TXN_BYTES, "before any estimate: the smallest");
    }
}
