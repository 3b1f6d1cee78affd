//! Who hears of a change: when a user's visible presence moves, wake the syncs of
//! the user and of every local accepted watcher, and the senders of the peers whose
//! users watch them and asked to be pushed.

use std::collections::HashSet;
use std::sync::Arc;

use ruma::UserId;

use super::lists::{PresenceLists, Subscription};
use crate::ids::is_local;
use crate::outbound::{Outbound, Waiting};
use crate::stream::Notifier;

/// Wakes whoever may see a change; shared by the presence service and the tasks it
/// hands after-commit steps to.
#[derive(Debug)]
pub struct Fanout {
    pub(super) server_name: String,
    pub(super) notifier: Arc<Notifier>,
    pub(super) lists: Arc<PresenceLists>,
    pub(super) outbound: Arc<Outbound>,
}

impl Fanout {
    /// `user`'s visible presence moved to `pos`: wake the user, local accepted
    /// watchers, and the senders of interested peers.
    pub fn presence_moved(&self, user: &UserId, pos: u64) {
        if is_local(user, &self.server_name) {
            self.notifier.bump(user, pos);
        }
        let mut destinations = HashSet::new();
        for watcher in self.lists.accepted_watchers(user) {
            if is_local(&watcher, &self.server_name) {
                self.notifier.bump(&watcher, pos);
            } else {
                destinations.insert(watcher.server_name().to_owned());
            }
        }
        for dest in destinations {
            if self.outbound.is_interested(dest.as_str(), user) {
                self.outbound.wake(dest.as_str(), Waiting::Presence);
            }
        }
    }

    /// Whether a client of `user` cares about their list changed: the peers of the
    /// remote users they watch may need a subscription change.
    pub fn interest_changed(&self, user: &UserId) {
        let mut destinations = HashSet::new();
        for (target, edge) in self.lists.watching(user) {
            if edge.state == Subscription::Accepted && !is_local(&target, &self.server_name) {
                destinations.insert(target.server_name().to_owned());
            }
        }
        for dest in destinations {
            self.outbound.wake(dest.as_str(), Waiting::Short);
        }
    }
}
