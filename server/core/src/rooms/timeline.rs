//! Reading a room's timeline as a user may see it: pages both ways (`/messages`),
//! one event, the context around one, relations and threads, and the events as
//! clients see them with the server's bundled aggregations (`m.thread`, `m.replace`)
//! in `unsigned.m.relations`. Every read goes through history visibility.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::api::client::filter::RoomEventFilter;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::events;
use super::filter;
use super::service::{Room, RoomService, read};
use super::visibility::{MembershipHistory, may_see};
use crate::error::{Error, Result};
use crate::storage::rooms::{EventPage, EventRow};

/// The most events one page carries.
pub const MAX_PAGE: u32 = 1000;
/// Pages fetched at most to fill one answer when a filter or visibility drops events.
const MAX_FETCHES: usize = 5;

/// What one user may see of one room's history.
#[derive(Debug, Clone)]
pub struct Sight {
    membership: MembershipHistory,
    visibility: Vec<(u64, String)>,
}

impl Sight {
    /// Whether the event at `pos` is visible.
    pub fn may_see(&self, pos: u64) -> bool {
        let vis = self.visibility.iter().rev().find(|(p, _)| *p < pos).map_or("shared", |(_, v)| v.as_str());
        may_see(vis, &self.membership, pos)
    }

    /// The newest position the user may see: their leave, ban or kick, if not joined.
    pub fn horizon(&self) -> Option<u64> {
        match self.membership.0.last() {
            Some((_, m)) if m == "join" => None,
            Some((p, _)) => Some(*p),
            None => Some(0),
        }
    }
}

/// A page of `/messages`.
#[derive(Debug, Clone)]
pub struct Messages {
    /// The events, in the order asked.
    pub chunk: Vec<Value>,
    /// The token the page starts at.
    pub start: u64,
    /// The token for the next page; `None` at the end.
    pub end: Option<u64>,
    /// Member events of the senders, when lazy loading.
    pub state: Vec<Value>,
}

/// The parameters of `/messages`.
#[derive(Debug, Clone, Default)]
pub struct MessagesQuery {
    /// `from`: a position; by default the newest (back) or the oldest (forward).
    pub from: Option<u64>,
    /// `to`: where to stop.
    pub to: Option<u64>,
    /// `dir=b`.
    pub backwards: bool,
    /// `limit`.
    pub limit: u32,
    /// `filter`.
    pub filter: RoomEventFilter,
}

/// `/context`.
#[derive(Debug, Clone)]
pub struct Context {
    /// The event.
    pub event: Value,
    /// Before it, newest first.
    pub before: Vec<Value>,
    /// After it, oldest first.
    pub after: Vec<Value>,
    /// Token at the start (before the oldest).
    pub start: u64,
    /// Token at the end (after the newest).
    pub end: u64,
    /// The state at the event.
    pub state: Vec<Value>,
}

impl RoomService {
    /// A room whose history `user` may read: one they are or were in, or a
    /// `world_readable` one they may know of. Others get 404 (or 403 for a public
    /// room they may join but never did).
    pub(crate) fn readable_room(&self, user: &UserId, room_id: &RoomId) -> Result<Arc<Room>> {
        let room = self.known_room(user, room_id)?;
        let ok = {
            let state = read(&room.state);
            state.membership(user.as_str()).is_some() || state.history_visibility() == "world_readable"
        };
        if ok { Ok(room) } else { Err(Error::forbidden("you are not in this room")) }
    }

    /// What `user` may see of `room_id`.
    pub async fn sight(&self, user: &UserId, room_id: &RoomId) -> Result<Sight> {
        let (room, user) = (room_id.to_string(), user.to_string());
        self.db
            .read(move |s| {
                Ok(Sight {
                    membership: MembershipHistory(s.room_membership_history(&room, &user)?),
                    visibility: s.room_visibility_history(&room)?,
                })
            })
            .await
    }

    /// Events as `viewer` sees them, with bundled aggregations.
    pub async fn render(&self, rows: &[EventRow], viewer: &UserId) -> Result<Vec<Value>> {
        let bundles = if self.nothing_relates_to(rows) { HashMap::new() } else { self.bundles(rows, viewer).await? };
        let now = self.clock.now_ms();
        Ok(rows
            .iter()
            .map(|row| {
                let base = self.rendered.of(row);
                let mut event = base.0.clone();
                events::personalise(&mut event, row, Some(viewer), now, base.1);
                if let (Some(bundle), None) = (bundles.get(&row.event_id), &row.redacted_by) {
                    event["unsigned"]["m.relations"] = Value::Object(bundle.clone());
                }
                event
            })
            .collect())
    }

