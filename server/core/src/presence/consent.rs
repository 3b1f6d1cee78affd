//! Consent: who asked to watch whom, and the answers, from local users and from
//! peers. Every change is written in a [`Unit`] (with the EDU that tells the peer,
//! when there is one) and mirrored in [`PresenceLists`] only once it committed; its
//! stream position is held in flight until then, so `/sync` never skips it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ruma::{OwnedUserId, UserId};

use super::edus::{self, AnswerEdu, WatchEdge};
use super::fanout::Fanout;
use super::federation::{from_origin, refused};
use super::lists::{self, Edge, PresenceLists, Subscription};
use super::service::PresenceService;
use crate::clock::SharedClock;
use crate::error::{Error, ErrorKind, Result};
use crate::exchange::Handled;
use crate::ids::is_local;
use crate::outbound::{Outbound, Waiting};
use crate::storage::{Db, Unit};
use crate::stream::{Notifier, Positions};

/// The consent graph's writes and checks.
#[derive(Debug)]
pub struct Consent {
    pub(super) server_name: String,
    pub(super) clock: SharedClock,
    pub(super) db: Db,
    pub(super) positions: Arc<Positions>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) lists: Arc<PresenceLists>,
    pub(super) outbound: Arc<Outbound>,
    pub(super) fanout: Arc<Fanout>,
    /// The most users one list holds, and the most requests pending for one user.
    pub(super) max_list_entries: usize,
    /// Per target, invites from peers accepted into units not yet in memory, so the
    /// `max_list_entries` cap on pending requests holds within one transaction and
    /// across concurrent ones.
    pub(super) invites_in_flight: Arc<Mutex<HashMap<OwnedUserId, usize>>>,
}

