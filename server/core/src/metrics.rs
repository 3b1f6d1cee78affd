//! Counters the admin API exposes in Prometheus format. Plain atomics: no user IDs,
//! no labels with unbounded values.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Presence changes published to watchers.
    pub presence_changes: AtomicU64,
    /// Presence writes received from clients (PUT status, device reports).
    pub presence_writes: AtomicU64,
    /// /sync requests answered.
    pub syncs: AtomicU64,
    /// /sync requests currently waiting.
    pub syncs_waiting: AtomicU64,
    /// Successful logins.
    pub logins: AtomicU64,
    /// Accounts registered over the API.
    pub registrations: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
}

impl Metrics {
    /// Add one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