    /// Whether no event relates to any of `rows` (all of one room), so there is
    /// nothing to bundle: the room's window knows without the database.
    fn nothing_relates_to(&self, rows: &[EventRow]) -> bool {
        let Some(first) = rows.first() else { return true };
        if rows.iter().any(|r| r.room_id != first.room_id) {
            return false;
        }
        let oldest = rows.iter().map(|r| r.pos).min().unwrap_or(0);
        let Ok(room_id) = RoomId::parse(&first.room_id) else { return false };
        self.room(&room_id).is_some_and(|room| room.recent().nothing_relates_from(oldest))
    }

    /// The bundled aggregations (`unsigned.m.relations`) of `rows` as `viewer` sees them.
    async fn bundles(
        &self,
        rows: &[EventRow],
        viewer: &UserId,
    ) -> Result<HashMap<String, serde_json::Map<String, Value>>> {
        let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let viewer_s = viewer.to_string();
        self.db
            .read(move |s| {
                let mut out: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
                for (target, rel_type, count, newest) in s.room_relation_counts(&ids)? {
                    let Some(latest) = s.room_event_at(newest)? else { continue };
                    let entry = out.entry(target.clone()).or_default();
                    match rel_type.as_str() {
                        "m.thread" => {
                            let mine = s.room_thread_participated(&target, &viewer_s)?;
                            entry.insert(
                                "m.thread".into(),
                                json!({
                                    "latest_event": events::client_event(&latest, None, 0),
                                    "count": count,
                                    "current_user_participated": mine,
                                }),
                            );
                        }
                        "m.replace" => {
                            entry.insert(
                                "m.replace".into(),
                                json!({
                                    "event_id": latest.event_id,
                                    "origin_server_ts": serde_json::from_str::<Value>(&latest.json)
                                        .ok().and_then(|v| v["origin_server_ts"].as_u64()),
                                    "sender": latest.sender,
                                }),
                            );
                        }
                        _ => {}
                    }
                }
                Ok(out)
            })
            .await
    }

