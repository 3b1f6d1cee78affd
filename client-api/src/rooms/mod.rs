//! Room endpoints of the Matrix client-server API: thin handlers over
//! `tidings_core::rooms::RoomService`, one family of endpoints per file.

pub mod create;
pub mod directory;
pub mod ephemeral;
pub mod members;
pub mod membership;
pub mod messages;
pub mod relations;
pub mod send;
pub mod state;

use std::collections::HashMap;

use ruma::{OwnedEventId, OwnedRoomId, RoomId};
use tidings_core::Error;
use tidings_core::sync::SyncToken;

/// Parse a `{roomId}` of a path.
pub fn room_id(raw: &str) -> Result<OwnedRoomId, Error> {
    RoomId::parse(raw).map_err(|e| Error::invalid_param(format!("'{raw}' is not a room ID: {e}")))
}

/// Parse an `{eventId}` of a path.
pub fn event_id(raw: &str) -> Result<OwnedEventId, Error> {
    OwnedEventId::try_from(raw).map_err(|e| Error::invalid_param(format!("'{raw}' is not an event ID: {e}")))
}

/// A pagination token (`from`, `to`, `since`, `at`): the same `s<position>` as sync tokens.
pub fn token(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>, Error> {
    query.get(key).filter(|t| !t.is_empty()).map(|t| SyncToken::parse(t).map(|t| t.0)).transpose()
}

/// `limit`, with a default, at most `max`.
pub fn limit(query: &HashMap<String, String>, default: u32, max: u32) -> Result<u32, Error> {
    match query.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .map(|l| l.min(max))
            .map_err(|_| Error::invalid_param(format!("limit must be a whole number (at most {max})"))),
    }
}

/// `dir`: `b` (default `default_back`) or `f`.
pub fn backwards(query: &HashMap<String, String>, default_back: bool) -> Result<bool, Error> {
    match query.get("dir").map(String::as_str) {
        None => Ok(default_back),
        Some("b") => Ok(true),
        Some("f") => Ok(false),
        Some(other) => Err(Error::invalid_param(format!("dir must be 'b' or 'f', not '{other}'"))),
    }
}

/// A `reason` field of a body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ReasonBody {
    /// Why.
    pub reason: Option<String>,
}

/// A body naming a user and, optionally, why.
#[derive(Debug, serde::Deserialize)]
pub struct TargetBody {
    /// The user acted upon.
    pub user_id: String,
    /// Why.
    pub reason: Option<String>,
}
