//! The one seam between `/sync` and what it carries.

use std::future::Future;
use std::pin::Pin;

use ruma::{DeviceId, UserId};

use super::SyncResponse;
use crate::error::Result;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream positions one `/sync` answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRange {
    /// The client's token; `None` for an initial (or `full_state`) sync.
    pub since: Option<u64>,
    /// The visible position read before asking any source; the answer's `next_batch`.
    pub upto: u64,
}

impl SyncRange {
    /// Whether a change at `pos` belongs in this answer: in `(since, upto]`, or, for
    /// an initial sync, anything at or below `upto`.
    pub fn contains(&self, pos: u64) -> bool {
        pos <= self.upto && self.since.is_none_or(|since| pos > since)
    }

    /// Whether this is an initial sync (it carries the current state of everything).
    pub fn is_initial(&self) -> bool {
        self.since.is_none()
    }
}

/// One kind of thing a client sees in `/sync`.
///
/// A source records the stream position of each item's last change. Asked for a
/// range, it adds to the answer what `user` may see that changed in it (for an
/// initial sync, everything current the user may see). It must never show a user
/// what they may not see: visibility is the source's job.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Add what changed for `user` in `range` to `out`.
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>>;

    /// Add what changed for `user` syncing on `device` in `range` to `out`: what
    /// `/sync` calls. Sources whose answer depends on the device (to-device messages,
    /// one-time key counts) override it; the others answer per user.
    fn collect_for<'a>(
        &'a self,
        user: &'a UserId,
        device: &'a DeviceId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = device;
        self.collect(user, range, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_half_open_and_initial_takes_all() {
        let r = SyncRange { since: Some(5), upto: 9 };
        assert!(!r.contains(5) && r.contains(6) && r.contains(9) && !r.contains(10));
        let initial = SyncRange { since: None, upto: 9 };
        assert!(initial.contains(0) && initial.contains(9) && !initial.contains(10));
    }
}
