//! Presence across servers, in one place: the presence-list protocol of seed 003.
//!
//! - consent travels as EDUs (invite, answer, drop), written in the same database
//!   transaction as the edge they change;
//! - one transaction carries both the push of our users' states and our subscription
//!   to theirs; a subscription is answered with the current states (*owed*);
//! - two watchdog timers per peer ([`Watchdog`]) on the shared timer idiom: the short
//!   one reset by anything heard, the long one by a reminder; either expiring sends a
//!   reminder with two digests, so an unchanged reminder is tiny; a digest mismatch
//!   pushes everything again, or asks again; what a peer told us becomes unknown
//!   after 2 × short with nothing heard.
//!
//! Every EDU about a user not on its origin, or about a user no local user is
//! accepted to watch, is refused with a reason (logged; the transaction succeeds).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use sha2::{Digest, Sha256};

use super::consent::Consent;
use super::edus::{self, AnswerEdu, PresenceEdu, PresenceUpdate, ReminderEdu, SubscribeEdu, WatchEdge};
use super::service::{PresenceService, RemoteEntry};
use super::state::Snapshot;
use super::watchdog::Watchdog;
use crate::config::PeersConfig;
use crate::error::Result;
use crate::exchange::{Batch, EduFamily, Handled, IncomingEdu};
use crate::ids::is_local;
use crate::outbound::Waiting;
use crate::storage::Unit;
use crate::sync::BoxFuture;
use crate::timers::Deadlines;

/// What this server keeps of the presence protocol with one peer.
#[derive(Debug)]
struct PeerState {
    watchdog: Watchdog,
    /// A reminder goes out with the next transaction.
    reminder_due: bool,
    /// The next transaction re-sends our whole subscription (after staleness or a
    /// reminder whose digest did not match).
    resubscribe: bool,
    /// The subscription the peer was last sent; `None` until the first one.
    subscribed: Option<BTreeSet<OwnedUserId>>,
}

/// The presence-list protocol with every peer.
#[derive(Debug)]
pub struct PresencePeers {
    me: Weak<PresencePeers>,
    presence: Arc<PresenceService>,
    consent: Arc<Consent>,
    peers: Mutex<HashMap<String, PeerState>>,
    timers: Deadlines<String>,
}

/// When each peer's watchdogs fire next, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogDue {
    /// The short timer (Unix ms), if running.
    pub short: Option<u64>,
    /// The long timer (Unix ms), if running.
    pub long: Option<u64>,
}

fn digest<'a>(states: impl Iterator<Item = (&'a UserId, &'a str, Option<&'a str>)>) -> String {
    let mut lines: Vec<String> = states.map(|(u, p, m)| format!("{u}\u{1f}{p}\u{1f}{}", m.unwrap_or(""))).collect();
    lines.sort();
    let hash = Sha256::digest(lines.join("\n").as_bytes());
    crate::ids::hex(&hash[..8])
}

pub(super) fn from_origin(user: &UserId, origin: &str) -> Result<(), String> {
    if user.server_name().as_str() != origin {
        return Err(format!("{origin} may not speak for {user}"));
    }
    Ok(())
}

pub(super) fn refused(reason: Result<(), String>) -> Option<Handled> {
    reason.err().map(Handled::Refused)
}

fn parse<T: serde::de::DeserializeOwned>(edu: IncomingEdu) -> Result<T, Handled> {
    serde_json::from_value(edu.content).map_err(|e| Handled::Refused(format!("bad {} content: {e}", edu.edu_type)))
}

