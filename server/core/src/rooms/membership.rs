//! Membership changes as the client API names them: join (by ID or alias), leave,
//! invite, kick, ban, unban, forget. Each is one `m.room.member` event through the
//! auth rules; what differs is who may learn that a room exists when refused.

use ruma::{OwnedRoomId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};

use super::service::{RoomService, read, room_not_found};
use crate::error::{Error, Result};

impl RoomService {
    /// Join a room by ID or alias. A room one may not join and was not invited to
    /// answers as if it did not exist.
    pub async fn join(&self, user: &UserId, target: &RoomOrAliasId) -> Result<OwnedRoomId> {
        let room_id = match <&RoomId>::try_from(target) {
            Ok(id) => id.to_owned(),
            Err(alias) => self.resolve_alias(user, alias).await?,
        };
        let room = self.room(&room_id).ok_or_else(room_not_found)?;
        {
            let state = read(&room.state);
            match state.membership(user.as_str()) {
                Some("join") => return Ok(room_id),
                Some(_) => {}
                None if state.join_rule() == "public" => {}
                None => return Err(room_not_found()),
            }
        }
        self.set_membership(user, &room, user, "join", json!({})).await?;
        Ok(room_id)
    }

    /// Leave (or reject an invite to) a room.
    pub async fn leave(&self, user: &UserId, room_id: &RoomId, reason: Option<String>) -> Result<()> {
        let room = self.known_room(user, room_id)?;
        if read(&room.state).membership(user.as_str()).is_none() {
            return Err(room_not_found());
        }
        if matches!(read(&room.state).membership(user.as_str()), Some("leave")) {
            return Ok(());
        }
        self.set_membership(user, &room, user, "leave", with_reason(reason)).await.map(|_| ())
    }

    /// Invite `target`.
    pub async fn invite(&self, user: &UserId, room_id: &RoomId, target: &UserId, reason: Option<String>) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        self.set_membership(user, &room, target, "invite", with_reason(reason)).await.map(|_| ())
    }

    /// Kick `target` (they leave, by another's hand).
    pub async fn kick(&self, user: &UserId, room_id: &RoomId, target: &UserId, reason: Option<String>) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        self.set_membership(user, &room, target, "leave", with_reason(reason)).await.map(|_| ())
    }

    /// Ban `target`.
    pub async fn ban(&self, user: &UserId, room_id: &RoomId, target: &UserId, reason: Option<String>) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        self.set_membership(user, &room, target, "ban", with_reason(reason)).await.map(|_| ())
    }

    /// Unban `target`: their membership becomes `leave`.
    pub async fn unban(&self, user: &UserId, room_id: &RoomId, target: &UserId, reason: Option<String>) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        if read(&room.state).membership(target.as_str()) != Some("ban") {
            return Err(Error::forbidden("the user is not banned"));
        }
        self.set_membership(user, &room, target, "leave", with_reason(reason)).await.map(|_| ())
    }

    /// Forget a room one has left: it no longer appears in `/sync` at all.
    pub async fn forget(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let room = self.known_room(user, room_id)?;
        match read(&room.state).membership(user.as_str()) {
            None => return Err(room_not_found()),
            Some("join") | Some("invite") => return Err(Error::invalid_param("leave the room before forgetting it")),
            Some(_) => {}
        }
        let (user, room) = (user.to_string(), room_id.to_string());
        self.db.write(move |s| s.room_forget(&user, &room)).await
    }
}

fn with_reason(reason: Option<String>) -> Value {
    match reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    }
}
