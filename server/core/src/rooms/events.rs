//! Building events: a new event's canonical JSON, its ID (the reference hash, as in
//! room versions 4 and later: `$` + unpadded URL-safe base64 of the SHA-256 of the
//! redacted canonical JSON), its size check, and how a stored event is shown to
//! clients (PDU-only fields dropped, redactions applied, `unsigned` filled).

use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue, RedactedBecause, redact};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::rooms::EventRow;

/// The one room version Tidings creates and speaks.
pub const ROOM_VERSION: &str = "10";
/// Its rules.
pub const RULES: RoomVersionRules = RoomVersionRules::V10;
/// The largest event, in bytes of canonical JSON (the spec's limit).
pub const MAX_EVENT_BYTES: usize = 65_536;

/// What a caller asks to add to a room, before it is built.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `type`.
    pub event_type: String,
    /// `state_key`, for a state event.
    pub state_key: Option<String>,
    /// `content`, as the client sent it.
    pub content: Value,
    /// The event a redaction redacts.
    pub redacts: Option<OwnedEventId>,
}

impl NewEvent {
    /// A message-like event.
    pub fn message(event_type: impl Into<String>, content: Value) -> Self {
        Self { event_type: event_type.into(), state_key: None, content, redacts: None }
    }

    /// A state event.
    pub fn state(event_type: impl Into<String>, state_key: impl Into<String>, content: Value) -> Self {
        Self { event_type: event_type.into(), state_key: Some(state_key.into()), content, redacts: None }
    }

    /// The `membership` of an `m.room.member` event.
    pub fn membership(&self) -> Option<&str> {
        self.content.get("membership").and_then(Value::as_str)
    }
}

/// Where an event goes in its room: what the room looked like when it was built.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The room.
    pub room_id: &'a RoomId,
    /// The sender.
    pub sender: &'a UserId,
    /// Its depth (one more than the newest event of the room).
    pub depth: u64,
    /// The newest event of the room, if any.
    pub prev_event: Option<&'a str>,
    /// The state events that authorise it.
    pub auth_events: Vec<String>,
    /// `origin_server_ts`.
    pub ts: u64,
}

/// A built event: its ID and its canonical JSON (without `event_id`).
#[derive(Debug, Clone)]
pub struct BuiltEvent {
    /// `$` + the reference hash.
    pub event_id: OwnedEventId,
    /// The canonical JSON text that is stored.
    pub json: String,
}

fn canonical(value: Value, what: &str) -> Result<CanonicalJsonValue> {
    CanonicalJsonValue::try_from(value)
        .map_err(|e| Error::new(ErrorKind::BadJson, format!("{what} is not canonical JSON: {e}")))
}

/// Build `new` at `place`: canonical JSON, size check (413 `M_TOO_LARGE` past
/// [`MAX_EVENT_BYTES`]) and the event ID.
pub fn build(new: &NewEvent, place: &Placement<'_>) -> Result<BuiltEvent> {
    if !new.content.is_object() {
        return Err(Error::new(ErrorKind::BadJson, "event content must be a JSON object"));
    }
    let mut object = CanonicalJsonObject::new();
    object.insert("room_id".into(), CanonicalJsonValue::String(place.room_id.to_string()));
    object.insert("sender".into(), CanonicalJsonValue::String(place.sender.to_string()));
    object.insert("type".into(), CanonicalJsonValue::String(new.event_type.clone()));
    if let Some(key) = &new.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(key.clone()));
    }
    if let Some(redacts) = &new.redacts {
        object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
    }
    object.insert("content".into(), canonical(new.content.clone(), "the content")?);
    object.insert("origin_server_ts".into(), canonical(json!(place.ts), "origin_server_ts")?);
    object.insert("depth".into(), canonical(json!(place.depth), "depth")?);
    object.insert("prev_events".into(), canonical(json!(place.prev_event.into_iter().collect::<Vec<_>>()), "prev")?);
    object.insert("auth_events".into(), canonical(json!(place.auth_events), "auth")?);
    let too_large = |len: usize| {
        Error::new(ErrorKind::TooLarge, format!("the event is {len} bytes; events are limited to {MAX_EVENT_BYTES}"))
    };
    let unhashed = serde_json::to_string(&object).map_err(Error::internal)?.len();
    if unhashed > MAX_EVENT_BYTES {
        return Err(too_large(unhashed));
    }
    // The content hash keeps events that differ only in what redaction strips
    // (a message's body) apart: the reference hash covers it, not the content.
    ruma::signatures::add_content_hash_to_event(&mut object).map_err(|_| too_large(unhashed))?;
    let text = serde_json::to_string(&object).map_err(Error::internal)?;
    if text.len() > MAX_EVENT_BYTES {
        return Err(too_large(text.len()));
    }
    let hash = ruma::signatures::reference_hash(&object, &RULES)
        .map_err(|e| Error::new(ErrorKind::TooLarge, format!("the event cannot be hashed: {e}")))?;
    let event_id = OwnedEventId::try_from(format!("${hash}")).map_err(Error::internal)?;
    Ok(BuiltEvent { event_id, json: text })
}

