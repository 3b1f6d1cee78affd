//! Where the rooms part and the client-state part meet: rooms tell E2EE who shares a
//! room with whom ([`SharedRooms`]), and stored filters answer the rooms source's
//! `?filter=<id>` ([`FilterLookup`]).

use std::sync::Arc;

use ruma::api::client::filter::FilterDefinition;
use ruma::{OwnedUserId, UserId};

use crate::e2ee::SharedRooms;
use crate::error::Result;
use crate::filters::FilterService;
use crate::rooms::filter::FilterLookup;
use crate::rooms::service::RoomService;
use crate::sync::BoxFuture;

/// Room memberships as E2EE's [`SharedRooms`]: everyone joined to or invited into a
/// room `user` is joined to, and `user`; and who stopped being one of them.
#[derive(Debug)]
pub struct RoomMembers(pub Arc<RoomService>);

impl SharedRooms for RoomMembers {
    fn users_sharing_with<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<OwnedUserId>>> {
        Box::pin(async move {
            let mut users = vec![user.to_owned()];
            for room_id in self.0.joined_rooms(user) {
                let Ok(room) = self.0.joined_room(user, &room_id) else { continue };
                let state = room.snapshot();
                users.extend(state.members_with("join"));
                users.extend(state.members_with("invite"));
            }
            users.sort();
            users.dedup();
            Ok(users)
        })
    }

    fn users_no_longer_sharing<'a>(
        &'a self,
        user: &'a UserId,
        since: u64,
        upto: u64,
    ) -> BoxFuture<'a, Result<Vec<OwnedUserId>>> {
        Box::pin(async move {
            let then = self.0.shared_before_a_change(user, since, upto).await?;
            if then.is_empty() {
                return Ok(then);
            }
            let now = self.users_sharing_with(user).await?;
            Ok(then.into_iter().filter(|u| !now.contains(u)).collect())
        })
    }
}

/// Stored filters as the rooms source's [`FilterLookup`]. The lookup is synchronous
/// (it runs while a `/sync` request is parsed): one small read on a reader connection.
#[derive(Debug)]
pub struct StoredFilters(pub Arc<FilterService>);

impl FilterLookup for StoredFilters {
    fn lookup(&self, user: &UserId, filter_id: &str) -> Option<FilterDefinition> {
        self.0.stored_blocking(user, filter_id).ok()
    }
}
