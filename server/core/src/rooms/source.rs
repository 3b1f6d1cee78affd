//! Rooms as a `/sync` source: `rooms.join` (timeline with `limited`/`prev_batch`,
//! state before the timeline — full on an initial sync or a new join, the gap's
//! changes when limited —, ephemeral typing and receipts, unread counts, summary),
//! `rooms.invite` (stripped state) and `rooms.leave`, honouring the filter.
//!
//! Every event has a stream position; a room is in the answer when something of it
//! lies in `(since, upto]`. A membership whose event is above `upto` waits for the
//! next sync, which then carries it (and so never skips what led up to it).
//!
//! Room account data (other than `m.fully_read`, kept with receipts) is another
//! source's: it adds `account_data` to the entries of `out.rooms.join`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3::{
    Ephemeral, InviteState, InvitedRoom, JoinedRoom, LeftRoom, RoomAccountData, State, StateEvents, Timeline,
};
use ruma::serde::Raw;
use ruma::{RoomId, UInt, UserId};
use serde_json::{Value, json};

use super::filter;
use super::service::{Room, RoomService, read};
use crate::error::{Error, Result};
use crate::storage::rooms::{EventPage, EventRow, ReceiptRow};
use crate::sync::{BoxFuture, Source, SyncRange, SyncResponse};

/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE: u32 = 10;
/// The largest timeline limit honoured.
const MAX_TIMELINE: u32 = 1000;
/// State events shown in an invite.
const INVITE_STATE: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// `rooms` in `/sync`.
#[derive(Debug)]
pub struct RoomsSource(pub Arc<RoomService>);

impl Source for RoomsSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let filter = Arc::clone(&out.filter);
            self.0.collect_sync(user, range, &filter, out).await
        })
    }
}

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(value).map_err(Error::internal)?;
    Ok(Raw::from_json(json))
}

fn uint(n: usize) -> UInt {
    UInt::try_from(n as u64).unwrap_or(UInt::MAX)
}

