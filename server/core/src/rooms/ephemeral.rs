//! Receipts, read markers and typing: what members see in a room's `ephemeral`
//! (and `m.fully_read` in its account data). Receipts are stored with their stream
//! position (taken in the unit that writes them); typing lives in memory and takes
//! its position under the lock it changes under.

use std::sync::Arc;

use ruma::{RoomId, UserId};

use super::service::{Room, RoomService, read};
use crate::error::{Error, Result};
use crate::storage::Unit;
use crate::storage::rooms::ReceiptRow;

/// Receipt types a client may send.
const RECEIPT_TYPES: &[&str] = &["m.read", "m.read.private", "m.fully_read"];

impl RoomService {
    /// Store a receipt (or read marker) of `user` at `event_id`.
    pub async fn receipt(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &str,
        thread_id: Option<&str>,
    ) -> Result<()> {
        if !RECEIPT_TYPES.contains(&receipt_type) {
            return Err(Error::invalid_param(format!("unknown receipt type '{receipt_type}'")));
        }
        if receipt_type == "m.fully_read" && thread_id.is_some() {
            return Err(Error::invalid_param("m.fully_read cannot be threaded"));
        }
        let room = self.joined_room(user, room_id)?;
        let id = event_id.to_owned();
        let event = self.db.read(move |s| s.room_event(&id)).await?;
        if event.filter(|e| e.room_id == room_id.as_str()).is_none() {
            return Err(Error::not_found("event not found"));
        }
        if let Some(thread) = thread_id
            && thread != "main"
            && !thread.starts_with('$')
        {
            return Err(Error::invalid_param("thread_id must be \"main\" or an event ID"));
        }
        let mut unit = Unit::new();
        let pos = self.positions.reserve_in(&mut unit);
        let row = ReceiptRow {
            room_id: room_id.to_string(),
            user_id: user.to_string(),
            receipt_type: receipt_type.to_owned(),
            thread_id: thread_id.unwrap_or("").to_owned(),
            event_id: event_id.to_owned(),
            ts: self.clock.now_ms(),
            pos,
        };
        unit.write(move |s| s.room_receipt_put(&row));
        let room2 = Arc::clone(&room);
        unit.after(move |ok| {
            if ok {
                room2.ephemeral_moved(pos);
            }
        });
        self.db.submit_unit(unit).wait().await?;
        if receipt_type == "m.read" {
            self.wake_members(&room, pos);
        } else {
            self.notifier.bump(user, pos);
        }
        Ok(())
    }

    /// `PUT /typing/{userId}`: `timeout_ms` while typing, `None` once stopped.
    pub fn typing(&self, user: &UserId, room_id: &RoomId, timeout_ms: Option<u64>) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        self.set_typing(&room, user, timeout_ms);
        Ok(())
    }

    fn set_typing(&self, room: &Arc<Room>, user: &UserId, timeout_ms: Option<u64>) {
        let mut stamped = None;
        self.typing.set(&room.id, user, timeout_ms, || {
            let pos = self.positions.next_committed();
            room.ephemeral_moved(pos);
            stamped = Some(pos);
        });
        if let Some(pos) = stamped {
            self.wake_members(room, pos);
        }
    }

    fn wake_members(&self, room: &Room, pos: u64) {
        for member in read(&room.state).members_with("join") {
            self.notifier.bump(&member, pos);
        }
    }

    /// Expire typing notices on their deadlines, forever.
    pub async fn run(self: Arc<Self>) {
        let me = Arc::clone(&self);
        self.typing
            .deadlines
            .run(Arc::clone(&self.clock), move |due| {
                for (room_id, user) in due {
                    if let Some(room) = me.room(&room_id) {
                        me.set_typing(&room, &user, None);
                    }
                }
                std::future::ready(())
            })
            .await;
    }
}
