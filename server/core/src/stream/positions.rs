//! Stream positions and the commit watermark.
//!
//! Every change a user may see takes a position from one counter. A change that
//! must be written first is *in flight* from [`Positions::reserve`] until
//! [`Positions::commit`]; [`Positions::visible`] is the highest position at and below
//! which nothing is in flight. `/sync` reads only up to the visible position, so an
//! answer never names a position past a change its sources could not yet show: the
//! race in which a sync read the counter between a change taking its position and
//! landing, and skipped it for good, cannot happen.
//!
//! Positions stay monotonic across restarts: a ceiling is reserved ahead in the
//! `meta` table, and the counter resumes at it, above every position a client can
//! hold in a `next_batch` token, even after `kill -9`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;
use crate::storage::{Store, Unit};

const CEILING_KEY: &str = "stream_ceiling";
/// How many positions are reserved at a time.
const BLOCK: u64 = 1_000_000;

#[derive(Debug)]
struct State {
    current: u64,
    in_flight: BTreeSet<u64>,
    reserved: u64,
}

impl State {
    fn visible(&self) -> u64 {
        self.in_flight.first().map_or(self.current, |first| first - 1)
    }
}

/// The counter, the in-flight set and the visible watermark.
#[derive(Debug)]
pub struct Positions {
    state: Mutex<State>,
    visible: watch::Sender<u64>,
}

impl Positions {
    /// Load at start: resume at the stored ceiling (above anything issued before)
    /// and reserve a new block before any position is handed out.
    pub fn load(store: &dyn Store, floor: u64) -> Result<Self> {
        let ceiling = store.meta_get(CEILING_KEY)?.unwrap_or(0).max(0) as u64;
        let start = ceiling.max(floor);
        let reserved = start + BLOCK;
        store.meta_set(CEILING_KEY, reserved as i64)?;
        Ok(Self::starting_at(start, reserved))
    }

    /// Positions for tests, starting at `start` with nothing persisted.
    pub fn in_memory(start: u64) -> Self {
        Self::starting_at(start, u64::MAX)
    }

    fn starting_at(start: u64, reserved: u64) -> Self {
        Self {
            state: Mutex::new(State { current: start, in_flight: BTreeSet::new(), reserved }),
            visible: watch::channel(start).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new position for a change that is yet to be committed: it holds the
    /// watermark below itself until [`Self::commit`].
    pub fn reserve(&self) -> u64 {
        let mut s = self.state();
        s.current += 1;
        let pos = s.current;
        s.in_flight.insert(pos);
        pos
    }

    /// [`Self::reserve`] a position for a change written in `unit`; it is released
    /// when the unit has committed (after its in-memory steps) or failed.
    pub fn reserve_in(self: &std::sync::Arc<Self>, unit: &mut Unit) -> u64 {
        let pos = self.reserve();
        let me = std::sync::Arc::clone(self);
        unit.finally(move || me.commit(pos));
        pos
    }

    /// The change at `pos` landed (or failed and will never be shown): release it.
    pub fn commit(&self, pos: u64) {
        let visible = {
            let mut s = self.state();
            s.in_flight.remove(&pos);
            s.visible()
        };
        self.publish(visible);
    }

    /// A new position for a change that is already in place (applied in memory under
    /// its own lock, with this call made while holding it).
    pub fn next_committed(&self) -> u64 {
        let (pos, visible) = {
            let mut s = self.state();
            s.current += 1;
            (s.current, s.visible())
        };
        self.publish(visible);
        pos
    }

    fn publish(&self, visible: u64) {
        self.visible.send_if_modified(|v| {
            let newer = visible > *v;
            if newer {
                *v = visible;
            }
            newer
        });
    }

    /// The newest position handed out (committed or not).
    pub fn current(&self) -> u64 {
        self.state().current
    }

    /// The highest position with nothing in flight at or below it.
    pub fn visible(&self) -> u64 {
        self.state().visible()
    }

    /// Wait until the visible position reaches `pos`, at most `timeout`.
    pub async fn wait_visible(&self, pos: u64, timeout: Duration) -> u64 {
        let mut rx = self.visible.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v >= pos)).await;
        self.visible()
    }

    /// If half the reserved block is used, the new ceiling to persist.
    pub fn ceiling_to_persist(&self) -> Option<u64> {
        let s = self.state();
        (s.current + BLOCK / 2 > s.reserved).then(|| s.current + BLOCK)
    }

    /// Persist a ceiling returned by [`Self::ceiling_to_persist`].
    pub fn persist_ceiling(&self, store: &dyn Store, ceiling: u64) -> Result<()> {
        store.meta_set(CEILING_KEY, ceiling as i64)?;
        let mut s = self.state();
        s.reserved = s.reserved.max(ceiling);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stays_below_what_is_in_flight() {
        let p = Positions::in_memory(10);
        let a = p.reserve();
        let b = p.reserve();
        let c = p.next_committed();
        assert_eq!((a, b, c), (11, 12, 13));
        assert_eq!(p.visible(), 10, "11 is in flight");
        p.commit(b);
        assert_eq!(p.visible(), 10, "11 still in flight");
        p.commit(a);
        assert_eq!(p.visible(), 13);
        assert_eq!(p.current(), 13);
    }

    #[test]
    fn restarts_above_everything_issued() {
        let db = crate::storage::memory();
        let issued = db
            .write_blocking(|s| {
                let p = Positions::load(s, 0)?;
                Ok((0..10).map(|_| p.next_committed()).max().unwrap_or(0))
            })
            .expect("first run");
        // A crash here loses the in-memory counter: the next start must still be above `issued`.
        let again = db.write_blocking(|s| Positions::load(s, 0)).expect("second run");
        assert!(again.next_committed() > issued);
        assert!(again.visible() > issued);
    }

    #[test]
    fn asks_for_a_new_ceiling_halfway() {
        let db = crate::storage::memory();
        db.write_blocking(|s| {
            let p = Positions::load(s, 0)?;
            assert!(p.ceiling_to_persist().is_none());
            p.state().current = BLOCK / 2 + 1;
            let ceiling = p.ceiling_to_persist().expect("halfway through the block");
            p.persist_ceiling(s, ceiling)?;
            assert!(p.ceiling_to_persist().is_none());
            Ok(())
        })
        .expect("positions");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_visibility_ends_at_the_commit() {
        let p = std::sync::Arc::new(Positions::in_memory(0));
        let pos = p.reserve();
        let p2 = std::sync::Arc::clone(&p);
        let waiter = tokio::spawn(async move { p2.wait_visible(pos, Duration::from_secs(60)).await });
        tokio::task::yield_now().await;
        p.commit(pos);
        assert_eq!(waiter.await.expect("task"), pos);
    }
}
