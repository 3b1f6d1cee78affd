//! Typing notices: in memory only, who is typing in each room until when, expired by
//! the one timer idiom ([`Deadlines`]). A change takes its stream position while the
//! lock it is applied under is held, so `/sync` never misses one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::service::lock;
use crate::clock::SharedClock;
use crate::timers::Deadlines;

/// Who is typing where.
#[derive(Debug)]
pub struct Typing {
    clock: SharedClock,
    max_timeout_ms: u64,
    typing: Mutex<HashMap<OwnedRoomId, BTreeSet<OwnedUserId>>>,
    pub(crate) deadlines: Deadlines<(OwnedRoomId, OwnedUserId)>,
}

impl Typing {
    /// Nobody typing; notices last at most `max_timeout_ms`.
    pub fn new(clock: SharedClock, max_timeout_ms: u64) -> Self {
        Self { clock, max_timeout_ms, typing: Mutex::new(HashMap::new()), deadlines: Deadlines::new() }
    }

    /// `user` types in `room` for `timeout_ms` (capped), or stopped (`None`).
    /// `stamp` runs under the lock when the set of typists changed, and takes the
    /// change's stream position. Returns whether it changed.
    pub fn set(&self, room: &RoomId, user: &UserId, timeout_ms: Option<u64>, stamp: impl FnOnce()) -> bool {
        let key = (room.to_owned(), user.to_owned());
        let mut typing = lock(&self.typing);
        let users = typing.entry(room.to_owned()).or_default();
        let changed = match timeout_ms {
            Some(ms) => {
                let until = self.clock.now_ms() + ms.min(self.max_timeout_ms);
                self.deadlines.schedule(&key, Some(until));
                users.insert(user.to_owned())
            }
            None => {
                self.deadlines.schedule(&key, None);
                users.remove(user)
            }
        };
        if users.is_empty() {
            typing.remove(room);
        }
        if changed {
            stamp();
        }
        changed
    }

    /// Who types in `room`, sorted.
    pub fn users(&self, room: &RoomId) -> Vec<OwnedUserId> {
        lock(&self.typing).get(room).map(|u| u.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn notices_expire_on_the_timer_and_are_capped() {
        let clock: SharedClock = Arc::new(crate::clock::TokioClock::new());
        let typing = Arc::new(Typing::new(Arc::clone(&clock), 30_000));
        let room = RoomId::parse("!r:hs.test").expect("room");
        let alice = UserId::parse("@alice:hs.test").expect("user");
        let stamps = AtomicU32::new(0);
        let stamp = || {
            stamps.fetch_add(1, Ordering::SeqCst);
        };
        assert!(typing.set(&room, &alice, Some(1_000_000), stamp));
        assert!(!typing.set(&room, &alice, Some(1_000), || {}), "still typing: no change");
        assert_eq!(typing.users(&room), vec![alice.clone()]);
        let due = typing.deadlines.next().expect("a deadline");
        assert!(due <= clock.now_ms() + 30_000, "capped at max_timeout_ms");
        tokio::time::advance(std::time::Duration::from_millis(1_001)).await;
        let expired = typing.deadlines.take_due(clock.now_ms());
        assert_eq!(expired, vec![(room.clone(), alice.clone())], "the latest timeout wins");
        assert!(typing.set(&room, &alice, None, stamp));
        assert!(typing.users(&room).is_empty());
        assert_eq!(stamps.load(Ordering::SeqCst), 2);
    }
}
