//! Presence across servers, as core sees it: what to push to a peer, what to ask
//! of it, and applying what it sent. Every EDU about a user not on its origin, or
//! about a user no local user is accepted to watch, is refused with a reason (the
//! federation layer logs it and still acknowledges the transaction).

use std::collections::HashSet;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use sha2::{Digest, Sha256};

use super::lists::{Edge, Subscription};
use super::service::{PresenceService, RemoteEntry};
use super::state::Snapshot;
use crate::ids::is_local;
use crate::outbound::edus::{AnswerEdu, PresenceUpdate, SubscribeEdu, WatchEdge};
use crate::storage::accounts as account_store;

/// Why an EDU was not applied.
pub type Refusal = String;

fn digest<'a>(states: impl Iterator<Item = (&'a UserId, &'a str, Option<&'a str>)>) -> String {
    let mut lines: Vec<String> = states.map(|(u, p, m)| format!("{u}\u{1f}{p}\u{1f}{}", m.unwrap_or(""))).collect();
    lines.sort();
    let hash = Sha256::digest(lines.join("\n").as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn from_origin(user: &UserId, origin: &str) -> Result<(), Refusal> {
    if user.server_name().as_str() != origin {
        return Err(format!("{origin} may not speak for {user}"));
    }
    Ok(())
}

impl PresenceService {
    fn require_local(&self, user: &UserId) -> Result<(), Refusal> {
        if !is_local(user, &self.server_name) {
            return Err(format!("{user} is not a user of this server"));
        }
        Ok(())
    }

    /// Local users whose state `destination` may be pushed: it asked for them, and one
    /// of its users is an accepted watcher.
    pub fn pushable_to(&self, destination: &str) -> Vec<OwnedUserId> {
        self.outbound
            .interest(destination)
            .into_iter()
            .filter(|u| self.lists.has_accepted_watcher_on(u, destination))
            .collect()
    }

    /// What to push to `destination`: pushable users whose state moved in
    /// `(since, upto]`, and those it is `owed`.
    pub fn pushes_for(
        &self,
        destination: &str,
        since: u64,
        upto: u64,
        owed: &HashSet<OwnedUserId>,
    ) -> Vec<PresenceUpdate> {
        let now = self.clock.now_ms();
        self.pushable_to(destination)
            .into_iter()
            .filter_map(|user| {
                let (snapshot, pos) = self.local_published(&user).unwrap_or((Snapshot::offline(), 0));
                let moved = pos > since && pos <= upto;
                (moved || owed.contains(&user)).then(|| update_of(user, &snapshot, now))
            })
            .collect()
    }

    /// Remote users on `destination` that a local user is accepted to watch and cares
    /// about now (a client syncing, or watching switched on).
    pub fn wanted_from(&self, destination: &str) -> Vec<OwnedUserId> {
        let mut wanted: Vec<OwnedUserId> = self
            .lists
            .accepted_to_server(destination)
            .into_iter()
            .filter(|(watcher, _)| is_local(watcher, &self.server_name) && self.is_polling(watcher))
            .map(|(_, target)| target)
            .collect();
        wanted.sort();
        wanted.dedup();
        wanted
    }

    /// Whether any presence subscription exists with `destination`, either way.
    pub fn has_subscriptions_with(&self, destination: &str) -> bool {
        !self.pushable_to(destination).is_empty() || !self.wanted_from(destination).is_empty()
    }

    /// Digest of the states we promise to push to `destination`.
    pub fn digest_pushed(&self, destination: &str) -> String {
        let states: Vec<(OwnedUserId, String, Option<String>)> = self
            .pushable_to(destination)
            .into_iter()
            .map(|u| {
                let s = self.local_published(&u).map(|(s, _)| s).unwrap_or_else(Snapshot::offline);
                (u, s.state.as_str().to_owned(), s.status_msg)
            })
            .collect();
        digest(states.iter().map(|(u, p, m)| (u.as_ref(), p.as_str(), m.as_deref())))
    }

    /// Digest of the states we hold from `destination`'s users that we want.
    pub fn digest_held(&self, destination: &str) -> String {
        let wanted = self.wanted_from(destination);
        let remote = self.remote();
        let states: Vec<(OwnedUserId, String, Option<String>)> = wanted
            .into_iter()
            .filter_map(|u| {
                let r = remote.get(&u).filter(|r| r.known)?;
                Some((u, r.snapshot.state.as_str().to_owned(), r.snapshot.status_msg.clone()))
            })
            .collect();
        digest(states.iter().map(|(u, p, m)| (u.as_ref(), p.as_str(), m.as_deref())))
    }

    /// Apply one pushed state from `origin`.
    pub fn apply_remote_presence(&self, origin: &str, update: PresenceUpdate) -> Result<(), Refusal> {
        from_origin(&update.user_id, origin)?;
        let watched = self.lists.accepted_watchers(&update.user_id).iter().any(|w| is_local(w, &self.server_name));
        if !watched {
            return Err(format!("no local user is accepted to watch {}", update.user_id));
        }
        let state = match update.presence.as_str() {
            "online" => PresenceState::Online,
            "unavailable" => PresenceState::Unavailable,
            "offline" => PresenceState::Offline,
            other => return Err(format!("unknown presence state '{other}'")),
        };
        let now = self.clock.now_ms();
        let snapshot = Snapshot {
            currently_active: state == PresenceState::Online && update.currently_active.unwrap_or(false),
            state,
            status_msg: update.status_msg,
            last_active_ms: Some(now.saturating_sub(update.last_active_ago)),
            devices: Vec::new(),
        };
        let pos = {
            let mut remote = self.remote();
            let changed = remote.get(&update.user_id).is_none_or(|r| !r.known || r.snapshot.differs_from(&snapshot));
            if !changed {
                return Ok(());
            }
            let pos = self.counter.next();
            remote.insert(update.user_id.clone(), RemoteEntry { snapshot, known: true, pos });
            pos
        };
        self.tell_watchers(&update.user_id, pos);
        Ok(())
    }

    /// `origin`'s promises lapsed: what it told us becomes unknown.
    pub fn mark_remote_unknown(&self, origin: &str) {
        let lapsed: Vec<(OwnedUserId, u64)> = {
            let mut remote = self.remote();
            remote
                .iter_mut()
                .filter(|(u, r)| r.known && u.server_name().as_str() == origin)
                .map(|(u, r)| {
                    r.known = false;
                    r.pos = self.counter.next();
                    (u.clone(), r.pos)
                })
                .collect()
        };
        if !lapsed.is_empty() {
            tracing::info!(peer = origin, users = lapsed.len(), "peer went quiet: its users' presence is now unknown");
        }
        for (user, pos) in lapsed {
            self.tell_watchers(&user, pos);
        }
    }

    /// A remote user asks to watch one of ours.
    pub async fn apply_remote_invite(&self, origin: &str, edge: WatchEdge) -> Result<(), Refusal> {
        from_origin(&edge.watcher, origin)?;
        self.require_local(&edge.target)?;
        let target = edge.target.to_string();
        let exists = self.db.call(move |c| account_store::user_exists(c, &target)).await.map_err(|e| e.to_string())?;
        if !exists {
            return Err(format!("there is no user {}", edge.target));
        }
        if self.lists.get(&edge.watcher, &edge.target).is_some_and(|e| e.state != Subscription::Denied) {
            return Ok(());
        }
        let pos = self.counter.next();
        let new = Edge { state: Subscription::Pending, ts: self.clock.now_ms(), pos };
        self.lists.put(&edge.watcher, &edge.target, new).await.map_err(|e| e.to_string())?;
        self.notifier.bump(&edge.target, pos);
        Ok(())
    }

    /// A remote user answered one of ours.
    pub async fn apply_remote_answer(&self, origin: &str, answer: AnswerEdu) -> Result<(), Refusal> {
        from_origin(&answer.target, origin)?;
        self.require_local(&answer.watcher)?;
        if self.lists.get(&answer.watcher, &answer.target).is_none() {
            return Err(format!("{} never asked to watch {}", answer.watcher, answer.target));
        }
        let state = if answer.allow { Subscription::Accepted } else { Subscription::Denied };
        let pos = self.counter.next();
        let edge = Edge { state, ts: self.clock.now_ms(), pos };
        self.lists.put(&answer.watcher, &answer.target, edge).await.map_err(|e| e.to_string())?;
        self.notifier.bump(&answer.watcher, pos);
        // Accepted: the sender may now subscribe to the target.
        self.outbound.wake(origin);
        Ok(())
    }

    /// A remote watcher stops watching one of ours.
    pub async fn apply_remote_drop(&self, origin: &str, edge: WatchEdge) -> Result<(), Refusal> {
        from_origin(&edge.watcher, origin)?;
        self.require_local(&edge.target)?;
        if self.lists.get(&edge.watcher, &edge.target).is_some() {
            self.lists.remove(&edge.watcher, &edge.target).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `origin` changes which of our users it wants pushed; it is owed their current
    /// state (the answer of seed 003's workflow 2).
    pub async fn apply_remote_subscribe(&self, origin: &str, sub: SubscribeEdu) -> Result<Vec<Refusal>, Refusal> {
        let mut refused = Vec::new();
        let mut added = Vec::new();
        for user in sub.add {
            if !is_local(&user, &self.server_name) {
                refused.push(format!("{user} is not a user of this server"));
            } else if !self.lists.has_accepted_watcher_on(&user, origin) {
                refused.push(format!("no user of {origin} is accepted to watch {user}"));
            } else {
                added.push(user);
            }
        }
        self.outbound.set_interest(origin, &added, &sub.remove, sub.replace).await.map_err(|e| e.to_string())?;
        self.outbound.owe(origin, added);
        Ok(refused)
    }
}

fn update_of(user: OwnedUserId, snapshot: &Snapshot, now: u64) -> PresenceUpdate {
    PresenceUpdate {
        user_id: user,
        presence: snapshot.state.as_str().to_owned(),
        last_active_ago: snapshot.last_active_ms.map_or(0, |a| now.saturating_sub(a)),
        currently_active: (snapshot.state == PresenceState::Online).then_some(snapshot.currently_active),
        status_msg: snapshot.status_msg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_and_sees_changes() {
        let a = UserId::parse("@a:x.test").expect("id");
        let b = UserId::parse("@b:x.test").expect("id");
        let d1 = digest([(a.as_ref(), "online", None), (b.as_ref(), "offline", Some("gone"))].into_iter());
        let d2 = digest([(b.as_ref(), "offline", Some("gone")), (a.as_ref(), "online", None)].into_iter());
        let d3 = digest([(a.as_ref(), "unavailable", None), (b.as_ref(), "offline", Some("gone"))].into_iter());
        assert_eq!(d1, d2);
        assert_ne!(d1, d3);
        assert_eq!(d1.len(), 16);
    }
}
