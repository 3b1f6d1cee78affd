//! Who hears of a user's device changes: the users who share a room with them. The
//! rooms service implements [`SharedRooms`] (`rooms/shared.rs`); [`SelfOnly`] ("just
//! the user") serves tests without rooms.

use ruma::{OwnedUserId, UserId};

use crate::error::Result;
use crate::sync::BoxFuture;

/// The users who share a room with a user.
pub trait SharedRooms: Send + Sync + std::fmt::Debug {
    /// Everyone who shares a room with `user` (joined or invited), `user` included.
    fn users_sharing_with<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<OwnedUserId>>>;

    /// The users who shared a room with `user` just after position `since` and share
    /// none now (`device_lists.left`); `upto` bounds the changes looked at. Without
    /// rooms nobody ever leaves.
    fn users_no_longer_sharing<'a>(
        &'a self,
        _user: &'a UserId,
        _since: u64,
        _upto: u64,
    ) -> BoxFuture<'a, Result<Vec<OwnedUserId>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// No rooms yet: a user shares only with themself.
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfOnly;

impl SharedRooms for SelfOnly {
    fn users_sharing_with<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<OwnedUserId>>> {
        Box::pin(async move { Ok(vec![user.to_owned()]) })
    }
}
