//! The presence service: applies what clients do to each user's state machine,
//! publishes visible changes on the sync stream, wakes exactly the users allowed to
//! see them, times idleness and absence, and writes state behind to SQLite.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};

use super::deadlines::Deadlines;
use super::lists::{Edge, PresenceLists, Subscription};
use super::state::{CarriedOver, Snapshot, Timings, UserPresence};
use crate::clock::SharedClock;
use crate::config::PresenceConfig;
use crate::error::{Error, Result};
use crate::ids::is_local;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::outbound::edus::{self, AnswerEdu, WatchEdge};
use crate::storage::{Db, accounts as account_store, presence as store};
use crate::sync::{Notifier, StreamCounter};

/// How often presence is written behind to the database.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Entry {
    presence: UserPresence,
    published: Snapshot,
    pos: u64,
}

/// A remote user's presence as their server last told us.
#[derive(Debug, Clone)]
pub(super) struct RemoteEntry {
    /// What we were told, with `last_active_ms` turned into our time.
    pub(super) snapshot: Snapshot,
    /// False once the promise lapsed (the peer went quiet).
    pub(super) known: bool,
    /// Stream position of the last change.
    pub(super) pos: u64,
}

/// A user's presence as one viewer may see it.
#[derive(Debug, Clone)]
pub struct UserView {
    /// Whose.
    pub user_id: OwnedUserId,
    /// False when this server does not know (never heard, or stale).
    pub known: bool,
    /// The state.
    pub snapshot: Snapshot,
    /// When this view was taken (for `last_active_ago`).
    pub now_ms: u64,
}

/// Presence for every user this server knows about.
#[derive(Debug)]
pub struct PresenceService {
    pub(super) server_name: String,
    timings: Timings,
    pub(super) clock: SharedClock,
    pub(super) db: Db,
    pub(super) counter: Arc<StreamCounter>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) lists: PresenceLists,
    pub(super) outbound: Arc<Outbound>,
    pub(super) remote: Mutex<HashMap<OwnedUserId, RemoteEntry>>,
    users: Mutex<HashMap<OwnedUserId, Entry>>,
    dirty: Mutex<HashSet<OwnedUserId>>,
    deadlines: Deadlines,
    metrics: Arc<Metrics>,
    /// Users who explicitly started (true) or stopped (false) watching their list.
    polling: Mutex<HashMap<OwnedUserId, bool>>,
}

/// Keeps a device counted as syncing while alive; dropping it ends the sync, also
/// when the client goes away mid-poll.
#[derive(Debug)]
pub struct SyncGuard {
    service: Arc<PresenceService>,
    user: OwnedUserId,
    device: String,
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let now = self.service.clock.now_ms();
        let device = std::mem::take(&mut self.device);
        self.service.update(&self.user, now, |p| p.sync_ended(&device, now));
    }
}

