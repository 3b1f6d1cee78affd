//! The room service: every room in memory (current state and head), the one write
//! path that checks the auth rules, builds events and appends them, and the rule of
//! who may know of a room. Messages and state live here; memberships
//! (`membership.rs`), creation (`create.rs`), reading (`timeline.rs`, `members.rs`),
//! the directory (`directory.rs`), receipts and typing (`ephemeral.rs`) add to it in
//! their own files. Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use ruma::api::client::filter::FilterDefinition;

use super::auth;
use super::events::{self, NewEvent, Placement};
use super::filter::{FilterLookup, NoStoredFilters};
use super::recent::Recent;
use super::state::RoomState;
use super::typing::Typing;
use crate::clock::SharedClock;
use crate::config::RoomsConfig;
use crate::error::{Error, Result};
use crate::storage::rooms::{EventPage, EventRow};
use crate::storage::{Db, Unit};
use crate::stream::{Notifier, Positions};

/// The answer for a room one may not know of, the same whether or not it exists.
pub(crate) fn room_not_found() -> Error {
    Error::not_found("room not found")
}

/// One room in memory.
#[derive(Debug)]
pub struct Room {
    /// Its ID.
    pub id: OwnedRoomId,
    /// Held while an event is checked, built and written: events of one room get
    /// their positions (and so their order) one at a time.
    order: tokio::sync::Mutex<()>,
    /// Its current state, changed after each commit.
    pub(crate) state: RwLock<RoomState>,
    /// The newest position of a receipt or typing change in it.
    pub(crate) ephemeral_pos: AtomicU64,
    /// Its newest events, for long polls (pushed with the state, after each commit).
    pub(crate) recent: Mutex<Recent>,
}

impl Room {
    fn new(state: RoomState) -> Arc<Self> {
        let head = state.head.as_ref().map_or(0, |(_, _, pos)| *pos);
        Arc::new(Self {
            id: state.room_id.clone(),
            order: tokio::sync::Mutex::new(()),
            recent: Mutex::new(Recent::new(head)),
            state: RwLock::new(state),
            ephemeral_pos: AtomicU64::new(0),
        })
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> RoomState {
        read(&self.state).clone()
    }

    /// Its window of newest events.
    pub(crate) fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note an ephemeral change (receipt, typing) at `pos`.
    pub(crate) fn ephemeral_moved(&self, pos: u64) {
        self.ephemeral_pos.fetch_max(pos, Ordering::SeqCst);
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A user's rooms: membership and the position of the member event that set it.
type UserRooms = HashMap<OwnedRoomId, (String, u64)>;

/// Each user's rooms.
#[derive(Debug, Default)]
pub struct Memberships(Mutex<HashMap<OwnedUserId, UserRooms>>);

impl Memberships {
    fn set(&self, user: &str, room: &RoomId, membership: &str, pos: u64) {
        let Ok(user) = UserId::parse(user) else { return };
        lock(&self.0).entry(user).or_default().insert(room.to_owned(), (membership.to_owned(), pos));
    }

    /// A user's rooms, with membership and position.
    pub fn of(&self, user: &UserId) -> Vec<(OwnedRoomId, String, u64)> {
        lock(&self.0)
            .get(user)
            .map(|rooms| rooms.iter().map(|(r, (m, p))| (r.clone(), m.clone(), *p)).collect())
            .unwrap_or_default()
    }

    /// How many rooms a user is joined to or invited into.
    fn active_count(&self, user: &UserId) -> usize {
        lock(&self.0)
            .get(user)
            .map(|rooms| rooms.values().filter(|(m, _)| m == "join" || m == "invite").count())
            .unwrap_or(0)
    }
}

/// A client's transaction: the same device sending the same ID to the same endpoint
/// is a retry (the spec scopes transaction IDs to a device and an endpoint).
#[derive(Debug, Clone)]
pub struct Txn {
    /// The sending device.
    pub device: String,
    /// The endpoint without the txnId: `send <room> <type>` or `redact <room> <target>`.
    pub scope: String,
    /// The client's transaction ID.
    pub txn_id: String,
}

/// An event to append, with the device transaction that asked for it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The event.
    pub event: NewEvent,
    /// The transaction of a `PUT .../send` or redaction.
    pub txn: Option<Txn>,
}

impl From<NewEvent> for Outgoing {
    fn from(event: NewEvent) -> Self {
        Self { event, txn: None }
    }
}

/// An event built and written in a unit, waiting for its commit.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    row: EventRow,
    content: Value,
    redacts: Option<String>,
}

/// Rooms on this site.
#[derive(Debug)]
pub struct RoomService {
    pub(crate) db: Db,
    pub(crate) clock: SharedClock,
    pub(crate) positions: Arc<Positions>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) server_name: Arc<str>,
    pub(crate) config: RoomsConfig,
    rooms: Arc<RwLock<HashMap<OwnedRoomId, Arc<Room>>>>,
    pub(crate) memberships: Arc<Memberships>,
    pub(crate) typing: Typing,
    /// What the last sync of each user counted as unread in each room.
    pub(crate) unread: super::unread::UnreadMemos,
    /// Events rendered once for every viewer.
    pub(crate) rendered: super::rendered::Rendered,
    filters: RwLock<Arc<dyn FilterLookup>>,
}

