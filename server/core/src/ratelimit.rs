//! Token-bucket rate limits per action and key (client address or user).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::SharedClock;
use crate::config::{Rate, RateLimitConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Password login, keyed by client address.
    Login,
    /// Registration, keyed by client address.
    Register,
    /// Presence and device-status writes, keyed by user.
    Presence,
    /// Presence-list edits (`POST .../presence/list/{userId}`), keyed by user.
    PresenceList,
    /// Answers to presence requests (`POST .../presence/requests/{userId}`), keyed by user.
    PresenceAnswer,
    /// Poll switches (`PUT .../presence/poll`), keyed by user.
    PresencePoll,
    /// Room events, keyed by user.
    RoomSend,
    /// Room creation, keyed by user.
    RoomCreate,
    /// Receipts, read markers and typing, keyed by user.
    RoomEphemeral,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// Buckets beyond this many are pruned of full ones, so many clients cannot grow memory.
const MAX_BUCKETS: usize = 100_000;

/// The rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    clock: SharedClock,
    buckets: Mutex<HashMap<(Action, String), Bucket>>,
}

impl RateLimiter {
    /// A limiter with these rates.
    pub fn new(config: RateLimitConfig, clock: SharedClock) -> Self {
        Self { config, clock, buckets: Mutex::new(HashMap::new()) }
    }

    fn rate(&self, action: Action) -> Rate {
        match action {
            Action::Login => self.config.login,
            Action::Register => self.config.register,
            Action::Presence => self.config.presence,
            Action::PresenceList => self.config.presence_list,
            Action::PresenceAnswer => self.config.presence_answer,
            Action::PresencePoll => self.config.presence_poll,
            Action::RoomSend => self.config.room_send,
            Action::RoomCreate => self.config.room_create,
            Action::RoomEphemeral => self.config.room_ephemeral,
        }
    }

    /// Take one token for `action` by `key`, or fail with `M_LIMIT_EXCEEDED` and how long to wait.
    pub fn check(&self, action: Action, key: &str, metrics: &Metrics) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let rate = self.rate(action);
        let now = self.clock.now_ms();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // Forget buckets that have refilled: they hold no information.
            buckets.retain(|(a, _), b| {
                let r = self.rate(*a);
                b.tokens + (now.saturating_sub(b.updated_ms) as f64 / 1000.0) * r.per_second < f64::from(r.burst)
            });
        }
        let bucket = buckets
            .entry((action, key.to_owned()))
            .or_insert(Bucket { tokens: f64::from(rate.burst), updated_ms: now });
        let elapsed = now.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        bucket.updated_ms = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Metrics::inc(&metrics.rate_limited);
        let wait_s = if rate.per_second > 0.0 { (1.0 - bucket.tokens) / rate.per_second } else { 3600.0 };
        let retry_after_ms = (wait_s * 1000.0).ceil() as u64;
        Err(Error::new(ErrorKind::LimitExceeded { retry_after_ms }, "too many requests; slow down"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn burst_then_refill() {
        let clock = Arc::new(ManualClock::new(0));
        let config = RateLimitConfig { login: Rate { per_second: 2.0, burst: 3 }, ..Default::default() };
        let limiter = RateLimiter::new(config, clock.clone());
        let m = Metrics::default();
        for _ in 0..3 {
            limiter.check(Action::Login, "1.2.3.4", &m).expect("within burst");
        }
        let err = limiter.check(Action::Login, "1.2.3.4", &m).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded { retry_after_ms: 500 });
        limiter.check(Action::Login, "5.6.7.8", &m).expect("other key has its own bucket");
        clock.advance(500);
        limiter.check(Action::Login, "1.2.3.4", &m).expect("refilled");
    }

    #[test]
    fn disabled_never_limits() {
        let config =
            RateLimitConfig { enabled: false, login: Rate { per_second: 0.0, burst: 0 }, ..Default::default() };
        let limiter = RateLimiter::new(config, Arc::new(ManualClock::new(0)));
        limiter.check(Action::Login, "x", &Metrics::default()).expect("disabled");
    }
}
