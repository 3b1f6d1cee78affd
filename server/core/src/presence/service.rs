//! The presence service: applies what clients do to each user's state machine,
//! publishes visible changes on the sync stream, wakes exactly the users allowed to
//! see them, and times idleness and absence.
//!
//! Durability: a change that watchers can see, or that a client set (status,
//! explicit state, devices), is written through the group-committing writer at once;
//! its stream position stays in flight until the write committed, and the request
//! that caused it is answered only then. Only a refreshed last-seen time, which no
//! one sees, is written behind every 500 ms.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};

use super::fanout::Fanout;
use super::lists::{Edge, PresenceLists, Subscription};
use super::state::{CarriedOver, Snapshot, Timings, UserPresence};
use crate::clock::SharedClock;
use crate::config::PresenceConfig;
use crate::error::{Error, Result};
use crate::ids::is_local;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::storage::{Db, Pending, presence as store};
use crate::stream::{Notifier, Positions};
use crate::sync::SyncRange;
use crate::timers::Deadlines;

/// How often presence is written behind to the database.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Entry {
    presence: UserPresence,
    published: Snapshot,
    pos: u64,
    /// The row last handed to the writer, so an unchanged one is not written again.
    persisted: Option<store::PresenceRow>,
}

impl Entry {
    fn new() -> Self {
        Self { presence: UserPresence::default(), published: Snapshot::offline(), pos: 0, persisted: None }
    }
}

