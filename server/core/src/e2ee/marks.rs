//! What end-to-end encryption's sync sources remember so that a woken long poll,
//! which usually has no key news, needs no database read for them:
//!
//! - [`E2eeMarks::device_lists`]: the newest position of any device-list change
//!   (raised in the write, before the position is visible; see
//!   [`crate::stream::Marks`]); at or below the token, `device_lists.changed` is empty;
//! - the one-time and fallback key counts of each device, read once and kept until a
//!   write that may change them (upload, claim, device deletion) bumps the
//!   generation. The generation is read before the database and bumped after the
//!   write committed, so a count read before the commit is never kept past it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stream::Marks;

/// Unclaimed one-time keys per algorithm and the unused fallback key algorithms.
pub type KeyCounts = (Vec<(String, u64)>, Vec<String>);

/// Devices whose counts are kept at most; past it the cache starts afresh.
const MAX_COUNTS: usize = 100_000;
/// The one key of [`E2eeMarks::device_lists`].
pub const ANY_USER: &str = "";

/// Shared by the key and device services, which write what the sources read.
#[derive(Debug)]
pub struct E2eeMarks {
    /// Under [`ANY_USER`]: the newest position of a device-list change.
    pub device_lists: Marks,
    generation: AtomicU64,
    counts: Mutex<HashMap<(String, String), (u64, KeyCounts)>>,
}

impl E2eeMarks {
    /// Marks for a server whose visible position at start-up is `start`.
    pub fn new(start: u64) -> Self {
        Self { device_lists: Marks::new(start), generation: AtomicU64::new(0), counts: Mutex::default() }
    }

    /// The generation to read counts under; pass it to [`Self::keep_counts`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A write that may change some device's key counts committed.
    pub fn counts_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The kept counts of a device, if still current.
    pub fn counts(&self, user: &str, device: &str) -> Option<KeyCounts> {
        let generation = self.generation();
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&(user.to_owned(), device.to_owned())).filter(|(g, _)| *g == generation).map(|(_, c)| c.clone())
    }

    /// Keep counts read under `generation`.
    pub fn keep_counts(&self, user: &str, device: &str, generation: u64, read: &KeyCounts) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_COUNTS {
            counts.clear();
        }
        counts.insert((user.to_owned(), device.to_owned()), (generation, read.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_before_a_change_are_not_kept_past_it() {
        let m = E2eeMarks::new(0);
        let g = m.generation();
        m.counts_changed(); // a write committed while the read was under way
        m.keep_counts("@a:x", "D", g, &(vec![("signed_curve25519".into(), 5)], vec![]));
        assert_eq!(m.counts("@a:x", "D"), None);
        let g = m.generation();
        m.keep_counts("@a:x", "D", g, &(vec![("signed_curve25519".into(), 4)], vec![]));
        assert_eq!(m.counts("@a:x", "D").map(|c| c.0[0].1), Some(4));
        m.counts_changed();
        assert_eq!(m.counts("@a:x", "D"), None);
    }
}