impl PresencePeers {
    /// The protocol with the peers of `config`, timers off until a subscription exists
    /// either way.
    pub fn new(presence: Arc<PresenceService>, consent: Arc<Consent>, config: &PeersConfig) -> Arc<Self> {
        let own = presence.server_name.clone();
        let (short_ms, long_ms) = (config.short_watchdog_ms, config.long_watchdog_ms);
        let peers = config
            .names
            .iter()
            .map(|p| {
                let mut watchdog = Watchdog::new(&own, p, short_ms, long_ms);
                if config.calls.contains(p) {
                    watchdog = watchdog.calls(long_ms, config.calls_grace_ms);
                }
                let state = PeerState { watchdog, reminder_due: false, resubscribe: false, subscribed: None };
                (p.clone(), state)
            })
            .collect();
        let me = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            presence,
            consent,
            peers: Mutex::new(peers),
            timers: Deadlines::new(),
        });
        for peer in me.peer_names() {
            me.refresh(&peer);
        }
        me
    }

    fn peer_names(&self) -> Vec<String> {
        self.peers().keys().cloned().collect()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerState>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run the watchdogs until the process ends.
    pub async fn run(self: Arc<Self>) {
        let clock = Arc::clone(&self.presence.clock);
        let me = Arc::clone(&self);
        self.timers
            .run(clock, move |due| {
                for peer in due {
                    me.fire(&peer);
                }
                async {}
            })
            .await;
    }

    /// A watchdog of `peer` may be due: act on it and re-arm.
    fn fire(&self, peer: &str) {
        let now = self.presence.clock.now_ms();
        let due = {
            let mut peers = self.peers();
            let Some(state) = peers.get_mut(peer) else { return };
            let due = state.watchdog.poll(now);
            if due.reminder {
                state.reminder_due = true;
            }
            if due.went_stale {
                state.resubscribe = true;
            }
            self.timers.schedule(&peer.to_owned(), state.watchdog.next_due());
            due
        };
        if due.went_stale {
            self.presence.mark_remote_unknown(peer);
        }
        if due.urgent {
            self.presence.outbound.wake_now(peer);
        }
    }

    /// Turn `peer`'s timers on or off as subscriptions exist either way, and re-arm.
    fn refresh(&self, peer: &str) {
        let active = self.presence.has_subscriptions_with(peer);
        let now = self.presence.clock.now_ms();
        let mut peers = self.peers();
        if let Some(state) = peers.get_mut(peer) {
            state.watchdog.set_active(active, now);
            self.timers.schedule(&peer.to_owned(), state.watchdog.next_due());
        }
    }

    /// When `peer`'s watchdogs fire next.
    pub fn watchdog_due(&self, peer: &str) -> WatchdogDue {
        self.peers().get(peer).map_or(WatchdogDue { short: None, long: None }, |s| WatchdogDue {
            short: s.watchdog.short_due(),
            long: s.watchdog.long_due(),
        })
    }

    fn with_peer<T>(&self, peer: &str, f: impl FnOnce(&mut PeerState) -> T) -> Option<T> {
        self.peers().get_mut(peer).map(f)
    }

    /// A reminder from `origin` arrived and its transaction committed.
    fn reminded(&self, origin: &str, reminder: &ReminderEdu) {
        let now = self.presence.clock.now_ms();
        self.with_peer(origin, |s| {
            s.watchdog.reminded(now);
            // Its reminder checked both directions (both digests): ours is not needed.
            s.reminder_due = false;
            self.timers.schedule(&origin.to_owned(), s.watchdog.next_due());
        });
        let presence = &self.presence;
        if reminder.held != presence.digest_pushed(origin) {
            // What the peer holds of our users differs: push it all again.
            presence.outbound.owe(origin, presence.pushable_to(origin));
        }
        if reminder.pushed != presence.digest_held(origin) {
            // What we hold of theirs differs: ask again for all of it.
            self.with_peer(origin, |s| s.resubscribe = true);
            presence.outbound.wake(origin, Waiting::Short);
        }
    }
}