impl RoomService {
    /// Load every room's current state and head from `db`.
    pub fn load(
        db: Db,
        clock: SharedClock,
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        server_name: &str,
        config: &RoomsConfig,
    ) -> Result<Arc<Self>> {
        let memberships = Arc::new(Memberships::default());
        let mut rooms = HashMap::new();
        let loaded = db.read_blocking(|s| {
            let mut out = Vec::new();
            for row in s.rooms_all()? {
                let state = s.room_current_state(&row.room_id)?;
                let page = EventPage { above: 0, upto: u64::MAX >> 1, backwards: true, limit: 1 };
                let head = s.room_events(&row.room_id, page)?;
                out.push((row, state, head));
            }
            Ok(out)
        })?;
        for (row, state_rows, head) in loaded {
            let Ok(room_id) = RoomId::parse(&row.room_id) else { continue };
            let mut state = RoomState::new(room_id.clone(), &row.creator);
            state.published = row.published;
            for e in &state_rows {
                state.apply(e, events::content(e));
                if let (true, Some(key)) = (e.event_type == "m.room.member", &e.state_key) {
                    memberships.set(key, &room_id, state.membership(key).unwrap_or("leave"), e.pos);
                }
            }
            for e in &head {
                state.apply(e, events::content(e));
            }
            rooms.insert(room_id, Room::new(state));
        }
        Ok(Arc::new(Self {
            db,
            typing: Typing::new(Arc::clone(&clock), config.max_typing_timeout_ms),
            clock,
            positions,
            notifier,
            server_name: server_name.into(),
            config: config.clone(),
            rooms: Arc::new(RwLock::new(rooms)),
            memberships,
            unread: super::unread::UnreadMemos::default(),
            rendered: super::rendered::Rendered::default(),
            filters: RwLock::new(Arc::new(NoStoredFilters)),
        }))
    }

    /// Where stored filters are found (the filter store sets itself here at start).
    pub fn set_filter_lookup(&self, lookup: Arc<dyn FilterLookup>) {
        *write(&self.filters) = lookup;
    }

    /// The filter of `?filter=`: inline JSON, or a stored filter's ID (an unknown ID is the default filter).
    pub fn resolve_filter(&self, user: &UserId, raw: Option<&str>) -> Result<FilterDefinition> {
        let lookup = Arc::clone(&*read(&self.filters));
        super::filter::resolve(raw, user, lookup.as_ref())
    }

    /// A room by ID, whatever the caller may know.
    pub(crate) fn room(&self, room_id: &RoomId) -> Option<Arc<Room>> {
        read(&self.rooms).get(room_id).cloned()
    }

