//! A room's current state in memory: the newest state event per (type, state_key),
//! the room's head (newest event, depth, position) and what auth rules read from
//! it (memberships, power levels, join rule, history visibility). One copy per room,
//! loaded at start, changed only after a write committed.

use std::collections::{BTreeMap, HashMap};

use ruma::events::room::power_levels::RoomPowerLevelsEventContent;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;

use crate::storage::rooms::EventRow;

/// One state event as the room keeps it.
#[derive(Debug, Clone)]
pub struct StateEntry {
    /// Its event ID.
    pub event_id: String,
    /// Its stream position.
    pub pos: u64,
    /// Who sent it.
    pub sender: String,
    /// Its content (after redaction).
    pub content: Value,
}

/// The power levels that auth rules read, from `m.room.power_levels` (ruma's type).
#[derive(Debug, Clone)]
pub struct Levels {
    content: Option<RoomPowerLevelsEventContent>,
    creator: String,
}

impl Levels {
    /// A user's level: from the event, or 100 for the creator while there is none.
    pub fn user(&self, user: &str) -> i64 {
        match &self.content {
            Some(c) => {
                UserId::parse(user).ok().and_then(|u| c.users.get(&u).copied()).unwrap_or(c.users_default).into()
            }
            None if user == self.creator => 100,
            None => 0,
        }
    }

    /// The level needed to send an event of `event_type` (state or not).
    pub fn event(&self, event_type: &str, is_state: bool) -> i64 {
        match &self.content {
            Some(c) => c
                .events
                .iter()
                .find(|(t, _)| t.to_string() == event_type)
                .map(|(_, l)| (*l).into())
                .unwrap_or(if is_state { c.state_default.into() } else { c.events_default.into() }),
            None => {
                if is_state {
                    50
                } else {
                    0
                }
            }
        }
    }

    /// `invite`, `kick`, `ban`, `redact`.
    pub fn action(&self, action: Action) -> i64 {
        match &self.content {
            Some(c) => match action {
                Action::Invite => c.invite.into(),
                Action::Kick => c.kick.into(),
                Action::Ban => c.ban.into(),
                Action::Redact => c.redact.into(),
                Action::NotifyRoom => c.notifications.room.into(),
            },
            None => match action {
                Action::Invite => 0,
                _ => 50,
            },
        }
    }

    /// The users with explicit levels (for checks of power level changes).
    pub fn users(&self) -> BTreeMap<String, i64> {
        self.content
            .as_ref()
            .map(|c| c.users.iter().map(|(u, l)| (u.to_string(), i64::from(*l))).collect())
            .unwrap_or_default()
    }
}

/// What power levels gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Inviting.
    Invite,
    /// Kicking.
    Kick,
    /// Banning and unbanning.
    Ban,
    /// Redacting others' events.
    Redact,
    /// `@room` notifications.
    NotifyRoom,
}

/// The current state and head of one room.
#[derive(Debug, Clone)]
pub struct RoomState {
    /// The room.
    pub room_id: OwnedRoomId,
    /// Who created it.
    pub creator: String,
    /// Listed in the public directory.
    pub published: bool,
    /// The newest state event per (type, state_key).
    pub state: BTreeMap<(String, String), StateEntry>,
    /// The newest event's ID, depth and position.
    pub head: Option<(String, u64, u64)>,
    /// Members by membership, for counts and fan-out.
    members: HashMap<String, String>,
}

impl RoomState {
    /// An empty room about to be created.
    pub fn new(room_id: OwnedRoomId, creator: &str) -> Self {
        Self {
            room_id,
            creator: creator.to_owned(),
            published: false,
            state: BTreeMap::new(),
            head: None,
            members: HashMap::new(),
        }
    }