impl EduFamily for PresencePeers {
    fn edu_types(&self) -> &'static [&'static str] {
        &[edus::PRESENCE, edus::INVITE, edus::ANSWER, edus::DROP, edus::SUBSCRIBE, edus::REMINDER]
    }

    fn receive<'a>(&'a self, origin: &'a str, edu: IncomingEdu, unit: &'a mut Unit) -> BoxFuture<'a, Result<Handled>> {
        Box::pin(async move {
            let p = &self.presence;
            let handled = match edu.edu_type.as_str() {
                edus::PRESENCE => match parse::<PresenceEdu>(edu) {
                    Ok(content) => self.receive_presence(origin, content, unit),
                    Err(h) => h,
                },
                edus::INVITE => match parse::<WatchEdge>(edu) {
                    Ok(content) => self.consent.receive_invite(origin, content, unit).await?,
                    Err(h) => h,
                },
                edus::ANSWER => match parse::<AnswerEdu>(edu) {
                    Ok(content) => self.consent.receive_answer(origin, content, unit),
                    Err(h) => h,
                },
                edus::DROP => match parse::<WatchEdge>(edu) {
                    Ok(content) => self.consent.receive_drop(origin, content, unit),
                    Err(h) => h,
                },
                edus::SUBSCRIBE => match parse::<SubscribeEdu>(edu) {
                    Ok(content) => p.receive_subscribe(origin, content, unit),
                    Err(h) => h,
                },
                edus::REMINDER => match parse::<ReminderEdu>(edu) {
                    Ok(reminder) => {
                        let (me, origin) = (self.me.clone(), origin.to_owned());
                        unit.after(move |ok| {
                            if let (true, Some(me)) = (ok, me.upgrade()) {
                                me.reminded(&origin, &reminder);
                            }
                        });
                        Handled::Applied
                    }
                    Err(h) => h,
                },
                other => Handled::Refused(format!("unknown EDU type {other}")),
            };
            Ok(handled)
        })
    }

    fn gather<'a>(&'a self, destination: &'a str, batch: &'a mut Batch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.refresh(destination);
            let presence = &self.presence;
            let outbound = &presence.outbound;
            let cursor = outbound.cursor(destination).await?;
            let upto = presence.stream_position().max(cursor);
            batch.cursor = Some(upto);
            let owed = outbound.take_owed(destination);
            let push = presence.pushes_for(destination, cursor, upto, &owed);
            if !push.is_empty() {
                batch.push(edus::PRESENCE, PresenceEdu { push });
            }
            let wanted: BTreeSet<OwnedUserId> = presence.wanted_from(destination).into_iter().collect();
            let (subscription, resubscribe, reminder) = self
                .with_peer(destination, |s| {
                    let resubscribe = std::mem::take(&mut s.resubscribe);
                    let reminder = std::mem::take(&mut s.reminder_due);
                    (subscription_change(s.subscribed.as_ref(), &wanted, resubscribe), resubscribe, reminder)
                })
                .unwrap_or((None, false, false));
            if !owed.is_empty() || subscription.is_some() || reminder {
                batch.one_off();
            }
            if let Some(sub) = &subscription {
                batch.push(edus::SUBSCRIBE, sub);
            }
            if reminder {
                let content = ReminderEdu {
                    pushed: presence.digest_pushed(destination),
                    held: presence.digest_held(destination),
                };
                batch.push(edus::REMINDER, content);
            }
            let me = self.me.clone();
            let (dest, sent_subscription) = (destination.to_owned(), subscription.is_some());
            let outbound = Arc::clone(outbound);
            batch.on_stored(move |ok| {
                let Some(me) = me.upgrade() else { return };
                me.with_peer(&dest, |s| {
                    if ok {
                        if sent_subscription {
                            s.subscribed = Some(wanted);
                        }
                    } else {
                        s.resubscribe |= resubscribe;
                        s.reminder_due |= reminder;
                    }
                });
                if !ok {
                    outbound.restore_owed(&dest, owed);
                }
            });
            Ok(())
        })
    }

    fn heard(&self, peer: &str, now: u64) {
        let was_stale = self
            .with_peer(peer, |s| {
                let was_stale = s.watchdog.heard(now);
                if was_stale {
                    s.resubscribe = true;
                }
                self.timers.schedule(&peer.to_owned(), s.watchdog.next_due());
                was_stale
            })
            .unwrap_or(false);
        if was_stale {
            // Back from silence: ask again for everything.
            self.presence.outbound.wake(peer, Waiting::Short);
        }
    }
}

impl PresencePeers {
    /// `m.presence` from `origin`: check each update now, apply it once committed.
    fn receive_presence(&self, origin: &str, content: PresenceEdu, unit: &mut Unit) -> Handled {
        let mut refusals = Vec::new();
        let mut accepted = Vec::new();
        for update in content.push {
            match self.presence.check_remote_presence(origin, update) {
                Ok(checked) => accepted.push(checked),
                Err(reason) => refusals.push(reason),
            }
        }
        if !accepted.is_empty() {
            let presence = Arc::clone(&self.presence);
            unit.after(move |ok| {
                if ok {
                    for (user, snapshot) in accepted {
                        presence.apply_remote_presence(user, snapshot);
                    }
                }
            });
        }
        if refusals.is_empty() { Handled::Applied } else { Handled::Refused(summarize(&refusals)) }
    }
}

/// The subscription EDU to send, given what the peer has and what we want now.
pub fn subscription_change(
    subscribed: Option<&BTreeSet<OwnedUserId>>,
    wanted: &BTreeSet<OwnedUserId>,
    resubscribe: bool,
) -> Option<SubscribeEdu> {
    match subscribed {
        Some(_) | None if resubscribe => {
            Some(SubscribeEdu { add: wanted.iter().cloned().collect(), remove: Vec::new(), replace: true })
        }
        None if wanted.is_empty() => None,
        None => Some(SubscribeEdu { add: wanted.iter().cloned().collect(), remove: Vec::new(), replace: true }),
        Some(had) => {
            let add: Vec<_> = wanted.difference(had).cloned().collect();
            let remove: Vec<_> = had.difference(wanted).cloned().collect();
            (!add.is_empty() || !remove.is_empty()).then_some(SubscribeEdu { add, remove, replace: false })
        }
    }
}