    /// A room `user` may know of: they have (or had) a membership in it, or anyone
    /// may join it. Otherwise 404, the same as for a room that does not exist.
    pub fn known_room(&self, user: &UserId, room_id: &RoomId) -> Result<Arc<Room>> {
        let room = self.room(room_id).ok_or_else(room_not_found)?;
        let known = {
            let state = read(&room.state);
            state.membership(user.as_str()).is_some() || state.join_rule() == "public"
        };
        if known { Ok(room) } else { Err(room_not_found()) }
    }

    /// A room `user` is joined to: 404 if they may not know of it, 403 if they may
    /// but are not joined.
    pub fn joined_room(&self, user: &UserId, room_id: &RoomId) -> Result<Arc<Room>> {
        let room = self.known_room(user, room_id)?;
        if !read(&room.state).is_joined(user.as_str()) {
            return Err(Error::forbidden("you are not joined to this room"));
        }
        Ok(room)
    }

    /// The rooms a user is joined to.
    pub fn joined_rooms(&self, user: &UserId) -> Vec<OwnedRoomId> {
        let mut rooms: Vec<_> =
            self.memberships.of(user).into_iter().filter(|(_, m, _)| m == "join").map(|(r, _, _)| r).collect();
        rooms.sort();
        rooms
    }

    /// Send a message-like event (idempotent per device and transaction ID).
    pub async fn send(
        &self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &str,
        content: Value,
    ) -> Result<OwnedEventId> {
        check_type(event_type)?;
        if event_type == "m.room.redaction" {
            return Err(Error::invalid_param("use the redact endpoint to redact"));
        }
        let room = self.joined_room(user, room_id)?;
        let txn =
            Txn { device: device.to_owned(), scope: format!("send {room_id} {event_type}"), txn_id: txn_id.to_owned() };
        let out = Outgoing { event: NewEvent::message(event_type, content), txn: Some(txn) };
        self.append(&room, user, vec![out]).await.and_then(first)
    }

    /// Redact `target` (idempotent per device and transaction ID).
    pub async fn redact(
        &self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        target: &str,
        txn_id: &str,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        let room = self.joined_room(user, room_id)?;
        let original = self.db.read({
            let target = target.to_owned();
            move |s| s.room_event(&target)
        });
        let original = original.await?.filter(|e| e.room_id == room_id.as_str());
        let Some(original) = original else { return Err(Error::not_found("event not found")) };
        auth::check_redaction(&read(&room.state), user.as_str(), &original.sender)?;
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let redacts = OwnedEventId::try_from(target).map_err(|_| Error::invalid_param("bad event ID"))?;
        let event = NewEvent { redacts: Some(redacts), ..NewEvent::message("m.room.redaction", content) };
        let txn =
            Txn { device: device.to_owned(), scope: format!("redact {room_id} {target}"), txn_id: txn_id.to_owned() };
        let out = Outgoing { event, txn: Some(txn) };
        self.append(&room, user, vec![out]).await.and_then(first)
    }

