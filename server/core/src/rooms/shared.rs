//! Rooms as end-to-end encryption sees them: whose device lists a user follows
//! (everyone who shares a joined room with them), the seam `e2ee::SharedRooms`, and
//! who stopped sharing any room with them (`device_lists.left`).

use std::collections::BTreeSet;

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;

use super::service::{RoomService, read};
use crate::e2ee::SharedRooms;
use crate::error::Result;
use crate::sync::BoxFuture;

impl SharedRooms for RoomService {
    fn users_sharing_with<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<OwnedUserId>>> {
        Box::pin(async move {
            let mut users = vec![user.to_owned()];
            for room_id in self.joined_rooms(user) {
                let Ok(room) = self.joined_room(user, &room_id) else { continue };
                let state = read(&room.state);
                users.extend(state.members_with("join"));
                users.extend(state.members_with("invite"));
            }
            users.sort();
            users.dedup();
            Ok(users)
        })
    }
}

impl RoomService {
    /// The users who shared a room with `user` just after `since` (`user` joined,
    /// they joined or invited) in a room whose membership changed since: those who
    /// may have stopped sharing any room with `user` (the caller removes who shares
    /// one now). Only such rooms can have lost someone, so only those are read: found
    /// in memory, then their state at `since` from the log.
    pub async fn shared_before_a_change(&self, user: &UserId, since: u64, upto: u64) -> Result<Vec<OwnedUserId>> {
        if since >= upto {
            return Ok(Vec::new());
        }
        let mut examine: Vec<OwnedRoomId> = Vec::new();
        for (room_id, _, _) in self.memberships.of(user) {
            let Some(room) = self.room(&room_id) else { continue };
            let state = read(&room.state);
            let member_changed = state
                .state
                .range(("m.room.member".to_owned(), String::new())..)
                .take_while(|((t, _), _)| t == "m.room.member")
                .any(|(_, entry)| entry.pos > since);
            if member_changed {
                examine.push(room_id);
            }
        }
        if examine.is_empty() {
            return Ok(Vec::new());
        }
        let me = user.to_string();
        let then: BTreeSet<String> = self
            .db
            .read(move |s| {
                let mut then = BTreeSet::new();
                for room in examine {
                    let history = s.room_membership_history(room.as_str(), &me)?;
                    let mine = history.iter().rev().find(|(pos, _)| *pos <= since);
                    if mine.is_none_or(|(_, m)| m != "join") {
                        continue;
                    }
                    for row in s.room_state_at(room.as_str(), since)? {
                        let Some(member) = row.state_key.as_ref().filter(|_| row.event_type == "m.room.member") else {
                            continue;
                        };
                        let event: Value = serde_json::from_str(&row.json).unwrap_or_default();
                        if matches!(event["content"]["membership"].as_str(), Some("join" | "invite")) {
                            then.insert(member.clone());
                        }
                    }
                }
                Ok(then)
            })
            .await?;
        Ok(then.into_iter().filter_map(|u| UserId::parse(u).ok()).collect())
    }
}
