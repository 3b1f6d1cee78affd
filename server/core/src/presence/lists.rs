//! Presence lists with consent: who asked to watch whom, and the answer.
//!
//! The rows live in SQLite; this index mirrors them in memory in both directions
//! (by watcher and by target) because every presence change asks "who may see
//! this?". Only this server changes the rows, so the mirror cannot go stale. The
//! services write each change in a [`crate::storage::Unit`] and mirror it here only
//! after it committed.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::{OwnedUserId, UserId};

use crate::error::{Error, Result};
use crate::storage::{Store, presence as store};

/// Where a watcher stands with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Asked, not answered.
    Pending,
    /// Allowed: the watcher sees the target's presence.
    Accepted,
    /// Refused (or revoked).
    Denied,
}

impl Subscription {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::Pending => "pending",
            Subscription::Accepted => "accepted",
            Subscription::Denied => "denied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Subscription::Pending),
            "accepted" => Some(Subscription::Accepted),
            "denied" => Some(Subscription::Denied),
            _ => None,
        }
    }
}

/// The row that stores edge watcher → target.
pub fn row_of(watcher: &UserId, target: &UserId, edge: Edge) -> store::SubscriptionRow {
    store::SubscriptionRow {
        watcher: watcher.to_string(),
        target: target.to_string(),
        state: edge.state.as_str().to_owned(),
        ts: edge.ts,
        stream_pos: edge.pos,
    }
}

/// One edge of the watch graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Its state.
    pub state: Subscription,
    /// When it was asked or last answered (Unix ms).
    pub ts: u64,
    /// Stream position of its last change.
    pub pos: u64,
}

#[derive(Debug, Default)]
struct Index {
    by_watcher: HashMap<OwnedUserId, HashMap<OwnedUserId, Edge>>,
    by_target: HashMap<OwnedUserId, HashMap<OwnedUserId, Edge>>,
}

impl Index {
    fn put(&mut self, watcher: &UserId, target: &UserId, edge: Edge) {
        self.by_watcher.entry(watcher.to_owned()).or_default().insert(target.to_owned(), edge);
        self.by_target.entry(target.to_owned()).or_default().insert(watcher.to_owned(), edge);
    }

    fn remove(&mut self, watcher: &UserId, target: &UserId) {
        if let Some(m) = self.by_watcher.get_mut(watcher) {
            m.remove(target);
        }
        if let Some(m) = self.by_target.get_mut(target) {
            m.remove(watcher);
        }
    }

    fn get(&self, watcher: &UserId, target: &UserId) -> Option<Edge> {
        self.by_watcher.get(watcher).and_then(|m| m.get(target)).copied()
    }
}

/// The watch graph.
#[derive(Debug, Default)]
pub struct PresenceLists {
    index: Mutex<Index>,
}

impl PresenceLists {
    /// Load every subscription from the database.
    pub fn load(store: &dyn Store) -> Result<Self> {
        let rows = store.load_subscriptions()?;
        let mut index = Index::default();
        for row in rows {
            let (Ok(w), Ok(t), Some(state)) =
                (UserId::parse(&row.watcher), UserId::parse(&row.target), Subscription::parse(&row.state))
            else {
                tracing::warn!(?row, "skipping malformed presence subscription row");
                continue;
            };
            index.put(&w, &t, Edge { state, ts: row.ts, pos: row.stream_pos });
        }
        Ok(Self { index: Mutex::new(index) })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mirror a committed edge watcher → target.
    pub fn put(&self, watcher: &UserId, target: &UserId, edge: Edge) {
        self.index().put(watcher, target, edge);
    }

    /// Mirror a committed removal of watcher → target.
    pub fn remove(&self, watcher: &UserId, target: &UserId) {
        self.index().remove(watcher, target);
    }

    /// How many users `watcher` watches or asked to (for limits).
    pub fn watching_count(&self, watcher: &UserId) -> usize {
        self.index().by_watcher.get(watcher).map_or(0, HashMap::len)
    }

    /// The edge watcher → target, if any.
    pub fn get(&self, watcher: &UserId, target: &UserId) -> Option<Edge> {
        self.index().get(watcher, target)
    }

    /// Whether `viewer` may see `target`'s presence.
    pub fn can_see(&self, viewer: &UserId, target: &UserId) -> bool {
        viewer == target || self.get(viewer, target).is_some_and(|e| e.state == Subscription::Accepted)
    }

    /// Everyone `watcher` asked to watch, with the answers.
    pub fn watching(&self, watcher: &UserId) -> Vec<(OwnedUserId, Edge)> {
        let index = self.index();
        let mut v: Vec<_> =
            index.by_watcher.get(watcher).map(|m| m.iter().map(|(t, e)| (t.clone(), *e)).collect()).unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Everyone allowed to see `target`.
    pub fn accepted_watchers(&self, target: &UserId) -> Vec<OwnedUserId> {
        self.index()
            .by_target
            .get(target)
            .map(|m| m.iter().filter(|(_, e)| e.state == Subscription::Accepted).map(|(w, _)| w.clone()).collect())
            .unwrap_or_default()
    }

    /// Requests waiting for `target`'s answer, oldest first.
    pub fn pending_for(&self, target: &UserId) -> Vec<(OwnedUserId, Edge)> {
        let index = self.index();
        let mut v: Vec<_> = index
            .by_target
            .get(target)
            .map(|m| m.iter().filter(|(_, e)| e.state == Subscription::Pending).map(|(w, e)| (w.clone(), *e)).collect())
            .unwrap_or_default();
        v.sort_by_key(|(w, e)| (e.ts, w.clone()));
        v
    }

    /// Accepted edges whose target is on `server`: (watcher, target).
    pub fn accepted_to_server(&self, server: &str) -> Vec<(OwnedUserId, OwnedUserId)> {
        let index = self.index();
        let mut v: Vec<_> = index
            .by_target
            .iter()
            .filter(|(target, _)| target.server_name().as_str() == server)
            .flat_map(|(target, watchers)| {
                watchers
                    .iter()
                    .filter(|(_, e)| e.state == Subscription::Accepted)
                    .map(move |(w, _)| (w.clone(), target.clone()))
            })
            .collect();
        v.sort();
        v
    }

    /// Whether some user on `server` is an accepted watcher of `target`.
    pub fn has_accepted_watcher_on(&self, target: &UserId, server: &str) -> bool {
        self.index().by_target.get(target).is_some_and(|m| {
            m.iter().any(|(w, e)| e.state == Subscription::Accepted && w.server_name().as_str() == server)
        })
    }

    /// Fail with `M_NOT_FOUND` unless watcher → target exists.
    pub fn require(&self, watcher: &UserId, target: &UserId) -> Result<Edge> {
        self.get(watcher, target).ok_or_else(|| Error::not_found(format!("{watcher} has not asked to watch {target}")))
    }
}