    /// `/messages`: a page of a room's events the user may see.
    pub async fn messages(&self, user: &UserId, room_id: &RoomId, q: MessagesQuery) -> Result<Messages> {
        self.readable_room(user, room_id)?;
        let sight = self.sight(user, room_id).await?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let visible = self.positions.visible();
        let ceiling = sight.horizon().map_or(visible, |h| h.min(visible));
        let (mut above, mut upto) = if q.backwards {
            (q.to.unwrap_or(0), q.from.unwrap_or(visible).min(ceiling))
        } else {
            (q.from.unwrap_or(0), q.to.unwrap_or(visible).min(ceiling))
        };
        let start = if q.backwards { q.from.unwrap_or(visible) } else { q.from.unwrap_or(0) };
        let mut kept = Vec::new();
        let (mut exhausted, mut cursor) = (false, None);
        'fetch: for _ in 0..MAX_FETCHES {
            if above >= upto {
                exhausted = true;
                break;
            }
            let page = EventPage { above, upto, backwards: q.backwards, limit };
            let room = room_id.to_string();
            let rows = self.db.read(move |s| s.room_events(&room, page)).await?;
            let full = rows.len() as u32 == limit;
            for row in rows {
                cursor = Some(row.pos);
                if sight.may_see(row.pos) && filter::event_matches(&q.filter, &row) {
                    kept.push(row);
                }
                if kept.len() as u32 == limit {
                    break 'fetch;
                }
            }
            match cursor {
                Some(c) if full && q.backwards => upto = c - 1,
                Some(c) if full => above = c,
                _ => {
                    exhausted = true;
                    break;
                }
            }
        }
        let end = if exhausted { None } else { Some(cursor.map_or(start, |c| if q.backwards { c - 1 } else { c })) };
        let chunk = self.render(&kept, user).await?;
        let state = if filter::lazy_members(&q.filter) { self.members_of_senders(room_id, &kept) } else { vec![] };
        Ok(Messages { chunk, start, end, state })
    }

    /// The current member events of the senders of `rows` (lazy-loaded members).
    pub(crate) fn members_of_senders(&self, room_id: &RoomId, rows: &[EventRow]) -> Vec<Value> {
        let Some(room) = self.room(room_id) else { return vec![] };
        let state = read(&room.state);
        let mut senders: Vec<&str> = rows.iter().map(|r| r.sender.as_str()).collect();
        senders.sort_unstable();
        senders.dedup();
        senders
            .into_iter()
            .filter_map(|s| state.get("m.room.member", s))
            .map(|e| json!({ "event_id": e.event_id, "type": "m.room.member", "content": e.content }))
            .collect()
    }

    /// One event the user may see; 404 otherwise.
    pub async fn event(&self, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<Value> {
        let row = self.visible_event(user, room_id, event_id).await?;
        Ok(self.render(&[row], user).await?.remove(0))
    }

    async fn visible_event(&self, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<EventRow> {
        self.readable_room(user, room_id).map_err(|_| room_not_found_or_event())?;
        let id = event_id.to_owned();
        let row = self.db.read(move |s| s.room_event(&id)).await?;
        let row = row.filter(|r| r.room_id == room_id.as_str()).ok_or_else(room_not_found_or_event)?;
        if row.pos > self.positions.visible() || !self.sight(user, room_id).await?.may_see(row.pos) {
            return Err(room_not_found_or_event());
        }
        Ok(row)
    }

    /// `/context/{eventId}`: the event, `limit` events around it, and the state at it.
    pub async fn context(&self, user: &UserId, room_id: &RoomId, event_id: &str, limit: u32) -> Result<Context> {
        let row = self.visible_event(user, room_id, event_id).await?;
        let sight = self.sight(user, room_id).await?;
        let limit = limit.min(MAX_PAGE);
        let (before_n, after_n) = (limit / 2, limit - limit / 2);
        let room = room_id.to_string();
        let visible = self.positions.visible();
        let ceiling = sight.horizon().map_or(visible, |h| h.min(visible));
        let pos = row.pos;
        let (before, after, state) = self
            .db
            .read(move |s| {
                let b =
                    s.room_events(&room, EventPage { above: 0, upto: pos - 1, backwards: true, limit: before_n })?;
                let a = if ceiling > pos {
                    s.room_events(&room, EventPage { above: pos, upto: ceiling, backwards: false, limit: after_n })?
                } else {
                    vec![]
                };
                Ok((b, a, s.room_state_at(&room, pos)?))
            })
            .await?;
        let before: Vec<EventRow> = before.into_iter().filter(|r| sight.may_see(r.pos)).collect();
        let after: Vec<EventRow> = after.into_iter().filter(|r| sight.may_see(r.pos)).collect();
        let start = before.last().map_or(pos - 1, |r| r.pos - 1);
        let end = after.last().map_or(pos, |r| r.pos);
        Ok(Context {
            event: self.render(std::slice::from_ref(&row), user).await?.remove(0),
            before: self.render(&before, user).await?,
            after: self.render(&after, user).await?,
            start,
            end,
            state: state.iter().map(|e| events::client_event(e, Some(user), self.clock.now_ms())).collect(),
        })
    }

    /// `/relations/{eventId}[/{relType}[/{eventType}]]`: events relating to one the user may see.
    pub async fn relations(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &str,
        rel_type: Option<String>,
        event_type: Option<String>,
        q: MessagesQuery,
    ) -> Result<Messages> {
        self.visible_event(user, room_id, event_id).await?;
        let sight = self.sight(user, room_id).await?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let visible = self.positions.visible();
        let (above, upto) = if q.backwards {
            (q.to.unwrap_or(0), q.from.unwrap_or(visible).min(visible))
        } else {
            (q.from.unwrap_or(0), q.to.unwrap_or(visible).min(visible))
        };
        let page = EventPage { above, upto, backwards: q.backwards, limit };
        let id = event_id.to_owned();
        let rows =
            self.db.read(move |s| s.room_relations(&id, rel_type.as_deref(), event_type.as_deref(), page)).await?;
        let full = rows.len() as u32 == limit;
        let end = rows.last().filter(|_| full).map(|r| if q.backwards { r.pos - 1 } else { r.pos });
        let rows: Vec<EventRow> = rows.into_iter().filter(|r| sight.may_see(r.pos)).collect();
        Ok(Messages { chunk: self.render(&rows, user).await?, start: q.from.unwrap_or(visible), end, state: vec![] })
    }

    /// `/threads`: thread roots, newest activity first; `participated` keeps those the user took part in.
    pub async fn threads(
        &self,
        user: &UserId,
        room_id: &RoomId,
        participated: bool,
        from: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<Value>, Option<u64>)> {
        self.readable_room(user, room_id)?;
        let sight = self.sight(user, room_id).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let before = from.unwrap_or(u64::MAX >> 1);
        let (room, who) = (room_id.to_string(), participated.then(|| user.to_string()));
        let roots = self.db.read(move |s| s.room_thread_roots(&room, who.as_deref(), before, limit)).await?;
        let next = (roots.len() as u32 == limit).then(|| roots.last().map(|(_, latest)| *latest)).flatten();
        let rows: Vec<EventRow> = roots.into_iter().map(|(r, _)| r).filter(|r| sight.may_see(r.pos)).collect();
        Ok((self.render(&rows, user).await?, next))
    }
}

/// An event one may not see answers as one that does not exist.
fn room_not_found_or_event() -> Error {
    Error::not_found("event not found")
}