/// Whether two rows differ in more than the last-seen time.
fn differs_beyond_last_seen(a: &store::PresenceRow, b: &store::PresenceRow) -> bool {
    a.state != b.state
        || a.status_msg != b.status_msg
        || a.explicit_state != b.explicit_state
        || a.last_active_ts != b.last_active_ts
        || a.stream_pos != b.stream_pos
        || a.devices != b.devices
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
    pub(super) positions: Arc<Positions>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) lists: Arc<PresenceLists>,
    pub(super) outbound: Arc<Outbound>,
    pub(super) fanout: Arc<Fanout>,
    pub(super) remote: Mutex<HashMap<OwnedUserId, RemoteEntry>>,
    users: Mutex<HashMap<OwnedUserId, Entry>>,
    /// Users whose row must be written by the next flush (last-seen refreshed, or a
    /// write that failed).
    dirty: Arc<Mutex<HashSet<OwnedUserId>>>,
    deadlines: Deadlines<OwnedUserId>,
    pub(super) metrics: Arc<Metrics>,
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
        drop(self.service.update(&self.user, now, |p| p.sync_ended(&device, now)));
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
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        server_name: &str,
        metrics: Arc<Metrics>,
        outbound: Arc<Outbound>,
    ) -> Result<Arc<Self>> {
        let timings = Timings { idle_after_ms: config.idle_after_ms, offline_after_ms: config.offline_after_ms };
        let lists = Arc::new(db.read_blocking(PresenceLists::load)?);
        let (rows, kinds) = db.read_blocking(|s| Ok((s.load_all()?, s.device_kinds()?)))?;
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
                    status_msg: row.status_msg.clone(),
                    last_active_ms: presence.last_active_ms,
                    currently_active: false,
                    devices,
                }
            };
            users.insert(user, Entry { presence, published, pos: row.stream_pos, persisted: Some(row) });
        }
        for (user, device, kind) in kinds {
            let Ok(user) = UserId::parse(&user) else { continue };
            users.entry(user).or_insert_with(Entry::new).presence.set_kind(&device, kind);
        }
        let fanout = Arc::new(Fanout {
            server_name: server_name.to_owned(),
            notifier: Arc::clone(&notifier),
            lists: Arc::clone(&lists),
            outbound: Arc::clone(&outbound),
        });
        let known: Vec<OwnedUserId> = users.keys().cloned().collect();
        let service = Arc::new(Self {
            server_name: server_name.to_owned(),
            timings,
            clock,
            db,
            positions,
            notifier,
            lists,
            outbound,
            fanout,
            remote: Mutex::new(HashMap::new()),
            users: Mutex::new(users),
            dirty: Arc::new(Mutex::new(HashSet::new())),
            deadlines: Deadlines::new(),
            metrics,
            polling: Mutex::new(HashMap::new()),
        });
        // Publish whatever lapsed while we were down, and arm every timer.
        for user in known {
            drop(service.update(&user, now, |_| {}));
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
                            drop(service.update(&user, now, |_| {}));
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

    /// Apply `change` to `user`'s state machine, re-arm its timer, and publish: a
    /// visible change takes a stream position and is written at once, and the
    /// returned [`Pending`] answers when it is committed. `None`: nothing a client
    /// set or could see changed (a refreshed last-seen time is written behind).
    fn update(&self, user: &UserId, now: u64, change: impl FnOnce(&mut UserPresence)) -> Option<Pending<()>> {
        let t = self.timings;
        let (pending, interest_changed) = {
            let mut users = self.users();
            let entry = users.entry(user.to_owned()).or_insert_with(Entry::new);
            let was_connected = entry.presence.connected(now, t);
            change(&mut entry.presence);
            let interest_changed = was_connected != entry.presence.connected(now, t);
            entry.presence.expire_if_gone(now, t);
            let snapshot = entry.presence.evaluate(now, t);
            self.deadlines.schedule(&user.to_owned(), entry.presence.next_deadline(now, t));
            let published = entry.published.differs_from(&snapshot).then(|| {
                entry.pos = self.positions.reserve();
                entry.published = snapshot;
                entry.pos
            });
            let row = self.row_of(user, entry);
            let must_write =
                published.is_some() || entry.persisted.as_ref().is_none_or(|p| differs_beyond_last_seen(p, &row));
            let pending = if must_write {
                entry.persisted = Some(row.clone());
                // Handed to the writer under the users lock: rows of one user reach the
                // database in the order they were made.
                Some(self.write_row(user, row, published))
            } else {
                if entry.persisted.as_ref().is_some_and(|p| p.last_seen_ts != row.last_seen_ts) {
                    self.mark_dirty(user);
                }
                None
            };
            (pending, interest_changed)
        };
        if interest_changed {
            self.fanout.interest_changed(user);
        }
        pending
    }

    fn mark_dirty(&self, user: &UserId) {
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned());
    }

    /// Write one row; once committed, release its position and tell whoever may see it.
    fn write_row(&self, user: &UserId, row: store::PresenceRow, published: Option<u64>) -> Pending<()> {
        let (positions, fanout, metrics, dirty) =
            (Arc::clone(&self.positions), Arc::clone(&self.fanout), Arc::clone(&self.metrics), Arc::clone(&self.dirty));
        let user = user.to_owned();
        let after = Box::new(move |ok: bool| {
            if !ok {
                // Memory is ahead of the disk: the next flush writes the row again.
                dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(user.clone());
            }
            if let Some(pos) = published {
                positions.commit(pos);
                Metrics::inc(&metrics.presence_changes);
                fanout.presence_moved(&user, pos);
            }
        });
        self.db.submit(move |s| s.upsert_many(std::slice::from_ref(&row)), Some(after))
    }

    /// The row that stores `e`.
    fn row_of(&self, user: &UserId, e: &Entry) -> store::PresenceRow {
        store::PresenceRow {
            user_id: user.to_string(),
            state: e.published.state.as_str().to_owned(),
            status_msg: e.presence.status_msg.clone(),
            explicit_state: e.presence.explicit.as_ref().map(|s| s.as_str().to_owned()),
            last_active_ts: e.presence.last_active_ms.unwrap_or(0),
            last_seen_ts: e.presence.devices.values().map(|d| d.last_seen_ms).max().unwrap_or(0).max(
                e.presence.carried.as_ref().map_or(0, |c| c.until_ms.saturating_sub(self.timings.offline_after_ms)),
            ),
            stream_pos: e.pos,
            devices: encode_devices(&e.published.devices),
        }
    }

    /// Any authenticated request other than /sync: its device is active.
    pub fn request(&self, user: &UserId, device: &str) {
        let now = self.clock.now_ms();
        drop(self.update(user, now, |p| p.request(device, now)));
    }

    /// A /sync starts; the device counts as syncing until the guard is dropped.
    ///
    /// A change the start causes (coming online) is committed before this returns,
    /// so the sync itself carries it rather than waking the next one at once.
    pub async fn sync_started(
        self: &Arc<Self>,
        user: &UserId,
        device: &str,
        set_presence: Option<PresenceState>,
    ) -> SyncGuard {
        let now = self.clock.now_ms();
        let guard = SyncGuard { service: Arc::clone(self), user: user.to_owned(), device: device.to_owned() };
        if let Some(pending) = self.update(user, now, |p| p.sync_started(device, set_presence, now))
            && let Err(e) = pending.wait().await
        {
            tracing::warn!(%user, error = %e, "presence at the start of a sync was not stored; it will be retried");
        }
        guard
    }

    /// An explicit PUT of the user's own status; answers once it is committed.
    pub async fn set_status(
        &self,
        user: &UserId,
        device: &str,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        Metrics::inc(&self.metrics.presence_writes);
        let now = self.clock.now_ms();
        match self.update(user, now, |p| p.set_explicit(device, state, status_msg, now)) {
            Some(pending) => pending.wait().await,
            None => Ok(()),
        }
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
            .write(move |s| {
                let exists = s.device_exists(&u, &d)?;
                if let (true, Some(kind)) = (exists, kind_to_store) {
                    s.set_device_kind(&u, &d, &kind)?;
                }
                Ok(exists)
            })
            .await?;
        if !exists {
            return Err(Error::not_found(format!("{user} has no device {device}")));
        }
        let now = self.clock.now_ms();
        let pending = self.update(user, now, |p| {
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
        match pending {
            Some(pending) => pending.wait().await,
            None => Ok(()),
        }
    }

    /// A device logged out: it no longer keeps its user present.
    pub fn forget_device(&self, user: &UserId, device: &str) {
        let now = self.clock.now_ms();
        drop(self.update(user, now, |p| p.forget_device(device)));
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

    /// Presence `watcher` may see that changed in `range`: the user's own and that
    /// of accepted targets (all of them in an initial sync).
    pub fn changes_for(&self, watcher: &UserId, range: SyncRange) -> Vec<UserView> {
        let in_range = |pos: u64| range.contains(pos);
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

    /// Presence requests waiting for `target`'s answer that arrived in `range` (all
    /// pending ones in an initial sync).
    pub fn requests_for(&self, target: &UserId, range: SyncRange) -> Vec<(OwnedUserId, Edge)> {
        self.lists.pending_for(target).into_iter().filter(|(_, e)| range.contains(e.pos)).collect()
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

    /// Write the rows of dirty users (refreshed last-seen times, failed writes) and
    /// the stream ceiling when due.
    pub async fn flush(&self) -> Result<()> {
        let dirty: Vec<OwnedUserId> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
        let ceiling = self.positions.ceiling_to_persist();
        if dirty.is_empty() && ceiling.is_none() {
            return Ok(());
        }
        let positions = Arc::clone(&self.positions);
        let pending = {
            let mut users = self.users();
            let mut rows = Vec::with_capacity(dirty.len());
            for user in &dirty {
                if let Some(entry) = users.get_mut(user) {
                    let row = self.row_of(user, entry);
                    entry.persisted = Some(row.clone());
                    rows.push(row);
                }
            }
            self.db.submit(
                move |s| {
                    s.upsert_many(&rows)?;
                    if let Some(ceiling) = ceiling {
                        positions.persist_ceiling(s, ceiling)?;
                    }
                    Ok(())
                },
                None,
            )
        };
        let result = pending.wait().await;
        if result.is_err() {
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(dirty);
        }
        result
    }

    /// The user explicitly starts or stops watching their presence list.
    pub fn set_polling(&self, user: &UserId, enabled: bool) {
        let before = self.is_polling(user);
        self.polling.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned(), enabled);
        if before != enabled {
            self.fanout.interest_changed(user);
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

    /// The visible stream position: everything at or below it is committed.
    pub fn stream_position(&self) -> u64 {
        self.positions.visible()
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