    /// Apply a stored event (state events change the state; every event moves the head).
    pub fn apply(&mut self, row: &EventRow, content: Value) {
        if let Some(key) = &row.state_key {
            if row.event_type == "m.room.member" {
                let membership = content.get("membership").and_then(Value::as_str).unwrap_or("leave").to_owned();
                self.members.insert(key.clone(), membership);
            }
            self.state.insert(
                (row.event_type.clone(), key.clone()),
                StateEntry { event_id: row.event_id.clone(), pos: row.pos, sender: row.sender.clone(), content },
            );
        }
        if self.head.as_ref().is_none_or(|(_, _, pos)| row.pos > *pos) {
            self.head = Some((row.event_id.clone(), row.depth, row.pos));
        }
    }

    /// A redaction of `event_id` landed: if it is current state, keep only what the
    /// redaction rules keep of its content (so auth rules read the redacted power levels).
    pub fn redacted(&mut self, event_id: &str) {
        for ((event_type, _), entry) in self.state.iter_mut() {
            if entry.event_id == event_id {
                entry.content = super::events::redacted_content(event_type, &entry.content);
            }
        }
    }

    /// The state event of a key.
    pub fn get(&self, event_type: &str, state_key: &str) -> Option<&StateEntry> {
        self.state.get(&(event_type.to_owned(), state_key.to_owned()))
    }

    /// A string field of a state event's content.
    fn field(&self, event_type: &str, field: &str) -> Option<&str> {
        self.get(event_type, "").and_then(|e| e.content.get(field)).and_then(Value::as_str)
    }

    /// A user's membership (`join`, `invite`, `leave`, `ban`, `knock`), if any.
    pub fn membership(&self, user: &str) -> Option<&str> {
        self.members.get(user).map(String::as_str)
    }

    /// Whether `user` is joined.
    pub fn is_joined(&self, user: &str) -> bool {
        self.membership(user) == Some("join")
    }

    /// The users of one membership.
    pub fn members_with(&self, membership: &str) -> Vec<OwnedUserId> {
        self.members
            .iter()
            .filter(|(_, m)| m.as_str() == membership)
            .filter_map(|(u, _)| UserId::parse(u).ok())
            .collect()
    }

    /// Everyone with a membership event, and it.
    pub fn all_members(&self) -> impl Iterator<Item = (&String, &String)> {
        self.members.iter()
    }

    /// `m.room.join_rules`' `join_rule` (`invite` when unset).
    pub fn join_rule(&self) -> &str {
        self.field("m.room.join_rules", "join_rule").unwrap_or("invite")
    }

    /// `m.room.history_visibility` (`shared` when unset).
    pub fn history_visibility(&self) -> &str {
        self.field("m.room.history_visibility", "history_visibility").unwrap_or("shared")
    }

    /// The power levels.
    pub fn levels(&self) -> Levels {
        let content = self
            .get("m.room.power_levels", "")
            .and_then(|e| serde_json::from_value::<RoomPowerLevelsEventContent>(e.content.clone()).ok());
        Levels { content, creator: self.creator.clone() }
    }

    /// The auth events of an event of `sender` (and of `target` for membership events):
    /// create, power levels, the sender's member event, and join rules and the
    /// target's member event for memberships.
    pub fn auth_events(&self, sender: &str, event_type: &str, state_key: Option<&str>) -> Vec<String> {
        let mut keys = vec![
            ("m.room.create", String::new()),
            ("m.room.power_levels", String::new()),
            ("m.room.member", sender.to_owned()),
        ];
        if event_type == "m.room.member" {
            keys.push(("m.room.join_rules", String::new()));
            if let Some(target) = state_key {
                keys.push(("m.room.member", target.to_owned()));
            }
        }
        let mut ids: Vec<String> =
            keys.iter().filter_map(|(t, k)| self.get(t, k)).map(|e| e.event_id.clone()).collect();
        ids.dedup();
        ids
    }

    /// The room's name, topic, canonical alias and avatar, for the directory.
    pub fn summary_field(&self, event_type: &str, field: &str) -> Option<String> {
        self.field(event_type, field).map(str::to_owned)
    }

    /// How many users are joined.
    pub fn joined_count(&self) -> usize {
        self.members.values().filter(|m| m.as_str() == "join").count()
    }
}