impl RoomService {
    /// Add what changed in the user's rooms in `range` to `out`.
    pub async fn collect_sync(
        &self,
        user: &UserId,
        range: SyncRange,
        filter: &FilterDefinition,
        out: &mut SyncResponse,
    ) -> Result<()> {
        let mut rooms = self.memberships.of(user);
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        for (room_id, membership, mpos) in rooms {
            if mpos > range.upto || !filter::room_matches(filter, &filter.room.timeline, &room_id) {
                continue;
            }
            let Some(room) = self.room(&room_id) else { continue };
            match membership.as_str() {
                "join" => {
                    if let Some(joined) = self.joined_entry(user, &room, mpos, range, filter).await? {
                        out.rooms.join.insert(room_id, joined);
                    }
                }
                "invite" if range.contains(mpos) => {
                    out.rooms.invite.insert(room_id, self.invite_entry(user, &room)?);
                }
                "leave" | "ban" => {
                    let shown = match range.since {
                        Some(since) => mpos > since,
                        None => filter.room.include_leave,
                    };
                    if shown
                        && !self.forgotten(user, &room_id).await?
                        && let Some(left) = self.left_entry(user, &room, mpos, range, filter).await?
                    {
                        out.rooms.leave.insert(room_id, left);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn forgotten(&self, user: &UserId, room_id: &RoomId) -> Result<bool> {
        let (u, r) = (user.to_string(), room_id.to_string());
        self.db.read(move |s| s.room_is_forgotten(&u, &r)).await
    }

    /// The newest `limit` events of a room in `(above, upto]`, oldest first, and
    /// whether there were more: from the room's window when it holds the range.
    async fn tail(&self, room: &Room, above: u64, upto: u64, limit: u32) -> Result<(Vec<EventRow>, bool)> {
        if above >= upto {
            return Ok((vec![], false));
        }
        if let Some(held) = room.recent().tail(above, upto, limit as usize) {
            return Ok(held);
        }
        let room = room.id.to_string();
        let page = EventPage { above, upto, backwards: true, limit: limit + 1 };
        let mut rows = self.db.read(move |s| s.room_events(&room, page)).await?;
        let limited = rows.len() as u32 > limit;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((rows, limited))
    }

    /// A timeline and the state before it, as the filter asks.
    async fn timeline(
        &self,
        user: &UserId,
        room: &Room,
        above: u64,
        upto: u64,
        full_state: bool,
        filter: &FilterDefinition,
    ) -> Result<(Timeline, Vec<Value>)> {
        let limit =
            filter.room.timeline.limit.map_or(DEFAULT_TIMELINE, |l| u64::from(l).min(MAX_TIMELINE as u64) as u32);
        let (mut rows, limited) = self.tail(room, above, upto, limit).await?;
        let fetched = rows.len();
        // Events before the user's current join (or any, once they are not joined)
        // pass history visibility; their own member events they always see.
        let joined_at = self.current_join(user, room);
        if joined_at == 0 || rows.iter().any(|r| r.pos < joined_at) {
            let sight = self.sight(user, &room.id).await?;
            rows.retain(|r| {
                sight.may_see(r.pos)
                    || (r.event_type == "m.room.member" && r.state_key.as_deref() == Some(user.as_str()))
            });
        }
        let kept: Vec<EventRow> =
            rows.into_iter().filter(|r| filter::event_matches(&filter.room.timeline, r)).collect();
        // The timeline starts at its first event as the client sees it: state events
        // the filter or visibility left out of it are carried in `state` instead.
        let first = kept.first().map_or(upto + 1, |r| r.pos);
        let mut timeline = Timeline::new();
        timeline.limited = limited;
        timeline.prev_batch = Some(format!("s{}", first.saturating_sub(1)));
        for event in self.render(&kept, user).await? {
            timeline.events.push(raw(&event)?);
        }
        let room_key = room.id.to_string();
        let gap_start = above;
        let state_rows = if full_state {
            self.db.read(move |s| s.room_state_at(&room_key, first.saturating_sub(1))).await?
        } else if limited || kept.len() < fetched {
            let changes =
                self.db.read(move |s| s.room_state_changes(&room_key, gap_start, first.saturating_sub(1))).await?;
            newest_per_key(changes)
        } else {
            vec![]
        };
        let lazy = filter::lazy_members(&filter.room.state);
        let senders: Vec<&str> = kept.iter().map(|r| r.sender.as_str()).chain([user.as_str()]).collect();
        let mut state: Vec<EventRow> = state_rows
            .into_iter()
            .filter(|r| filter::event_matches(&filter.room.state, r))
            .filter(|r| {
                !lazy || r.event_type != "m.room.member" || r.state_key.as_deref().is_some_and(|k| senders.contains(&k))
            })
            .collect();
        if lazy && !full_state {
            // Members of the timeline's senders the state does not carry yet.
            let have: Vec<String> = state.iter().filter_map(|r| r.state_key.clone()).collect();
            let missing: Vec<EventRow> = kept
                .iter()
                .filter(|r| !have.contains(&r.sender))
                .filter_map(|r| {
                    let s = read(&room.state);
                    s.get("m.room.member", &r.sender).map(|e| EventRow {
                        event_id: e.event_id.clone(),
                        event_type: "m.room.member".into(),
                        state_key: Some(r.sender.clone()),
                        sender: e.sender.clone(),
                        room_id: room.id.to_string(),
                        json: json!({"type": "m.room.member", "state_key": r.sender, "sender": e.sender,
                                     "content": e.content, "room_id": room.id})
                        .to_string(),
                        pos: e.pos,
                        ..EventRow::default()
                    })
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            state.extend(missing.into_iter().filter(|r| seen.insert(r.state_key.clone())));
        }
        let state = self.render(&state, user).await?;
        Ok((timeline, state))
    }

    /// The position of the user's current join, 0 if none.
    fn current_join(&self, user: &UserId, room: &Room) -> u64 {
        let state = read(&room.state);
        match state.get("m.room.member", user.as_str()) {
            Some(e) if state.is_joined(user.as_str()) => e.pos,
            _ => 0,
        }
    }

    async fn joined_entry(
        &self,
        user: &UserId,
        room: &Arc<Room>,
        mpos: u64,
        range: SyncRange,
        filter: &FilterDefinition,
    ) -> Result<Option<JoinedRoom>> {
        let fresh = range.since.is_none_or(|since| mpos > since);
        let since = range.since.unwrap_or(0);
        let head = read(&room.state).head.as_ref().map_or(0, |(_, _, p)| *p);
        let eph = room.ephemeral_pos.load(std::sync::atomic::Ordering::SeqCst);
        if !fresh && head <= since && eph <= since {
            return Ok(None);
        }
        let mut joined = JoinedRoom::new();
        let above = if fresh { 0 } else { since };
        let (timeline, state) = self.timeline(user, room, above, range.upto, fresh, filter).await?;
        joined.timeline = timeline;
        let mut events = StateEvents::new();
        for e in &state {
            events.events.push(raw(e)?);
        }
        joined.state = State::Before(events);
        let (ephemeral, fully_read) =
            self.ephemeral(user, room, if fresh { None } else { Some(since) }, range.upto, filter).await?;
        joined.ephemeral = ephemeral;
        if let Some(marker) = fully_read {
            let mut data = RoomAccountData::new();
            data.events.push(raw(&json!({ "type": "m.fully_read", "content": { "event_id": marker } }))?);
            joined.account_data = data;
        }
        joined.unread_notifications = self.unread(user, room, mpos, range.upto).await?;
        let state = read(&room.state);
        joined.summary.joined_member_count = Some(uint(state.joined_count()));
        joined.summary.invited_member_count = Some(uint(state.members_with("invite").len()));
        if state.get("m.room.name", "").is_none() && state.get("m.room.canonical_alias", "").is_none() {
            let mut heroes: Vec<_> = state
                .members_with("join")
                .into_iter()
                .chain(state.members_with("invite"))
                .filter(|u| u != user)
                .collect();
            heroes.sort();
            heroes.truncate(5);
            joined.summary.heroes = heroes;
        }
        Ok(Some(joined))
    }

    async fn ephemeral(
        &self,
        user: &UserId,
        room: &Room,
        since: Option<u64>,
        upto: u64,
        filter: &FilterDefinition,
    ) -> Result<(Ephemeral, Option<String>)> {
        let mut eph = Ephemeral::new();
        let moved = room.ephemeral_pos.load(std::sync::atomic::Ordering::SeqCst);
        if since.is_some_and(|s| moved <= s) {
            return Ok((eph, None));
        }
        let typing = self.typing.users(&room.id);
        let typing_event = json!({ "type": "m.typing", "content": { "user_ids": typing } });
        if (since.is_some() || !typing.is_empty()) && filter::event_matches(&filter.room.ephemeral, &row_of("m.typing"))
        {
            eph.events.push(raw(&typing_event)?);
        }
        let room_key = room.id.to_string();
        let receipts: Vec<ReceiptRow> =
            self.db.read(move |s| s.room_receipts(&room_key, since.unwrap_or(0), upto)).await?;
        let mut fully_read = None;
        let mut content: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
        for r in receipts {
            let mine = r.user_id == user.as_str();
            match r.receipt_type.as_str() {
                "m.fully_read" if mine => fully_read = Some(r.event_id),
                "m.fully_read" => {}
                "m.read.private" if !mine => {}
                _ => {
                    let mut receipt = json!({ "ts": r.ts });
                    if !r.thread_id.is_empty() {
                        receipt["thread_id"] = json!(r.thread_id);
                    }
                    content
                        .entry(r.event_id)
                        .or_default()
                        .entry(r.receipt_type)
                        .or_default()
                        .insert(r.user_id, receipt);
                }
            }
        }
        if !content.is_empty() && filter::event_matches(&filter.room.ephemeral, &row_of("m.receipt")) {
            eph.events.push(raw(&json!({ "type": "m.receipt", "content": content }))?);
        }
        Ok((eph, fully_read))
    }

    fn invite_entry(&self, user: &UserId, room: &Room) -> Result<InvitedRoom> {
        let state = read(&room.state);
        let mut invite = InviteState::new();
        for t in INVITE_STATE {
            if let Some(e) = state.get(t, "") {
                invite
                    .events
                    .push(raw(&json!({ "type": t, "state_key": "", "sender": e.sender, "content": e.content }))?);
            }
        }
        if let Some(e) = state.get("m.room.member", user.as_str()) {
            invite.events.push(raw(&json!({
                "type": "m.room.member", "state_key": user, "sender": e.sender, "content": e.content,
                "event_id": e.event_id,
            }))?);
        }
        Ok(InvitedRoom::from(invite))
    }

    async fn left_entry(
        &self,
        user: &UserId,
        room: &Room,
        mpos: u64,
        range: SyncRange,
        filter: &FilterDefinition,
    ) -> Result<Option<LeftRoom>> {
        let above = range.since.unwrap_or(0);
        let upto = mpos.min(range.upto);
        let (timeline, state) = self.timeline(user, room, above, upto, range.since.is_none(), filter).await?;
        let mut left = LeftRoom::new();
        left.timeline = timeline;
        let mut events = StateEvents::new();
        for e in &state {
            events.events.push(raw(e)?);
        }
        left.state = State::Before(events);
        Ok(Some(left))
    }
}

fn row_of(event_type: &str) -> EventRow {
    EventRow { event_type: event_type.to_owned(), ..EventRow::default() }
}

/// The newest event of each state key, oldest first.
fn newest_per_key(rows: Vec<EventRow>) -> Vec<EventRow> {
    let mut by_key: BTreeMap<(String, String), EventRow> = BTreeMap::new();
    for r in rows {
        by_key.insert((r.event_type.clone(), r.state_key.clone().unwrap_or_default()), r);
    }
    let mut out: Vec<EventRow> = by_key.into_values().collect();
    out.sort_by_key(|r| r.pos);
    out
}
