//! Time as the rest of core sees it: milliseconds since the Unix epoch, from a
//! clock that tests can replace.
//!
//! [`TokioClock`] reads tokio's monotonic clock and offsets it to wall time once at
//! start, so a test that calls `tokio::time::pause()` moves presence timers, batch
//! windows and this clock together: a simulated day takes seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// Wall time that advances with tokio's (pausable) clock.
#[derive(Debug)]
pub struct TokioClock {
    base_instant: tokio::time::Instant,
    base_unix_ms: u64,
}

impl TokioClock {
    /// A clock anchored to the system's wall time now.
    pub fn new() -> Self {
        let base_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Self { base_instant: tokio::time::Instant::now(), base_unix_ms }
    }

    /// The tokio instant at which this clock reads `unix_ms` (for sleeping until then).
    pub fn instant_at(&self, unix_ms: u64) -> tokio::time::Instant {
        let offset = unix_ms.saturating_sub(self.base_unix_ms);
        self.base_instant + std::time::Duration::from_millis(offset)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_unix_ms + self.base_instant.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told to: for unit tests of pure timing logic.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock that reads `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self { now: AtomicU64::new(start_ms) }
    }

    /// Move the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
