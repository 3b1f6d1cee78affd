//! The global stream position, kept monotonic across restarts.
//!
//! Positions are handed out from memory; a ceiling reserved ahead in the database
//! guarantees that after a crash the counter restarts above every position a client
//! may already hold in a `next_batch` token, without a disk write per event.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;

use crate::error::Result;
use crate::storage::meta;

const CEILING_KEY: &str = "stream_ceiling";
/// How many positions are reserved at a time.
const BLOCK: u64 = 1_000_000;

/// Hands out increasing stream positions.
#[derive(Debug)]
pub struct StreamCounter {
    current: AtomicU64,
    reserved: AtomicU64,
}

impl StreamCounter {
    /// Load the counter at start: it resumes at the stored ceiling (above anything
    /// issued before) and reserves a new block before any position is handed out.
    pub fn load(conn: &Connection, floor: u64) -> Result<Self> {
        let ceiling = meta::get(conn, CEILING_KEY)?.unwrap_or(0).max(0) as u64;
        let start = ceiling.max(floor);
        let reserved = start + BLOCK;
        meta::set(conn, CEILING_KEY, reserved as i64)?;
        Ok(Self { current: AtomicU64::new(start), reserved: AtomicU64::new(reserved) })
    }

    /// A counter for tests, starting at `start` with nothing persisted.
    pub fn in_memory(start: u64) -> Self {
        Self { current: AtomicU64::new(start), reserved: AtomicU64::new(u64::MAX) }
    }

    /// The newest position handed out.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    /// Hand out the next position.
    pub fn next(&self) -> u64 {
        self.current.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// If the counter has used half its reserved block, the new ceiling to persist.
    pub fn ceiling_to_persist(&self) -> Option<u64> {
        let reserved = self.reserved.load(Ordering::SeqCst);
        (self.current() + BLOCK / 2 > reserved).then(|| self.current() + BLOCK)
    }

    /// Persist a ceiling returned by [`Self::ceiling_to_persist`].
    pub fn persist_ceiling(&self, conn: &Connection, ceiling: u64) -> Result<()> {
        meta::set(conn, CEILING_KEY, ceiling as i64)?;
        self.reserved.fetch_max(ceiling, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_above_everything_issued() {
        let db = crate::storage::memory();
        db.call_blocking(|conn| {
            let c = StreamCounter::load(conn, 0)?;
            let issued = (0..10).map(|_| c.next()).max().unwrap_or(0);
            // A crash here loses the in-memory counter: the next start must still be above `issued`.
            let again = StreamCounter::load(conn, 0)?;
            assert!(again.next() > issued);
            Ok(())
        })
        .expect("counter");
    }

    #[test]
    fn asks_for_a_new_ceiling_halfway() {
        let db = crate::storage::memory();
        db.call_blocking(|conn| {
            let c = StreamCounter::load(conn, 0)?;
            assert!(c.ceiling_to_persist().is_none());
            c.current.store(BLOCK / 2 + 1, Ordering::SeqCst);
            let ceiling = c.ceiling_to_persist().expect("halfway through the block");
            c.persist_ceiling(conn, ceiling)?;
            assert!(c.ceiling_to_persist().is_none());
            Ok(())
        })
        .expect("counter");
    }
}