impl PresenceService {
    /// Load presence and presence lists from the database. Users who were present
    /// before a restart stay so until their `offline_after_ms` runs out.
    // The one wiring point, called only by `Core::open`: each argument is a separate
    // shared service, and bundling them would make the god-struct we avoid.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        db: Db,
        config: &PresenceConfig,
        clock: SharedClock,
        counter: Arc<StreamCounter>,
        notifier: Arc<Notifier>,
        server_name: &str,
        metrics: Arc<Metrics>,
        outbound: Arc<Outbound>,
    ) -> Result<Arc<Self>> {
        let timings = Timings { idle_after_ms: config.idle_after_ms, offline_after_ms: config.offline_after_ms };
        let lists = PresenceLists::load(db.clone())?;
        let (rows, kinds) = db.call_blocking(|c| Ok((store::load_all(c)?, account_store::device_kinds(c)?)))?;
        let now = clock.now_ms();
        let mut users = HashMap::new();
        for row in rows {
            let Ok(user) = UserId::parse(&row.user_id) else { continue };
            let state = PresenceState::from(row.state.as_str());
            let until_ms = row.last_seen_ts.saturating_add(timings.offline_after_ms);
            let devices = decode_devices(&row.devices);
            let carried = (state != PresenceState::Offline && now < until_ms).then(|| CarriedOver {
                state: state.clone(),
                until_ms,
                devices: devices.clone(),
            });
            let presence = UserPresence {
                explicit: row.explicit_state.as_deref().map(PresenceState::from),
                status_msg: row.status_msg.clone(),
                last_active_ms: (row.last_active_ts > 0).then_some(row.last_active_ts),
                carried,
                ..Default::default()
            };
            // A user still carried over looks exactly as before the restart, so an old
            // sync token is not told of a change that did not happen.
            let published = if presence.carried.is_some() {
                presence.evaluate(now, timings)
            } else {
                Snapshot {
                    state,
                    status_msg: row.status_msg,
                    last_active_ms: presence.last_active_ms,
                    currently_active: false,
                    devices,
                }
            };
            users.insert(user, Entry { presence, published, pos: row.stream_pos });
        }
        for (user, device, kind) in kinds {
            let Ok(user) = UserId::parse(&user) else { continue };
            let entry = users.entry(user).or_insert_with(|| Entry {
                presence: UserPresence::default(),
                published: Snapshot::offline(),
                pos: 0,
            });
            entry.presence.set_kind(&device, kind);
        }
        let known: Vec<OwnedUserId> = users.keys().cloned().collect();
        let service = Arc::new(Self {
            server_name: server_name.to_owned(),
            timings,
            clock,
            db,
            counter,
            notifier,
            lists,
            outbound,
            remote: Mutex::new(HashMap::new()),
            users: Mutex::new(users),
            dirty: Mutex::new(HashSet::new()),
            deadlines: Deadlines::new(),
            metrics,
            polling: Mutex::new(HashMap::new()),
        });
        // Publish whatever lapsed while we were down, and arm every timer.
        for user in known {
            service.update(&user, now, |_| {});
        }
        Ok(service)
    }

    /// Run the timer task and the write-behind task until `shutdown` resolves, then flush.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let timers = {
            let service = Arc::clone(&self);
            async move {
                let clock = Arc::clone(&service.clock);
                service
                    .deadlines
                    .run(clock, |due| {
                        let now = service.clock.now_ms();
                        for user in due {
                            service.update(&user, now, |_| {});
                        }
                        async {}
                    })
                    .await
            }
        };
        let flusher = {
            let service = Arc::clone(&self);
            async move {
                let mut tick = tokio::time::interval(FLUSH_INTERVAL);
                loop {
                    tick.tick().await;
                    if let Err(e) = service.flush().await {
                        tracing::error!(error = %e, "presence write-behind failed; will retry");
                    }
                }
            }
        };
        tokio::select! {
            _ = timers => {}
            _ = flusher => {}
            _ = shutdown => {}
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final presence flush failed");
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, Entry>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn remote(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, RemoteEntry>> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stream position of the last visible change of `user`, local or remote.
    pub(super) fn position_of(&self, user: &UserId) -> u64 {
        if is_local(user, &self.server_name) {
            self.users().get(user).map_or(0, |e| e.pos)
        } else {
            self.remote().get(user).map_or(0, |e| e.pos)
        }
    }

    /// The published state of a local user and its stream position.
    pub(super) fn local_published(&self, user: &UserId) -> Option<(Snapshot, u64)> {
        self.users().get(user).map(|e| (e.published.clone(), e.pos))
    }

    /// Apply `change` to `user`'s state machine, then publish and re-arm its timer.
    fn update(&self, user: &UserId, now: u64, change: impl FnOnce(&mut UserPresence)) {
        let t = self.timings;
        let (published, interest_changed) = {
            let mut users = self.users();
            let entry = users.entry(user.to_owned()).or_insert_with(|| Entry {
                presence: UserPresence::default(),
                published: Snapshot::offline(),
                pos: 0,
            });
            let was_connected = entry.presence.connected(now, t);
            change(&mut entry.presence);
            let interest_changed = was_connected != entry.presence.connected(now, t);
            entry.presence.expire_if_gone(now, t);
            let snapshot = entry.presence.evaluate(now, t);
            self.deadlines.schedule(user, entry.presence.next_deadline(now, t));
            let published = if entry.published.differs_from(&snapshot) {
                entry.pos = self.counter.next();
                entry.published = snapshot;
                Some(entry.pos)
            } else {
                None
            };
            (published, interest_changed)
        };
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned());
        if let Some(pos) = published {
            Metrics::inc(&self.metrics.presence_changes);
            self.notifier.bump(user, pos);
            self.tell_watchers(user, pos);
        }
        if interest_changed {
            self.interest_changed(user);
        }
    }

    /// A user's visible presence moved to `pos`: wake local watchers' syncs, and the
    /// senders of peers whose users watch them and asked to be pushed.
    pub(super) fn tell_watchers(&self, user: &UserId, pos: u64) {
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
                self.outbound.wake(dest.as_str());
            }
        }
    }

    /// Whether a client of `user` cares about their list changed: the peers of the
    /// remote users they watch may need a subscription change.
    fn interest_changed(&self, user: &UserId) {
        let mut destinations = HashSet::new();
        for (target, edge) in self.lists.watching(user) {
            if edge.state == Subscription::Accepted && !is_local(&target, &self.server_name) {
                destinations.insert(target.server_name().to_owned());
            }
        }
        for dest in destinations {
            self.outbound.wake(dest.as_str());
        }
    }

    /// Any authenticated request other than /sync: its device is active.
    pub fn request(&self, user: &UserId, device: &str) {
        let now = self.clock.now_ms();
        self.update(user, now, |p| p.request(device, now));
    }

    /// A /sync starts; the device counts as syncing until the guard is dropped.
    pub fn sync_started(
        self: &Arc<Self>,
        user: &UserId,
        device: &str,
        set_presence: Option<PresenceState>,
    ) -> SyncGuard {
        let now = self.clock.now_ms();
        self.update(user, now, |p| p.sync_started(device, set_presence, now));
        SyncGuard { service: Arc::clone(self), user: user.to_owned(), device: device.to_owned() }
    }

    /// An explicit PUT of the user's own status.
    pub fn set_status(&self, user: &UserId, device: &str, state: PresenceState, status_msg: Option<String>) {
        Metrics::inc(&self.metrics.presence_writes);
        let now = self.clock.now_ms();
        self.update(user, now, |p| p.set_explicit(device, state, status_msg, now));
    }

    /// `caller`'s device reports idleness and/or the kind of `device`, which must be
    /// one of the user's. The request counts as activity of the caller unless it is the
    /// device saying it is idle, so an idle report never flashes "online" first.
    pub async fn report_device(
        &self,
        user: &UserId,
        caller: &str,
        device: &str,
        idle_ms: Option<u64>,
        kind: Option<String>,
    ) -> Result<()> {
        Metrics::inc(&self.metrics.presence_writes);
        let (u, d) = (user.to_string(), device.to_owned());
        let kind_to_store = kind.clone();
        let exists = self
            .db
            .call(move |c| {
                let exists = account_store::device_exists(c, &u, &d)?;
                if let (true, Some(kind)) = (exists, kind_to_store) {
                    account_store::set_device_kind(c, &u, &d, &kind)?;
                }
                Ok(exists)
            })
            .await?;
        if !exists {
            return Err(Error::not_found(format!("{user} has no device {device}")));
        }
        let now = self.clock.now_ms();
        self.update(user, now, |p| {
            if caller != device || idle_ms.is_none() {
                p.request(caller, now);
            }
            if let Some(kind) = kind {
                p.set_kind(device, kind);
            }
            if let Some(idle_ms) = idle_ms {
                p.report_idle(device, idle_ms, now);
            }
        });
        Ok(())
    }

    /// A device logged out: it no longer keeps its user present.
    pub fn forget_device(&self, user: &UserId, device: &str) {
        let now = self.clock.now_ms();
        self.update(user, now, |p| p.forget_device(device));
    }

    /// The presence of `user` as this server knows it.
    pub fn view(&self, user: &UserId) -> UserView {
        let now = self.clock.now_ms();
        if !is_local(user, &self.server_name) {
            return match self.remote().get(user) {
                Some(r) => {
                    UserView { user_id: user.to_owned(), known: r.known, snapshot: r.snapshot.clone(), now_ms: now }
                }
                None => UserView { user_id: user.to_owned(), known: false, snapshot: Snapshot::offline(), now_ms: now },
            };
        }
        let users = self.users();
        match users.get(user) {
            Some(e) => UserView { user_id: user.to_owned(), known: true, snapshot: e.published.clone(), now_ms: now },
            None => UserView {
                user_id: user.to_owned(),
                known: is_local(user, &self.server_name),
                snapshot: Snapshot::offline(),
                now_ms: now,
            },
        }
    }

    /// The presence of `target` if `viewer` may see it; 403 otherwise, existing or not.
    pub fn view_as(&self, viewer: &UserId, target: &UserId) -> Result<UserView> {
        if !self.lists.can_see(viewer, target) {
            return Err(Error::forbidden(format!("you are not allowed to see the presence of {target}")));
        }
        Ok(self.view(target))
    }

    /// Presence `watcher` may see that changed in the stream range `(since, upto]`
    /// (all of it when `since` is 0): the user's own and that of accepted targets.
    pub fn changes_for(&self, watcher: &UserId, since: u64, upto: u64) -> Vec<UserView> {
        let in_range = |pos: u64| since == 0 || (pos > since && pos <= upto);
        let mut out = Vec::new();
        let own_pos = self.users().get(watcher).map(|e| e.pos).unwrap_or(0);
        if in_range(own_pos) {
            out.push(self.view(watcher));
        }
        for (target, edge) in self.lists.watching(watcher) {
            if edge.state != Subscription::Accepted || target == watcher {
                continue;
            }
            let pos = self.position_of(&target);
            if in_range(pos) || in_range(edge.pos) {
                out.push(self.view(&target));
            }
        }
        out
    }

    /// Presence requests waiting for `target`'s answer that arrived in `(since, upto]`
    /// (all pending ones when `since` is 0).
    pub fn requests_for(&self, target: &UserId, since: u64, upto: u64) -> Vec<(OwnedUserId, Edge)> {
        self.lists
            .pending_for(target)
            .into_iter()
            .filter(|(_, e)| since == 0 || (e.pos > since && e.pos <= upto))
            .collect()
    }

    /// Every pending request to `target`.
    pub fn requests(&self, target: &UserId) -> Vec<(OwnedUserId, Edge)> {
        self.lists.pending_for(target)
    }

    /// `watcher`'s presence list: each target with the answer and, where allowed, presence.
    pub fn list(&self, watcher: &UserId) -> Vec<(Edge, UserView)> {
        self.lists
            .watching(watcher)
            .into_iter()
            .map(|(target, edge)| {
                let view = if edge.state == Subscription::Accepted {
                    self.view(&target)
                } else {
                    UserView { user_id: target, known: false, snapshot: Snapshot::offline(), now_ms: 0 }
                };
                (edge, view)
            })
            .collect()
    }

    /// `watcher` asks to watch `target`. Asking again while pending or accepted changes nothing;
    /// asking again after a refusal asks anew.
    pub async fn invite(&self, watcher: &UserId, target: &UserId) -> Result<()> {
        if watcher == target {
            return Err(Error::invalid_param("you always see your own presence; you cannot watch yourself"));
        }
        if is_local(target, &self.server_name) {
            let t = target.to_string();
            if !self.db.call(move |c| account_store::user_exists(c, &t)).await? {
                return Err(Error::not_found(format!("there is no user {target}")));
            }
        }
        if self.lists.get(watcher, target).is_some_and(|e| e.state != Subscription::Denied) {
            return Ok(());
        }
        let pos = self.counter.next();
        let edge = Edge { state: Subscription::Pending, ts: self.clock.now_ms(), pos };
        if !is_local(target, &self.server_name) {
            let content = serde_json::json!(WatchEdge { watcher: watcher.to_owned(), target: target.to_owned() });
            self.outbound.queue_edu(target.server_name().as_str(), edus::INVITE, &content).await?;
        }
        self.lists.put(watcher, target, edge).await?;
        self.notifier.bump(target, pos);
        Ok(())
    }

    /// `watcher` stops watching `target` (or withdraws the request).
    pub async fn drop_watch(&self, watcher: &UserId, target: &UserId) -> Result<()> {
        if self.lists.get(watcher, target).is_some() {
            if !is_local(target, &self.server_name) {
                let content = serde_json::json!(WatchEdge { watcher: watcher.to_owned(), target: target.to_owned() });
                self.outbound.queue_edu(target.server_name().as_str(), edus::DROP, &content).await?;
            }
            self.lists.remove(watcher, target).await?;
            self.interest_changed(watcher);
        }
        Ok(())
    }

    /// `target` answers `watcher`'s request; `allow: false` also revokes an accepted watcher.
    pub async fn answer(&self, target: &UserId, watcher: &UserId, allow: bool) -> Result<()> {
        let edge = self.lists.require(watcher, target)?;
        let state = if allow { Subscription::Accepted } else { Subscription::Denied };
        if edge.state == state {
            return Ok(());
        }
        let pos = self.counter.next();
        if !is_local(watcher, &self.server_name) {
            let content =
                serde_json::json!(AnswerEdu { watcher: watcher.to_owned(), target: target.to_owned(), allow });
            self.outbound.queue_edu(watcher.server_name().as_str(), edus::ANSWER, &content).await?;
        }
        self.lists.put(watcher, target, Edge { state, ts: self.clock.now_ms(), pos }).await?;
        self.notifier.bump(watcher, pos);
        self.notifier.bump(target, pos);
        Ok(())
    }

    /// Write changed presence rows (and the stream ceiling, when due) to the database.
    pub async fn flush(&self) -> Result<()> {
        let dirty: Vec<OwnedUserId> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
        let rows: Vec<store::PresenceRow> = {
            let users = self.users();
            dirty
                .iter()
                .filter_map(|u| users.get(u).map(|e| (u, e)))
                .map(|(u, e)| store::PresenceRow {
                    user_id: u.to_string(),
                    state: e.published.state.as_str().to_owned(),
                    status_msg: e.presence.status_msg.clone(),
                    explicit_state: e.presence.explicit.as_ref().map(|s| s.as_str().to_owned()),
                    last_active_ts: e.presence.last_active_ms.unwrap_or(0),
                    last_seen_ts: e.presence.devices.values().map(|d| d.last_seen_ms).max().unwrap_or(0).max(
                        e.presence
                            .carried
                            .as_ref()
                            .map_or(0, |c| c.until_ms.saturating_sub(self.timings.offline_after_ms)),
                    ),
                    stream_pos: e.pos,
                    devices: encode_devices(&e.published.devices),
                })
                .collect()
        };
        let ceiling = self.counter.ceiling_to_persist();
        if rows.is_empty() && ceiling.is_none() {
            return Ok(());
        }
        let counter = Arc::clone(&self.counter);
        let result = self
            .db
            .call(move |c| {
                store::upsert_many(c, &rows)?;
                if let Some(ceiling) = ceiling {
                    counter.persist_ceiling(c, ceiling)?;
                }
                Ok(())
            })
            .await;
        if result.is_err() {
            // Keep them dirty so the next flush tries again.
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(dirty);
        }
        result
    }

    /// The user explicitly starts or stops watching their presence list.
    pub fn set_polling(&self, user: &UserId, enabled: bool) {
        let before = self.is_polling(user);
        self.polling.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned(), enabled);
        if before != enabled {
            self.interest_changed(user);
        }
    }

    /// Whether a client of `user` cares about their list now: an explicit start wins,
    /// an explicit stop wins, otherwise a connected (syncing) client starts it implicitly.
    pub fn is_polling(&self, user: &UserId) -> bool {
        if let Some(explicit) = self.polling.lock().unwrap_or_else(|p| p.into_inner()).get(user) {
            return *explicit;
        }
        let now = self.clock.now_ms();
        self.users().get(user).is_some_and(|e| e.presence.connected(now, self.timings))
    }

    /// The newest stream position handed out.
    pub fn stream_position(&self) -> u64 {
        self.counter.current()
    }

    /// Users whose presence is held in memory (for metrics).
    pub fn tracked_users(&self) -> usize {
        self.users().len()
    }

    /// Number of sync requests waiting right now (for metrics).
    pub fn syncs_waiting(&self) -> u64 {
        self.metrics.syncs_waiting.load(Ordering::Relaxed)
    }
}

fn encode_devices(devices: &[super::state::DeviceView]) -> String {
    let rows: Vec<(&str, &str, bool)> =
        devices.iter().map(|d| (d.device_id.as_str(), d.kind.as_str(), d.idle)).collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_devices(json: &str) -> Vec<super::state::DeviceView> {
    serde_json::from_str::<Vec<(String, String, bool)>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(device_id, kind, idle)| super::state::DeviceView { device_id, kind, idle })
        .collect()
}