impl Consent {
    /// The consent service over the presence service's graph and wake-ups.
    pub fn new(presence: &PresenceService, max_list_entries: usize) -> Arc<Self> {
        Arc::new(Self {
            server_name: presence.server_name.clone(),
            clock: Arc::clone(&presence.clock),
            db: presence.db.clone(),
            positions: Arc::clone(&presence.positions),
            notifier: Arc::clone(&presence.notifier),
            lists: Arc::clone(&presence.lists),
            outbound: Arc::clone(&presence.outbound),
            fanout: Arc::clone(&presence.fanout),
            max_list_entries,
            invites_in_flight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn require_local(&self, user: &UserId) -> Result<(), String> {
        if !is_local(user, &self.server_name) {
            return Err(format!("{user} is not a user of this server"));
        }
        Ok(())
    }

    /// Every pending request to `target`.
    pub fn requests(&self, target: &UserId) -> Vec<(OwnedUserId, Edge)> {
        self.lists.pending_for(target)
    }

    fn list_full(&self) -> Error {
        Error::new(
            ErrorKind::LimitExceeded { retry_after_ms: 0 },
            format!("a presence list holds at most {} users (presence.max_list_entries)", self.max_list_entries),
        )
    }

    /// Check, before anything changes, that `watcher`'s list stays within
    /// `max_list_entries` once `drop` is dropped and `invite` invited (in that order);
    /// the error [`PresenceService::invite`] would give part-way otherwise.
    pub fn check_list_room(&self, watcher: &UserId, invite: &[OwnedUserId], drop: &[OwnedUserId]) -> Result<()> {
        let listed = |t: &UserId| self.lists.get(watcher, t).is_some();
        let dropped: HashSet<&UserId> = drop.iter().map(AsRef::as_ref).filter(|t| listed(t)).collect();
        let added: HashSet<&UserId> =
            invite.iter().map(AsRef::as_ref).filter(|t| !listed(t) || dropped.contains(t)).collect();
        let after = self.lists.watching_count(watcher).saturating_sub(dropped.len()) + added.len();
        if after > self.max_list_entries { Err(self.list_full()) } else { Ok(()) }
    }

    /// `watcher` asks to watch `target`. Asking again while pending or accepted changes nothing;
    /// asking again after a refusal asks anew. Beyond `max_list_entries` (the
    /// watcher's list, or the requests pending for the target) it is refused.
    pub async fn invite(&self, watcher: &UserId, target: &UserId) -> Result<()> {
        if watcher == target {
            return Err(Error::invalid_param("you always see your own presence; you cannot watch yourself"));
        }
        if is_local(target, &self.server_name) {
            let t = target.to_string();
            if !self.db.read(move |s| s.user_exists(&t)).await? {
                return Err(Error::not_found(format!("there is no user {target}")));
            }
        }
        let existing = self.lists.get(watcher, target);
        if existing.is_some_and(|e| e.state != Subscription::Denied) {
            return Ok(());
        }
        if existing.is_none() && self.lists.watching_count(watcher) >= self.max_list_entries {
            return Err(self.list_full());
        }
        if self.lists.pending_for(target).len() >= self.max_list_entries {
            return Err(Error::new(
                ErrorKind::LimitExceeded { retry_after_ms: 0 },
                format!(
                    "{target} has {} requests waiting, the most presence.max_list_entries allows",
                    self.max_list_entries
                ),
            ));
        }
        let mut unit = Unit::new();
        let pos = self.positions.reserve_in(&mut unit);
        let edge = Edge { state: Subscription::Pending, ts: self.clock.now_ms(), pos };
        self.put_edge(&mut unit, watcher, target, edge, &[target]);
        if !is_local(target, &self.server_name) {
            let content = serde_json::json!(WatchEdge { watcher: watcher.to_owned(), target: target.to_owned() });
            self.outbound.queue_in(&mut unit, target.server_name().as_str(), edus::INVITE, &content);
        }
        self.db.submit_unit(unit).wait().await
    }

    /// Write edge watcher → target in `unit`; once committed, mirror it and wake `wake`.
    fn put_edge(&self, unit: &mut Unit, watcher: &UserId, target: &UserId, edge: Edge, wake: &[&UserId]) {
        let row = lists::row_of(watcher, target, edge);
        unit.write(move |s| s.put_subscription(&row));
        let (lists, notifier) = (Arc::clone(&self.lists), Arc::clone(&self.notifier));
        let (w, t) = (watcher.to_owned(), target.to_owned());
        let wake: Vec<OwnedUserId> = wake.iter().map(|u| (*u).to_owned()).collect();
        unit.after(move |ok| {
            if ok {
                lists.put(&w, &t, edge);
                for user in &wake {
                    notifier.bump(user, edge.pos);
                }
            }
        });
    }

    /// Remove edge watcher → target in `unit`; once committed, unmirror it.
    fn remove_edge(&self, unit: &mut Unit, watcher: &UserId, target: &UserId) {
        let (w, t) = (watcher.to_string(), target.to_string());
        unit.write(move |s| s.delete_subscription(&w, &t));
        let (lists, fanout) = (Arc::clone(&self.lists), Arc::clone(&self.fanout));
        let (w, t) = (watcher.to_owned(), target.to_owned());
        unit.after(move |ok| {
            if ok {
                lists.remove(&w, &t);
                fanout.interest_changed(&w);
            }
        });
    }

    /// `watcher` stops watching `target` (or withdraws the request).
    pub async fn drop_watch(&self, watcher: &UserId, target: &UserId) -> Result<()> {
        if self.lists.get(watcher, target).is_none() {
            return Ok(());
        }
        let mut unit = Unit::new();
        self.remove_edge(&mut unit, watcher, target);
        if !is_local(target, &self.server_name) {
            let content = serde_json::json!(WatchEdge { watcher: watcher.to_owned(), target: target.to_owned() });
            self.outbound.queue_in(&mut unit, target.server_name().as_str(), edus::DROP, &content);
        }
        self.db.submit_unit(unit).wait().await
    }

    /// `target` answers `watcher`'s request; `allow: false` also revokes an accepted watcher.
    pub async fn answer(&self, target: &UserId, watcher: &UserId, allow: bool) -> Result<()> {
        let edge = self.lists.require(watcher, target)?;
        let state = if allow { Subscription::Accepted } else { Subscription::Denied };
        if edge.state == state {
            return Ok(());
        }
        let mut unit = Unit::new();
        let pos = self.positions.reserve_in(&mut unit);
        self.put_edge(&mut unit, watcher, target, Edge { state, ts: self.clock.now_ms(), pos }, &[watcher, target]);
        if !is_local(watcher, &self.server_name) {
            let content =
                serde_json::json!(AnswerEdu { watcher: watcher.to_owned(), target: target.to_owned(), allow });
            self.outbound.queue_in(&mut unit, watcher.server_name().as_str(), edus::ANSWER, &content);
        }
        self.db.submit_unit(unit).wait().await
    }

    /// A remote user asks to watch one of ours.
    pub(super) async fn receive_invite(&self, origin: &str, edge: WatchEdge, unit: &mut Unit) -> Result<Handled> {
        if let Some(refusal) = refused(from_origin(&edge.watcher, origin).and(self.require_local(&edge.target))) {
            return Ok(refusal);
        }
        let target = edge.target.to_string();
        if !self.db.read(move |s| s.user_exists(&target)).await? {
            // Answered as a refusal, so the asker does not wait forever.
            let content = serde_json::json!(AnswerEdu {
                watcher: edge.watcher.clone(),
                target: edge.target.clone(),
                allow: false
            });
            self.outbound.queue_in(unit, origin, edus::ANSWER, &content);
            return Ok(Handled::Refused(format!("there is no user {}; answered as refused", edge.target)));
        }
        let in_flight = Arc::clone(&self.invites_in_flight);
        let already = self.lists.get(&edge.watcher, &edge.target).is_some_and(|e| e.state != Subscription::Denied);
        if !already {
            let mut counts = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = self.lists.pending_for(&edge.target).len() + counts.get(&edge.target).copied().unwrap_or(0);
            if waiting >= self.max_list_entries {
                return Ok(Handled::Refused(format!(
                    "{} has {} requests waiting (presence.max_list_entries)",
                    edge.target, self.max_list_entries
                )));
            }
            *counts.entry(edge.target.clone()).or_default() += 1;
            drop(counts);
            let target = edge.target.clone();
            unit.finally(move || {
                let mut counts = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = counts.get_mut(&target) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.remove(&target);
                    }
                }
            });
        }
        // Whether the edge is new is decided by the database inside the unit, so an
        // invite that follows a drop in the same transaction sees the drop.
        let pos = self.positions.reserve_in(unit);
        let new = Edge { state: Subscription::Pending, ts: self.clock.now_ms(), pos };
        let row = lists::row_of(&edge.watcher, &edge.target, new);
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked_in = Arc::clone(&asked);
        unit.write(move |s| {
            let state = s.subscription_state(&row.watcher, &row.target)?;
            if state.is_none_or(|st| st == Subscription::Denied.as_str()) {
                s.put_subscription(&row)?;
                asked_in.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        });
        let (lists, notifier) = (Arc::clone(&self.lists), Arc::clone(&self.notifier));
        unit.after(move |ok| {
            if ok && asked.load(std::sync::atomic::Ordering::SeqCst) {
                lists.put(&edge.watcher, &edge.target, new);
                notifier.bump(&edge.target, new.pos);
            }
        });
        Ok(Handled::Applied)
    }

    /// A remote user answered one of ours.
    pub(super) fn receive_answer(&self, origin: &str, answer: AnswerEdu, unit: &mut Unit) -> Handled {
        if let Some(refusal) = refused(from_origin(&answer.target, origin).and(self.require_local(&answer.watcher))) {
            return refusal;
        }
        if self.lists.get(&answer.watcher, &answer.target).is_none() {
            return Handled::Refused(format!("{} never asked to watch {}", answer.watcher, answer.target));
        }
        let state = if answer.allow { Subscription::Accepted } else { Subscription::Denied };
        let pos = self.positions.reserve_in(unit);
        let edge = Edge { state, ts: self.clock.now_ms(), pos };
        self.put_edge(unit, &answer.watcher, &answer.target, edge, &[&answer.watcher]);
        // Accepted: the sender may now subscribe to the target.
        let (outbound, origin) = (Arc::clone(&self.outbound), origin.to_owned());
        unit.after(move |ok| {
            if ok {
                outbound.wake(&origin, Waiting::Short);
            }
        });
        Handled::Applied
    }

    /// A remote watcher stops watching one of ours.
    pub(super) fn receive_drop(&self, origin: &str, edge: WatchEdge, unit: &mut Unit) -> Handled {
        if let Some(refusal) = refused(from_origin(&edge.watcher, origin).and(self.require_local(&edge.target))) {
            return refusal;
        }
        // Unconditional: an invite earlier in the same transaction is in the unit, not
        // yet in memory.
        self.remove_edge(unit, &edge.watcher, &edge.target);
        Handled::Applied
    }
}