    /// Set a state event.
    pub async fn set_state(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> Result<OwnedEventId> {
        check_type(event_type)?;
        if state_key.len() > 255 {
            return Err(Error::invalid_param("state keys are at most 255 bytes"));
        }
        if event_type == "m.room.create" {
            return Err(Error::forbidden("the create event cannot be replaced"));
        }
        if event_type == "m.room.member" {
            return Err(Error::invalid_param("use the membership endpoints to change membership"));
        }
        let room = self.joined_room(user, room_id)?;
        self.append(&room, user, vec![NewEvent::state(event_type, state_key, content).into()]).await.and_then(first)
    }

    /// Change `target`'s membership to `membership` (invite, kick, ban, unban, leave, join).
    pub async fn set_membership(
        &self,
        sender: &UserId,
        room: &Arc<Room>,
        target: &UserId,
        membership: &str,
        extra: Value,
    ) -> Result<OwnedEventId> {
        if target.server_name().as_str() != &*self.server_name {
            return Err(Error::forbidden("rooms are single-site: only users of this server can be members"));
        }
        if matches!(membership, "join" | "invite") {
            let already = read(&room.state).membership(target.as_str()) == Some(membership);
            if !already && self.memberships.active_count(target) >= self.config.max_rooms_per_user {
                return Err(Error::forbidden(format!(
                    "the user is in {} rooms already, the most a user may be in",
                    self.config.max_rooms_per_user
                )));
            }
            let count = read(&room.state).all_members().filter(|(_, m)| *m == "join" || *m == "invite").count();
            if !already && count >= self.config.max_members_per_room {
                return Err(Error::forbidden(format!("the room has {count} members, the most it may have")));
            }
        }
        let mut content = match extra {
            Value::Object(map) => Value::Object(map),
            _ => json!({}),
        };
        content["membership"] = json!(membership);
        let event = NewEvent::state("m.room.member", target.as_str(), content);
        self.append(room, sender, vec![event.into()]).await.and_then(first)
    }

    /// Append events of one sender to `room`, checking each against the state the
    /// previous one left; all are written in one unit, or none.
    pub(crate) async fn append(
        &self,
        room: &Arc<Room>,
        sender: &UserId,
        events: Vec<Outgoing>,
    ) -> Result<Vec<OwnedEventId>> {
        let _order = room.order.lock().await;
        if let Some(txn) = events.first().and_then(|o| o.txn.clone()) {
            let user = sender.to_string();
            let known = self.db.read(move |s| s.room_txn(&user, &txn.device, &txn.scope, &txn.txn_id)).await?;
            if let Some(event_id) = known {
                return Ok(vec![OwnedEventId::try_from(event_id).map_err(Error::internal)?]);
            }
        }
        let mut unit = Unit::new();
        let mut working = room.snapshot();
        let staged = self.stage(&mut working, sender, events, &mut unit)?;
        self.commit(room, staged, unit).await
    }

    /// Check and build `events` against `working` (which each one changes), taking
    /// their positions in `unit` and adding their writes to it.
    pub(crate) fn stage(
        &self,
        working: &mut RoomState,
        sender: &UserId,
        events: Vec<Outgoing>,
        unit: &mut Unit,
    ) -> Result<Vec<Staged>> {
        let now = self.clock.now_ms();
        let mut staged = Vec::with_capacity(events.len());
        let mut writes: Vec<(EventRow, Option<String>, Option<String>)> = Vec::with_capacity(events.len());
        for out in events {
            let event = &out.event;
            auth::check(working, sender.as_str(), event)?;
            let (prev, depth) = match &working.head {
                Some((id, depth, _)) => (Some(id.clone()), depth + 1),
                None => (None, 1),
            };
            let place = Placement {
                room_id: &working.room_id,
                sender,
                depth,
                prev_event: prev.as_deref(),
                auth_events: working.auth_events(sender.as_str(), &event.event_type, event.state_key.as_deref()),
                ts: now,
            };
            let built = events::build(event, &place)?;
            let pos = self.positions.reserve_in(unit);
            let relation = events::relation(&event.content);
            let (txn_device, txn_id) = out.txn.as_ref().map(|t| (t.device.clone(), t.txn_id.clone())).unzip();
            let row = EventRow {
                pos,
                depth,
                room_id: working.room_id.to_string(),
                event_id: built.event_id.to_string(),
                event_type: event.event_type.clone(),
                state_key: event.state_key.clone(),
                sender: sender.to_string(),
                rel_type: relation.as_ref().map(|(t, _)| t.clone()),
                relates_to: relation.map(|(_, id)| id),
                txn_device,
                txn_id,
                json: built.json,
                redacted_by: None,
            };
            working.apply(&row, event.content.clone());
            writes.push((
                row.clone(),
                event.redacts.as_ref().map(|r| r.to_string()),
                out.txn.as_ref().map(|t| t.scope.clone()),
            ));
            staged.push(Staged {
                row,
                content: event.content.clone(),
                redacts: event.redacts.as_ref().map(|r| r.to_string()),
            });
        }
        unit.write(move |s| {
            for (row, redacts, scope) in &writes {
                s.room_event_insert(row)?;
                if let (Some(device), Some(scope), Some(txn)) = (&row.txn_device, scope, &row.txn_id) {
                    s.room_txn_insert(&row.sender, device, scope, txn, &row.event_id)?;
                }
                if let Some(target) = redacts {
                    s.room_redaction_insert(target, &row.event_id, row.pos)?;
                }
            }
            Ok(())
        });
        Ok(staged)
    }

    /// Submit `unit`; once it committed, apply `staged` to the room's state (before
    /// their positions become visible) and wake everyone concerned.
    pub(crate) async fn commit(
        &self,
        room: &Arc<Room>,
        staged: Vec<Staged>,
        mut unit: Unit,
    ) -> Result<Vec<OwnedEventId>> {
        let ids: Vec<OwnedEventId> =
            staged.iter().filter_map(|s| OwnedEventId::try_from(s.row.event_id.as_str()).ok()).collect();
        let targets: Vec<String> = staged
            .iter()
            .filter(|s| s.row.event_type == "m.room.member")
            .filter_map(|s| s.row.state_key.clone())
            .collect();
        let newest = staged.iter().map(|s| s.row.pos).max().unwrap_or(0);
        let (room2, memberships) = (Arc::clone(room), Arc::clone(&self.memberships));
        unit.after(move |ok| {
            if !ok {
                return;
            }
            let mut state = write(&room2.state);
            let mut recent = room2.recent();
            for s in staged {
                if let Some(target) = &s.redacts {
                    state.redacted(target);
                    recent.redacted(target, &s.row.event_id);
                }
                recent.push(s.row.clone());
                state.apply(&s.row, s.content);
                if let (true, Some(key)) = (s.row.event_type == "m.room.member", &s.row.state_key) {
                    memberships.set(key, &room2.id, state.membership(key).unwrap_or("leave"), s.row.pos);
                }
            }
        });
        self.db.submit_unit(unit).wait().await?;
        let mut wake: Vec<OwnedUserId> = read(&room.state).members_with("join");
        wake.extend(targets.iter().filter_map(|t| UserId::parse(t).ok()));
        for user in &wake {
            self.notifier.bump(user, newest);
        }
        Ok(ids)
    }

    /// The map of rooms, for a creation to add its room to once committed.
    pub(crate) fn rooms_handle(&self) -> Arc<RwLock<HashMap<OwnedRoomId, Arc<Room>>>> {
        Arc::clone(&self.rooms)
    }

    /// A new empty room with a fresh ID, not yet registered.
    pub(crate) fn new_room(&self, creator: &UserId) -> Arc<Room> {
        use rand::distributions::{Alphanumeric, DistString};
        loop {
            let local = Alphanumeric.sample_string(&mut rand::thread_rng(), 18);
            let Ok(id) = RoomId::parse(format!("!{local}:{}", self.server_name)) else { continue };
            if self.room(&id).is_none() {
                return Room::new(RoomState::new(id, creator.as_str()));
            }
        }
    }

    /// Every room (the directory walks them).
    pub(crate) fn all_rooms(&self) -> Vec<Arc<Room>> {
        read(&self.rooms).values().cloned().collect()
    }
}

fn first(ids: Vec<OwnedEventId>) -> Result<OwnedEventId> {
    ids.into_iter().next().ok_or_else(|| Error::internal("no event was appended"))
}

/// Event types: non-empty, at most 255 bytes.
pub(crate) fn check_type(event_type: &str) -> Result<()> {
    if event_type.is_empty() || event_type.len() > 255 {
        return Err(Error::invalid_param("event types are 1 to 255 bytes"));
    }
    Ok(())
}
