//! Bulk gives way to a presence batch about to close.
//!
//! A presence frame is never held back by the flow control, but it cannot overtake
//! what is already on the line: on the seed's line the bulk written before it (the
//! queue the window allows, and the message being written) is up to 0.7 s. Core
//! knows when the presence batch for a peer closes (its batch window, `batch_ms`
//! after the first change), so bulk stops being written from the moment presence
//! waits until that batch is written: the queue drains while the batch gathers, and
//! the batch meets an almost empty line.
//!
//! A batch due at once (a line that calls has a call up, a reminder is due) leaves
//! the line no time to drain, so bulk does not hold back for it: that would only
//! part bulk from the batch's message for nothing.
//!
//! Two bounds keep this from starving bulk. One yield lasts until the batch window
//! that started it closes (plus [`GATHER_GRACE`] for the sender to gather and queue
//! the batch), never through the windows after it. And a new yield starts only once
//! bulk has run for as long as the last yield lasted, so bulk keeps at least half
//! of the line however often presence changes.

use std::time::{Duration, Instant};

/// How long after the batch window closed bulk still waits for the batch: the
/// sender reads the database and queues the transaction meanwhile.
pub const GATHER_GRACE: Duration = Duration::from_millis(100);

/// The writer's bulk yield state.
#[derive(Debug)]
pub struct BulkYield {
    /// The yield under way: until when it holds.
    until: Option<Instant>,
    /// When the yield under way began.
    began: Instant,
    /// When bulk last went on after a yield.
    resumed: Instant,
    /// How long the last yield lasted.
    last: Duration,
}

impl BulkYield {
    /// No yield yet, at `now`.
    pub fn new(now: Instant) -> Self {
        Self { until: None, began: now, resumed: now, last: Duration::ZERO }
    }

    /// Whether bulk holds back at `now`, and until when: `presence_due` is how long
    /// until the presence batch waiting for the peer closes, if one waits.
    pub fn holds(&mut self, now: Instant, presence_due: Option<Duration>) -> Option<Instant> {
        match self.until {
            Some(until) if now < until => Some(until),
            Some(_) => {
                self.end(now);
                None
            }
            None => {
                // A batch due at once (a call is up, a reminder is due) leaves the line
                // no time to drain: holding bulk back would only cost it a message.
                let due = presence_due.filter(|due| !due.is_zero())?;
                if now.saturating_duration_since(self.resumed) < self.last {
                    return None;
                }
                let until = now + due + GATHER_GRACE;
                (self.until, self.began) = (Some(until), now);
                Some(until)
            }
        }
    }

    /// Until when the yield under way holds, if one is.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Presence data was written at `now`: the batch bulk waited for has gone.
    pub fn presence_written(&mut self, now: Instant) {
        if self.until.is_some() {
            self.end(now);
        }
    }

    fn end(&mut self, now: Instant) {
        self.until = None;
        self.last = now.saturating_duration_since(self.began);
        self.resumed = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn bulk_holds_until_the_batch_is_written() {
        let t0 = Instant::now();
        let mut y = BulkYield::new(t0);
        assert_eq!(y.holds(t0, None), None, "nothing waits: bulk goes");
        assert_eq!(y.holds(t0, Some(Duration::ZERO)), None, "a batch due at once: bulk goes");
        let until = y.holds(t0, Some(500 * MS)).expect("presence waits: bulk holds");
        assert_eq!(until, t0 + 500 * MS + GATHER_GRACE);
        // A later look (the window is the same) holds to the same time.
        assert_eq!(y.holds(t0 + 200 * MS, Some(300 * MS)), Some(until));
        y.presence_written(t0 + 520 * MS);
        assert_eq!(y.holds(t0 + 530 * MS, None), None, "the batch went: bulk goes on");
    }

    #[test]
    fn a_yield_ends_with_its_window_even_if_presence_keeps_coming() {
        let t0 = Instant::now();
        let mut y = BulkYield::new(t0);
        let until = y.holds(t0, Some(500 * MS)).expect("holds");
        // The batch found nothing to send (no presence written), and a new window is open.
        assert_eq!(y.holds(until, Some(500 * MS)), None, "the yield is over at its deadline");
        // Bulk now runs as long as the last yield lasted before the next one.
        let yielded = until - t0;
        assert_eq!(y.holds(until + yielded - MS, Some(400 * MS)), None);
        assert!(y.holds(until + yielded, Some(400 * MS)).is_some());
    }

    #[test]
    fn under_constant_presence_bulk_keeps_half_the_line() {
        // A batch every 500 ms, forever: bulk yields at most half the time.
        let t0 = Instant::now();
        let mut y = BulkYield::new(t0);
        let (mut held, mut t) = (Duration::ZERO, t0);
        while t < t0 + Duration::from_secs(60) {
            let phase = (t - t0).as_millis() as u64 % 500;
            if phase == 490 {
                y.presence_written(t); // the batch goes 490 ms into its window
            }
            if y.holds(t, Some(Duration::from_millis(500 - phase))).is_some() {
                held += 10 * MS; // bulk held for this 10 ms step
            }
            t += 10 * MS;
        }
        assert!(held <= Duration::from_secs(30), "bulk held {held:?} of 60 s");
        assert!(held >= Duration::from_secs(20), "and presence still got its yields: {held:?}");
    }
}