impl PresenceService {
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

    fn check_remote_presence(&self, origin: &str, update: PresenceUpdate) -> Result<(OwnedUserId, Snapshot), String> {
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
        if update.status_msg.as_ref().is_some_and(|m| m.len() > super::MAX_STATUS_MSG_BYTES) {
            return Err(format!("status_msg of {} is over {} bytes", update.user_id, super::MAX_STATUS_MSG_BYTES));
        }
        let now = self.clock.now_ms();
        let snapshot = Snapshot {
            currently_active: state == PresenceState::Online && update.currently_active.unwrap_or(false),
            state,
            status_msg: update.status_msg,
            last_active_ms: Some(now.saturating_sub(update.last_active_ago)),
            devices: Vec::new(),
        };
        Ok((update.user_id, snapshot))
    }

    /// Hold what a remote user's server told us, and tell whoever may see it.
    fn apply_remote_presence(&self, user: OwnedUserId, snapshot: Snapshot) {
        let pos = {
            let mut remote = self.remote();
            let changed = remote.get(&user).is_none_or(|r| !r.known || r.snapshot.differs_from(&snapshot));
            if !changed {
                return;
            }
            let pos = self.positions.next_committed();
            remote.insert(user.clone(), RemoteEntry { snapshot, known: true, pos });
            pos
        };
        self.fanout.presence_moved(&user, pos);
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
                    r.pos = self.positions.next_committed();
                    (u.clone(), r.pos)
                })
                .collect()
        };
        if !lapsed.is_empty() {
            tracing::info!(peer = origin, users = lapsed.len(), "peer went quiet: its users' presence is now unknown");
        }
        for (user, pos) in lapsed {
            self.fanout.presence_moved(&user, pos);
        }
    }

    /// `origin` changes which of our users it wants pushed; it is owed their current
    /// state (the answer of seed 003's workflow 2).
    fn receive_subscribe(&self, origin: &str, sub: SubscribeEdu, unit: &mut Unit) -> Handled {
        let mut refusals = Vec::new();
        let mut added = Vec::new();
        for user in sub.add {
            if !is_local(&user, &self.server_name) {
                refusals.push(format!("{user} is not a user of this server"));
            } else if !self.lists.has_accepted_watcher_on(&user, origin) {
                refusals.push(format!("no user of {origin} is accepted to watch {user}"));
            } else {
                added.push(user);
            }
        }
        self.outbound.set_interest_in(unit, origin, added.clone(), sub.remove, sub.replace);
        let (outbound, origin) = (Arc::clone(&self.outbound), origin.to_owned());
        unit.after(move |ok| {
            if ok {
                outbound.owe(&origin, added);
            }
        });
        if refusals.is_empty() { Handled::Applied } else { Handled::Refused(summarize(&refusals)) }
    }
}

/// At most this many reasons are spelled out in one refusal (an EDU may name
/// thousands of users; the log line stays short).
const MAX_REASONS: usize = 5;

/// The reasons of a partly refused EDU, the first few spelled out and the rest counted.
fn summarize(reasons: &[String]) -> String {
    let shown = reasons.iter().take(MAX_REASONS).cloned().collect::<Vec<_>>().join("; ");
    match reasons.len().saturating_sub(MAX_REASONS) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
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
    fn long_refusals_are_summarized() {
        let reasons: Vec<String> = (0..8).map(|n| format!("r{n}")).collect();
        assert_eq!(summarize(&reasons[..2]), "r0; r1");
        assert_eq!(summarize(&reasons), "r0; r1; r2; r3; r4; and 3 more");
    }

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

    fn set(names: &[&str]) -> BTreeSet<OwnedUserId> {
        names.iter().map(|n| UserId::parse(format!("@{n}:b.test")).expect("id")).collect()
    }

    #[test]
    fn first_subscription_is_whole_then_diffs() {
        assert_eq!(subscription_change(None, &set(&[]), false), None);
        let first = subscription_change(None, &set(&["x", "y"]), false).expect("first");
        assert!(first.replace && first.add.len() == 2);
        assert_eq!(subscription_change(Some(&set(&["x", "y"])), &set(&["x", "y"]), false), None);
        let diff = subscription_change(Some(&set(&["x", "y"])), &set(&["y", "z"]), false).expect("diff");
        assert_eq!(
            (diff.add, diff.remove, diff.replace),
            (set(&["z"]).into_iter().collect(), set(&["x"]).into_iter().collect(), false)
        );
        let again = subscription_change(Some(&set(&["x"])), &set(&["x"]), true).expect("resubscribe");
        assert!(again.replace);
    }
}
