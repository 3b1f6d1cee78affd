//! Unread counts for `/sync`: messages of others after the user's read receipt (or
//! their join) give the notification count; those among the newest
//! [`MAX_HIGHLIGHT_SCAN`] candidates (unread messages whose JSON contains the user's
//! localpart) that really mention the user give the highlight count.
//!
//! A long poll returns with a few new messages and comes straight back, so each sync
//! remembers what it counted (per user and room) and the next one only counts what
//! was added since: the cost of a sync does not grow with a long unread backlog. The
//! memo is used only when it is exactly continued: the same read position, a range
//! that starts where it ended, and no redaction in between (a redaction may take an
//! older message out of the count); otherwise the counts are taken from the start.
//!
//! When nothing moved the read position (no receipt in the room since the memo: its
//! `ephemeral_pos` is unchanged) and the room's window of newest events
//! ([`super::recent`]) holds what was added, the memo is continued in memory, with
//! no trip to the database: the usual case of a woken long poll.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::{OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::Value;

use super::recent::UNREAD_TYPES;
use super::service::{Room, RoomService};
use crate::error::Result;
use crate::storage::rooms::EventRow;

/// The newest unread candidates checked for mentions.
pub const MAX_HIGHLIGHT_SCAN: usize = 100;
/// Memos kept at most; past it they are all dropped and counted afresh. A memo is
/// about 1 KiB at most.
const MAX_MEMOS: usize = 100_000;

/// What one sync counted for one user in one room.
#[derive(Debug, Clone, Default)]
struct Memo {
    /// Counted after this position (the read receipt, or the join).
    read_to: u64,
    /// Counted up to this position.
    upto: u64,
    /// Unread messages of others.
    count: u64,
    /// The newest candidates, oldest first: position and whether it mentions the user.
    candidates: VecDeque<(u64, bool)>,
    /// The membership position it was counted for.
    mpos: u64,
    /// The room's `ephemeral_pos` before the read position was read.
    eph_seen: u64,
}

/// The memos of every user and room.
#[derive(Debug, Default)]
pub struct UnreadMemos(Mutex<HashMap<(OwnedUserId, OwnedRoomId), Memo>>);

impl UnreadMemos {
    fn get(&self, user: &UserId, room: &OwnedRoomId) -> Option<Memo> {
        let memos = self.0.lock().unwrap_or_else(|p| p.into_inner());
        memos.get(&(user.to_owned(), room.clone())).cloned()
    }

    fn put(&self, user: &UserId, room: &OwnedRoomId, memo: Memo) {
        let mut memos = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if memos.len() >= MAX_MEMOS {
            memos.clear();
        }
        let slot = memos.entry((user.to_owned(), room.clone())).or_default();
        if memo.upto >= slot.upto || memo.read_to != slot.read_to {
            *slot = memo;
        }
    }
}

impl RoomService {
    /// The unread counts of `user` in `room` at `upto` (`mpos`: the position of the
    /// user's membership, below which nothing counts).
    pub(crate) async fn unread(
        &self,
        user: &UserId,
        room: &Room,
        mpos: u64,
        upto: u64,
    ) -> Result<UnreadNotificationsCount> {
        let (room_key, user_key) = (room.id.to_string(), user.to_string());
        let needle = user.localpart().to_ascii_lowercase();
        let eph_seen = room.ephemeral_pos.load(std::sync::atomic::Ordering::SeqCst);
        let known = self.unread.get(user, &room.id);
        let in_memory =
            known.clone().and_then(|m| continued_in_memory(room, m, &user_key, &needle, mpos, eph_seen, upto));
        let memo = match in_memory {
            Some(memo) => memo,
            None => self.counted_in_store(room_key, user_key, needle, known, mpos, eph_seen, upto).await?,
        };
        let highlights = memo.candidates.iter().filter(|(_, m)| *m).count();
        let mut counts = UnreadNotificationsCount::new();
        counts.notification_count = Some(UInt::try_from(memo.count).unwrap_or(UInt::MAX));
        counts.highlight_count = Some(UInt::try_from(highlights as u64).unwrap_or(UInt::MAX));
        self.unread.put(user, &room.id, memo);
        Ok(counts)
    }

