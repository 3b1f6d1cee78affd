//! `createRoom`: the spec's sequence of initial events (create, the creator's join,
//! power levels with any override, the canonical alias, the preset's join rules,
//! history visibility and guest access, `initial_state`, name, topic, invites), all
//! checked by the auth rules and written in one unit with the room and its alias.

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{Value, json};

use super::events::{NewEvent, ROOM_VERSION};
use super::service::{Outgoing, RoomService};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Unit;
use crate::storage::rooms::RoomRow;

/// The presets of `createRoom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Invite only, history shared, guests may join.
    PrivateChat,
    /// Like private, and every invitee gets the creator's power level.
    TrustedPrivateChat,
    /// Anyone may join, history shared, no guests.
    PublicChat,
}

impl Preset {
    /// Parse the spec's name.
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "private_chat" => Ok(Self::PrivateChat),
            "trusted_private_chat" => Ok(Self::TrustedPrivateChat),
            "public_chat" => Ok(Self::PublicChat),
            other => Err(Error::invalid_param(format!("unknown preset '{other}'"))),
        }
    }
}

/// What a `createRoom` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// The preset (by default from `visibility`).
    pub preset: Option<Preset>,
    /// `visibility: "public"`: list it in the directory.
    pub public: bool,
    /// `name`.
    pub name: Option<String>,
    /// `topic`.
    pub topic: Option<String>,
    /// `room_alias_name`: the localpart of an alias to give it.
    pub alias_localpart: Option<String>,
    /// `invite`.
    pub invite: Vec<OwnedUserId>,
    /// `is_direct`.
    pub is_direct: bool,
    /// `initial_state`: (type, state_key, content).
    pub initial_state: Vec<(String, String, Value)>,
    /// `power_level_content_override`.
    pub power_level_override: Option<Value>,
    /// `creation_content`.
    pub creation_content: Option<Value>,
    /// `room_version`.
    pub room_version: Option<String>,
}

impl RoomService {
    /// Create a room as `creator` asks.
    pub async fn create_room(&self, creator: &UserId, req: CreateRoom) -> Result<OwnedRoomId> {
        if let Some(v) = &req.room_version
            && v != ROOM_VERSION
        {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("this server creates rooms of version {ROOM_VERSION} only"),
            ));
        }
        for invitee in &req.invite {
            if invitee.server_name().as_str() != &*self.server_name {
                return Err(Error::forbidden("rooms are single-site: only users of this server can be invited"));
            }
        }
        if req.invite.len() > self.config.max_members_per_room {
            return Err(Error::invalid_param("too many invitees"));
        }
        let alias = match &req.alias_localpart {
            Some(local) => Some(super::directory::alias_from_localpart(local, &self.server_name)?),
            None => None,
        };
        let preset = req.preset.unwrap_or(if req.public { Preset::PublicChat } else { Preset::PrivateChat });
        let room = self.new_room(creator);
        let events = initial_events(creator, &req, preset, alias.as_deref())?;
        let mut invites = Vec::new();
        for invitee in &req.invite {
            if invitee == creator {
                continue;
            }
            let mut content = json!({ "membership": "invite" });
            if req.is_direct {
                content["is_direct"] = json!(true);
            }
            invites.push(Outgoing::from(NewEvent::state("m.room.member", invitee.as_str(), content)));
        }
        let mut unit = Unit::new();
        let row = RoomRow {
            room_id: room.id.to_string(),
            room_version: ROOM_VERSION.to_owned(),
            creator: creator.to_string(),
            created_ts: self.clock.now_ms(),
            published: req.public,
        };
        let alias_row = alias.clone().map(|a| (a, room.id.to_string(), creator.to_string()));
        unit.write(move |s| {
            s.room_insert(&row)?;
            if let Some((alias, room_id, creator)) = &alias_row
                && !s.room_alias_insert(alias, room_id, creator)?
            {
                return Err(Error::new(ErrorKind::RoomInUse, format!("the alias {alias} is taken")));
            }
            Ok(())
        });
        let mut working = room.snapshot();
        working.published = req.public;
        let mut all = events;
        all.extend(invites);
        let staged = self.stage(&mut working, creator, all, &mut unit)?;
        super::service::write(&room.state).published = req.public;
        self.insert_room_after(&room, &mut unit);
        self.commit(&room, staged, unit).await?;
        Ok(room.id.clone())
    }

    /// Make a room known once the unit that creates it committed.
    fn insert_room_after(&self, room: &Arc<Room>, unit: &mut Unit) {
        let room = Arc::clone(room);
        let rooms = self.rooms_handle();
        unit.after(move |ok| {
            if ok {
                super::service::write(&rooms).insert(room.id.clone(), Arc::clone(&room));
            }
        });
    }
}

use super::service::Room;

/// The events of a new room, in the spec's order, before invites.
fn initial_events(creator: &UserId, req: &CreateRoom, preset: Preset, alias: Option<&str>) -> Result<Vec<Outgoing>> {
    let mut create = match &req.creation_content {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => return Err(Error::new(ErrorKind::BadJson, "creation_content must be an object")),
        None => json!({}),
    };
    create["creator"] = json!(creator);
    create["room_version"] = json!(ROOM_VERSION);
    let mut users = serde_json::Map::new();
    users.insert(creator.to_string(), json!(100));
    if preset == Preset::TrustedPrivateChat {
        for invitee in &req.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut power = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100,
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "notifications": { "room": 50 },
    });
    match &req.power_level_override {
        Some(Value::Object(over)) => {
            for (k, v) in over {
                power[k] = v.clone();
            }
        }
        Some(_) => return Err(Error::new(ErrorKind::BadJson, "power_level_content_override must be an object")),
        None => {}
    }
    let mut events = vec![
        NewEvent::state("m.room.create", "", create),
        NewEvent::state("m.room.member", creator.as_str(), json!({ "membership": "join" })),
        NewEvent::state("m.room.power_levels", "", power),
    ];
    if let Some(alias) = alias {
        events.push(NewEvent::state("m.room.canonical_alias", "", json!({ "alias": alias })));
    }
    let (join_rule, guests) = match preset {
        Preset::PublicChat => ("public", "forbidden"),
        Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
    };
    events.push(NewEvent::state("m.room.join_rules", "", json!({ "join_rule": join_rule })));
    events.push(NewEvent::state("m.room.history_visibility", "", json!({ "history_visibility": "shared" })));
    events.push(NewEvent::state("m.room.guest_access", "", json!({ "guest_access": guests })));
    for (event_type, key, content) in &req.initial_state {
        if event_type == "m.room.create" || event_type == "m.room.member" {
            return Err(Error::invalid_param(format!("initial_state may not set {event_type}")));
        }
        events.push(NewEvent::state(event_type.clone(), key.clone(), content.clone()));
    }
    if let Some(name) = &req.name {
        events.push(NewEvent::state("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = &req.topic {
        events.push(NewEvent::state("m.room.topic", "", json!({ "topic": topic })));
    }
    Ok(events.into_iter().map(Outgoing::from).collect())
}
