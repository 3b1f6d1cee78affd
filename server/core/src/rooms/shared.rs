//! Rooms as end-to-end encryption sees them: whose device lists a user follows
//! (everyone who shares a joined room with them), the seam `e2ee::SharedRooms`.

use ruma::{OwnedUserId, UserId};

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
