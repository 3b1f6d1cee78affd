//! When a feed is polled next: pure arithmetic, so it is tested without a clock.
//!
//! The base interval shrinks with the number of local subscribers (`4 ×
//! min_interval_ms / subscribers`), within `[min_interval_ms, max_interval_ms]`. What
//! the origin asks for (Cache-Control max-age, Expires, RSS `<ttl>`, `sy:updatePeriod`) is a floor, capped
//! at `max_interval_ms` so a watched feed is never forgotten. Failures double the
//! interval each time up to `max_interval_ms` (never stopping), and a Retry-After is a
//! floor too. A little jitter (up to a tenth) keeps feeds that start together from
//! polling together.

/// The inputs of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    /// Local subscribers.
    pub subscribers: u64,
    /// The origin's freshness or ttl, ms.
    pub hint_ms: Option<u64>,
    /// Failures in a row.
    pub failures: u32,
    /// Retry-After of the last answer, ms.
    pub retry_after_ms: Option<u64>,
}

/// The interval before the next poll, without jitter.
pub fn interval_ms(min_ms: u64, max_ms: u64, i: Inputs) -> u64 {
    let base = (min_ms.saturating_mul(4) / i.subscribers.max(1)).clamp(min_ms, max_ms);
    let floored = base.max(i.hint_ms.unwrap_or(0).min(max_ms));
    let backed_off =
        if i.failures == 0 { floored } else { floored.saturating_mul(1u64 << i.failures.min(20)).min(max_ms) };
    backed_off.max(i.retry_after_ms.unwrap_or(0).min(max_ms))
}

/// `interval` plus up to a tenth of it, `r` in `[0, 1)`.
pub fn with_jitter(interval: u64, r: f64) -> u64 {
    interval + ((interval as f64 / 10.0) * r.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 300_000;
    const MAX: u64 = 86_400_000;

    fn subs(n: u64) -> Inputs {
        Inputs { subscribers: n, ..Inputs::default() }
    }

    #[test]
    fn more_subscribers_poll_sooner_within_bounds() {
        assert_eq!(interval_ms(MIN, MAX, subs(1)), 4 * MIN);
        assert_eq!(interval_ms(MIN, MAX, subs(2)), 2 * MIN);
        assert_eq!(interval_ms(MIN, MAX, subs(1000)), MIN, "never below min_interval_ms");
    }

    #[test]
    fn origin_hints_are_floors_capped_at_the_maximum() {
        let hinted = Inputs { hint_ms: Some(3_600_000), ..subs(10) };
        assert_eq!(interval_ms(MIN, MAX, hinted), 3_600_000);
        let huge = Inputs { hint_ms: Some(30 * MAX), ..subs(10) };
        assert_eq!(interval_ms(MIN, MAX, huge), MAX);
        let short = Inputs { hint_ms: Some(1_000), ..subs(10) };
        assert_eq!(interval_ms(MIN, MAX, short), MIN, "a short max-age does not poll faster");
    }

    #[test]
    fn failures_back_off_but_never_stop() {
        let one = interval_ms(MIN, MAX, Inputs { failures: 1, ..subs(4) });
        let three = interval_ms(MIN, MAX, Inputs { failures: 3, ..subs(4) });
        assert_eq!((one, three), (2 * MIN, 8 * MIN));
        assert_eq!(interval_ms(MIN, MAX, Inputs { failures: 200, ..subs(4) }), MAX);
        let told = Inputs { retry_after_ms: Some(7_200_000), ..subs(4) };
        assert_eq!(interval_ms(MIN, MAX, told), 7_200_000);
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        assert_eq!(with_jitter(1000, 0.0), 1000);
        assert!(with_jitter(1000, 0.99) <= 1100);
    }
}