    /// The memo continued (or started afresh) from the database.
    #[allow(clippy::too_many_arguments)]
    async fn counted_in_store(
        &self,
        room_key: String,
        user_key: String,
        needle: String,
        known: Option<Memo>,
        mpos: u64,
        eph_seen: u64,
        upto: u64,
    ) -> Result<Memo> {
        self.db
            .read(move |s| {
                let read_to = s.room_read_up_to(&room_key, &user_key)?.unwrap_or(0).max(mpos);
                let continued = match known {
                    Some(m) if m.read_to == read_to && m.upto <= upto => {
                        (s.room_redactions_between(&room_key, m.upto, upto)? == 0).then_some(m)
                    }
                    _ => None,
                };
                let mut memo = continued.unwrap_or(Memo { read_to, upto: read_to, ..Memo::default() });
                memo.mpos = mpos;
                memo.eph_seen = eph_seen;
                let added = s.room_unread_count(&room_key, &user_key, memo.upto, upto)?;
                if added > 0 {
                    let fresh = s.room_unread_containing(
                        &room_key,
                        &user_key,
                        &needle,
                        memo.upto,
                        upto,
                        MAX_HIGHLIGHT_SCAN as u32,
                    )?;
                    // Newest first from the store; kept oldest first.
                    for row in fresh.iter().rev() {
                        memo.candidates.push_back((row.pos, mentions(row, &user_key, &needle)));
                    }
                    while memo.candidates.len() > MAX_HIGHLIGHT_SCAN {
                        memo.candidates.pop_front();
                    }
                }
                memo.count += added;
                memo.upto = memo.upto.max(upto);
                Ok(memo)
            })
            .await
    }
}

/// `memo` continued to `upto` from the room's window, if that gives the same counts
/// as the database would: the same membership, no receipt since (so the same read
/// position), the window holding all that was added, and no redaction among it.
fn continued_in_memory(
    room: &Room,
    mut memo: Memo,
    user_id: &str,
    needle: &str,
    mpos: u64,
    eph_seen: u64,
    upto: u64,
) -> Option<Memo> {
    if memo.mpos != mpos || memo.eph_seen != eph_seen || memo.upto > upto {
        return None;
    }
    let window = room.recent();
    let added: Vec<&EventRow> = window.range(memo.upto, upto)?.collect();
    if added.iter().any(|r| r.event_type == "m.room.redaction") {
        return None;
    }
    for row in added {
        let counts =
            row.sender != user_id && row.redacted_by.is_none() && UNREAD_TYPES.contains(&row.event_type.as_str());
        if !counts {
            continue;
        }
        memo.count += 1;
        if row.json.to_lowercase().contains(needle) {
            memo.candidates.push_back((row.pos, mentions(row, user_id, needle)));
        }
    }
    while memo.candidates.len() > MAX_HIGHLIGHT_SCAN {
        memo.candidates.pop_front();
    }
    memo.upto = upto;
    Some(memo)
}

/// Whether `row` mentions the user: `m.mentions.user_ids` when the event has
/// `m.mentions`, else the user ID or the localpart as a word of the body.
fn mentions(row: &EventRow, user_id: &str, localpart: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(&row.json) else { return false };
    let content = &v["content"];
    if let Some(m) = content.get("m.mentions") {
        return m["user_ids"].as_array().is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(user_id)));
    }
    content["body"].as_str().is_some_and(|body| {
        let body = body.to_lowercase();
        body.contains(&user_id.to_lowercase()) || contains_word(&body, &localpart.to_lowercase())
    })
}

fn contains_word(text: &str, word: &str) -> bool {
    !word.is_empty()
        && text.match_indices(word).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + word.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mentions_by_field_or_by_name() {
        let row = |content: Value| EventRow { json: json!({ "content": content }).to_string(), ..EventRow::default() };
        assert!(mentions(&row(json!({"body": "hey bob, look"})), "@bob:x", "bob"));
        assert!(!mentions(&row(json!({"body": "bobcat"})), "@bob:x", "bob"));
        assert!(mentions(&row(json!({"body": "x", "m.mentions": {"user_ids": ["@bob:x"]}})), "@bob:x", "bob"));
        assert!(!mentions(&row(json!({"body": "bob", "m.mentions": {}})), "@bob:x", "bob"), "m.mentions wins");
    }
}
