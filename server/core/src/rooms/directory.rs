//! Room aliases (`#name:server`) and the public room directory. An alias resolves
//! for anyone (that is what aliases are for); the directory lists only rooms
//! published to it, and nothing about any other room.

use ruma::{OwnedRoomId, RoomAliasId, RoomId, UserId};

use super::service::{RoomService, read, room_not_found, write};
use crate::error::{Error, ErrorKind, Result};

/// One entry of `publicRooms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRoom {
    /// The room.
    pub room_id: OwnedRoomId,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// `m.room.canonical_alias`.
    pub canonical_alias: Option<String>,
    /// `m.room.avatar` url.
    pub avatar_url: Option<String>,
    /// Joined members.
    pub joined: u64,
    /// `join_rule`.
    pub join_rule: String,
    /// `history_visibility == world_readable`.
    pub world_readable: bool,
    /// `guest_access == can_join`.
    pub guest_can_join: bool,
}

/// A page of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPage {
    /// The rooms.
    pub rooms: Vec<PublicRoom>,
    /// Where the next page starts.
    pub next: Option<usize>,
    /// Where the previous page starts.
    pub prev: Option<usize>,
    /// How many rooms match in all.
    pub total: usize,
}

/// `#{localpart}:{server}`, checked.
pub fn alias_from_localpart(localpart: &str, server_name: &str) -> Result<String> {
    if localpart.is_empty() || localpart.contains(':') || localpart.contains('#') || localpart.len() > 200 {
        return Err(Error::invalid_param("room_alias_name must be a plain localpart"));
    }
    let alias = format!("#{localpart}:{server_name}");
    RoomAliasId::parse(&alias).map_err(|e| Error::invalid_param(format!("'{alias}' is not a valid alias: {e}")))?;
    Ok(alias)
}

impl RoomService {
    /// The room an alias names, for one who may know of the room (a member, an
    /// invitee, anyone for a public room); to others the alias does not exist.
    pub async fn resolve_alias(&self, user: &UserId, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        let key = alias.to_string();
        let found = self.db.read(move |s| s.room_alias(&key)).await?;
        let not_found = || Error::not_found("room alias not found");
        let Some((room_id, _)) = found else { return Err(not_found()) };
        let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
        self.known_room(user, &room_id).map_err(|_| not_found())?;
        Ok(room_id)
    }

    /// Give `room_id` the alias `alias` (a joined member, on this server's name).
    pub async fn put_alias(&self, user: &UserId, alias: &RoomAliasId, room_id: &RoomId) -> Result<()> {
        if alias.server_name().as_str() != &*self.server_name {
            return Err(Error::invalid_param("aliases of other servers cannot be set here"));
        }
        let room = self.joined_room(user, room_id)?;
        let (key, room_key, creator) = (alias.to_string(), room.id.to_string(), user.to_string());
        let max = self.config.max_aliases_per_room;
        self.db
            .write(move |s| {
                if s.room_alias(&key)?.is_some() {
                    return Err(Error::new(ErrorKind::RoomInUse, format!("the alias {key} is taken")));
                }
                if s.room_aliases_of(&room_key)? >= max {
                    return Err(Error::invalid_param(format!("a room has at most {max} aliases")));
                }
                s.room_alias_insert(&key, &room_key, &creator)?;
                Ok(())
            })
            .await
    }

    /// Remove an alias: its creator, or a member with the power to change the canonical alias.
    pub async fn delete_alias(&self, user: &UserId, alias: &RoomAliasId) -> Result<()> {
        let key = alias.to_string();
        let found = self.db.read(move |s| s.room_alias(&key)).await?;
        let Some((room_id, creator)) = found else { return Err(Error::not_found("room alias not found")) };
        if creator != user.as_str() {
            let room_id = RoomId::parse(&room_id).map_err(Error::internal)?;
            let room = self.joined_room(user, &room_id)?;
            let state = read(&room.state);
            let levels = state.levels();
            if levels.user(user.as_str()) < levels.event("m.room.canonical_alias", true) {
                return Err(Error::forbidden("only the alias's creator or a moderator may remove it"));
            }
        }
        let key = alias.to_string();
        self.db.write(move |s| s.room_alias_delete(&key)).await
    }

    /// Publish or unpublish a room in the directory (a member with the power to change its state).
    pub async fn set_published(&self, user: &UserId, room_id: &RoomId, published: bool) -> Result<()> {
        let room = self.joined_room(user, room_id)?;
        {
            let state = read(&room.state);
            let levels = state.levels();
            if levels.user(user.as_str()) < levels.event("m.room.canonical_alias", true) {
                return Err(Error::forbidden("publishing a room needs the power to change its state"));
            }
        }
        let key = room.id.to_string();
        self.db.write(move |s| s.room_set_published(&key, published)).await?;
        write(&room.state).published = published;
        Ok(())
    }

    /// Whether a room is listed: anyone learns it of a listed room; of another room
    /// only one who may know of it, others get 404 as for a room that does not exist.
    pub fn is_published(&self, user: &UserId, room_id: &RoomId) -> Result<bool> {
        let room = self.room(room_id).ok_or_else(room_not_found)?;
        if read(&room.state).published {
            return Ok(true);
        }
        self.known_room(user, room_id)?;
        Ok(false)
    }

    /// A page of the public directory: `since` is an offset, `filter` a term to match
    /// in name, topic or alias.
    pub fn public_rooms(&self, since: Option<usize>, limit: usize, filter: Option<&str>) -> DirectoryPage {
        let term = filter.map(str::to_lowercase).filter(|t| !t.is_empty());
        let mut rooms: Vec<PublicRoom> = self
            .all_rooms()
            .iter()
            .filter_map(|room| {
                let state = read(&room.state);
                if !state.published {
                    return None;
                }
                Some(PublicRoom {
                    room_id: room.id.clone(),
                    name: state.summary_field("m.room.name", "name"),
                    topic: state.summary_field("m.room.topic", "topic"),
                    canonical_alias: state.summary_field("m.room.canonical_alias", "alias"),
                    avatar_url: state.summary_field("m.room.avatar", "url"),
                    joined: state.joined_count() as u64,
                    join_rule: state.join_rule().to_owned(),
                    world_readable: state.history_visibility() == "world_readable",
                    guest_can_join: state.summary_field("m.room.guest_access", "guest_access").as_deref()
                        == Some("can_join"),
                })
            })
            .filter(|r| {
                term.as_ref().is_none_or(|t| {
                    [&r.name, &r.topic, &r.canonical_alias]
                        .iter()
                        .any(|f| f.as_ref().is_some_and(|f| f.to_lowercase().contains(t.as_str())))
                })
            })
            .collect();
        rooms.sort_by(|a, b| b.joined.cmp(&a.joined).then_with(|| a.room_id.cmp(&b.room_id)));
        let total = rooms.len();
        let start = since.unwrap_or(0).min(total);
        let end = (start + limit).min(total);
        let page: Vec<PublicRoom> = rooms.drain(start..end).collect();
        DirectoryPage {
            rooms: page,
            next: (end < total).then_some(end),
            prev: (start > 0).then(|| start.saturating_sub(limit)),
            total,
        }
    }
}