/// `m.relates_to` of a content: (rel_type, event_id).
pub fn relation(content: &Value) -> Option<(String, String)> {
    let rel = content.get("m.relates_to")?;
    let event_id = rel.get("event_id")?.as_str()?;
    // A plain reply (`m.in_reply_to`, no rel_type) is not a relation the server aggregates.
    let rel_type = rel.get("rel_type")?.as_str()?;
    Some((rel_type.to_owned(), event_id.to_owned()))
}

/// Fields of the stored event that clients do not see.
const PDU_ONLY: &[&str] = &["depth", "prev_events", "auth_events", "hashes", "signatures"];

/// The event as a client sees it (`ClientEvent`), with `unsigned` from `extra`.
/// A redacted event is shown with its content stripped by the room version's rules.
pub fn client_event(row: &EventRow, viewer: Option<&UserId>, now: u64) -> Value {
    let (mut value, ts) = base_event(row);
    personalise(&mut value, row, viewer, now, ts);
    value
}

/// The part of [`client_event`] that is the same for every viewer, and the event's
/// `origin_server_ts`: what the rooms service renders once per event and copies.
pub fn base_event(row: &EventRow) -> (Value, u64) {
    let Ok(mut object) = serde_json::from_str::<CanonicalJsonObject>(&row.json) else {
        return (json!({ "event_id": row.event_id, "type": row.event_type, "sender": row.sender, "content": {} }), 0);
    };
    let ts = object
        .get("origin_server_ts")
        .and_then(CanonicalJsonValue::as_integer)
        .and_then(|t| u64::try_from(i64::from(t)).ok())
        .unwrap_or(0);
    if let Some(redaction_id) = &row.redacted_by {
        let because = RedactedBecause::from_json(CanonicalJsonObject::from_iter([(
            "event_id".to_owned(),
            CanonicalJsonValue::String(redaction_id.clone()),
        )]));
        if let Ok(redacted) = redact(object.clone(), &RULES.redaction, Some(because)) {
            object = redacted;
        }
    }
    let mut value = serde_json::to_value(object).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        for field in PDU_ONLY {
            map.remove(*field);
        }
        map.insert("event_id".into(), json!(row.event_id));
    }
    (value, ts)
}

/// What [`client_event`] adds for one viewer at `now`: `unsigned.age`, and
/// `unsigned.transaction_id` for the sender's own events.
pub fn personalise(value: &mut Value, row: &EventRow, viewer: Option<&UserId>, now: u64, ts: u64) {
    let Some(map) = value.as_object_mut() else { return };
    let unsigned = map.entry("unsigned").or_insert_with(|| Value::Object(Map::new()));
    if let Some(unsigned) = unsigned.as_object_mut() {
        unsigned.insert("age".into(), json!(now.saturating_sub(ts)));
        if let (Some(viewer), Some(txn)) = (viewer, &row.txn_id)
            && viewer.as_str() == row.sender
        {
            unsigned.insert("transaction_id".into(), json!(txn));
        }
    }
}

