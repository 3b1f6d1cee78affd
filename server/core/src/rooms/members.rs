//! Reading a room's state and members: all state or one event of it, `members`
//! (with `at` and membership filters) and `joined_members`. A member sees the
//! current state; one who left sees the state as it was when they left.

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::events;
use super::service::{RoomService, read};
use crate::error::{Error, Result};
use crate::storage::rooms::EventRow;

/// The membership filters of `/members`.
#[derive(Debug, Clone, Default)]
pub struct MembersQuery {
    /// `at`: the state at this position.
    pub at: Option<u64>,
    /// `membership`: only this one.
    pub membership: Option<String>,
    /// `not_membership`: not this one.
    pub not_membership: Option<String>,
}

impl RoomService {
    /// The state a user may read: current if joined, as of their leave otherwise, at
    /// most `at`. Never in the room: 403 if they may know of it, else 404.
    async fn readable_state(&self, user: &UserId, room_id: &RoomId, at: Option<u64>) -> Result<Vec<EventRow>> {
        let room = self.readable_room(user, room_id)?;
        let joined = read(&room.state).is_joined(user.as_str());
        let horizon = if joined { None } else { self.sight(user, room_id).await?.horizon() };
        let world = read(&room.state).history_visibility() == "world_readable";
        let upto = match (at, horizon) {
            (Some(a), Some(h)) if !world => Some(a.min(h)),
            (None, Some(h)) if !world => Some(h),
            (a, _) => a,
        };
        if upto == Some(0) {
            return Err(Error::forbidden("you are not in this room"));
        }
        let room_key = room_id.to_string();
        self.db
            .read(move |s| match upto {
                Some(p) => s.room_state_at(&room_key, p),
                None => s.room_current_state(&room_key),
            })
            .await
    }

    /// `GET /rooms/{roomId}/state`.
    pub async fn state_events(&self, user: &UserId, room_id: &RoomId) -> Result<Vec<Value>> {
        let rows = self.readable_state(user, room_id, None).await?;
        let now = self.clock.now_ms();
        Ok(rows.iter().map(|r| events::client_event(r, Some(user), now)).collect())
    }

    /// `GET /rooms/{roomId}/state/{type}/{stateKey}`: the content.
    pub async fn state_event(&self, user: &UserId, room_id: &RoomId, event_type: &str, key: &str) -> Result<Value> {
        let rows = self.readable_state(user, room_id, None).await?;
        rows.iter()
            .find(|r| r.event_type == event_type && r.state_key.as_deref() == Some(key))
            .map(events::content)
            .ok_or_else(|| Error::not_found("no such state event"))
    }

    /// `GET /rooms/{roomId}/members`.
    pub async fn members(&self, user: &UserId, room_id: &RoomId, q: MembersQuery) -> Result<Vec<Value>> {
        let rows = self.readable_state(user, room_id, q.at).await?;
        let now = self.clock.now_ms();
        Ok(rows
            .iter()
            .filter(|r| r.event_type == "m.room.member")
            .filter(|r| {
                let m = events::content(r).get("membership").and_then(Value::as_str).unwrap_or("").to_owned();
                q.membership.as_ref().is_none_or(|want| *want == m)
                    && q.not_membership.as_ref().is_none_or(|not| *not != m)
            })
            .map(|r| events::client_event(r, Some(user), now))
            .collect())
    }

    /// `GET /rooms/{roomId}/joined_members`: only for members.
    pub fn joined_members(&self, user: &UserId, room_id: &RoomId) -> Result<Value> {
        let room = self.joined_room(user, room_id)?;
        let state = read(&room.state);
        let mut joined = serde_json::Map::new();
        for member in state.members_with("join") {
            let content = state.get("m.room.member", member.as_str()).map(|e| e.content.clone()).unwrap_or_default();
            let mut entry = json!({});
            for (from, to) in [("displayname", "display_name"), ("avatar_url", "avatar_url")] {
                if let Some(v) = content.get(from).filter(|v| v.is_string()) {
                    entry[to] = v.clone();
                }
            }
            joined.insert(member.to_string(), entry);
        }
        Ok(json!({ "joined": joined }))
    }
}