/// The content of a stored event (after redaction: empty but for what the rules keep).
pub fn content(row: &EventRow) -> Value {
    let v: Value = serde_json::from_str(&row.json).unwrap_or_else(|_| json!({}));
    if row.redacted_by.is_some() {
        return client_event(row, None, 0)["content"].clone();
    }
    v.get("content").cloned().unwrap_or_else(|| json!({}))
}

/// The content an event of `event_type` keeps once redacted (room version 10's rules).
pub fn redacted_content(event_type: &str, content: &Value) -> Value {
    let object = json!({ "type": event_type, "content": content });
    let Ok(object) = serde_json::from_value::<CanonicalJsonObject>(object) else { return json!({}) };
    redact(object, &RULES.redaction, None)
        .ok()
        .and_then(|o| serde_json::to_value(o).ok())
        .map_or_else(|| json!({}), |v| v["content"].clone())
}

/// The stripped form of a state event, as invites carry it.
pub fn stripped(row: &EventRow) -> Value {
    json!({
        "type": row.event_type,
        "state_key": row.state_key,
        "sender": row.sender,
        "content": content(row),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place<'a>(room: &'a RoomId, sender: &'a UserId) -> Placement<'a> {
        Placement { room_id: room, sender, depth: 2, prev_event: Some("$prev"), auth_events: vec![], ts: 1_000 }
    }

    #[test]
    fn ids_are_content_hashes() {
        let room = RoomId::parse("!r:hs.test").expect("room");
        let alice = UserId::parse("@alice:hs.test").expect("user");
        let a = build(&NewEvent::message("m.room.message", json!({"body": "hi"})), &place(&room, &alice)).expect("a");
        let again =
            build(&NewEvent::message("m.room.message", json!({"body": "hi"})), &place(&room, &alice)).expect("again");
        let b = build(&NewEvent::message("m.room.message", json!({"body": "ho"})), &place(&room, &alice)).expect("b");
        assert_eq!(a.event_id, again.event_id, "the same event hashes the same");
        assert_ne!(a.event_id, b.event_id);
        // `$` + 43 characters of unpadded URL-safe base64 of 32 bytes.
        assert_eq!(a.event_id.as_str().len(), 44);
        assert!(a.event_id.as_str()[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn the_timestamp_is_part_of_the_id() {
        // The reference hash is over the redacted event, so a message's body reaches
        // it only through the content hash; the timestamp reaches it directly.
        let room = RoomId::parse("!r:hs.test").expect("room");
        let alice = UserId::parse("@alice:hs.test").expect("user");
        let mut p = place(&room, &alice);
        let a = build(&NewEvent::message("m.room.message", json!({"body": "x"})), &p).expect("a");
        p.ts += 1;
        let b = build(&NewEvent::message("m.room.message", json!({"body": "x"})), &p).expect("b");
        assert_ne!(a.event_id, b.event_id, "the timestamp is part of the hash");
    }

    #[test]
    fn redaction_keeps_what_the_rules_keep() {
        let levels = json!({"users": {"@a:x": 100}, "ban": 50, "custom": "gone"});
        assert_eq!(redacted_content("m.room.power_levels", &levels), json!({"users": {"@a:x": 100}, "ban": 50}));
        assert_eq!(redacted_content("m.room.message", &json!({"body": "x"})), json!({}));
        assert_eq!(
            redacted_content("m.room.member", &json!({"membership": "join", "displayname": "A"})),
            json!({"membership": "join"})
        );
    }

    #[test]
    fn too_large_and_non_canonical_are_refused() {
        let room = RoomId::parse("!r:hs.test").expect("room");
        let alice = UserId::parse("@alice:hs.test").expect("user");
        let big = NewEvent::message("m.room.message", json!({"body": "x".repeat(MAX_EVENT_BYTES)}));
        assert_eq!(build(&big, &place(&room, &alice)).unwrap_err().kind(), ErrorKind::TooLarge);
        let float = NewEvent::message("m.room.message", json!({"n": 1.5}));
        assert_eq!(build(&float, &place(&room, &alice)).unwrap_err().kind(), ErrorKind::BadJson);
    }
}
