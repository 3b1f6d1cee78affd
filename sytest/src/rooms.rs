//! Helpers for room tests: paths and the calls every room test makes, each
//! asserting the answer it needs so a test reads as the scenario it is.

use serde_json::{Value, json};

use crate::client::{Session, encode_component};

/// `/_matrix/client/v3/rooms/{roomId}` + `tail`.
pub fn room_path(room_id: &str, tail: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}{tail}", encode_component(room_id))
}

/// `createRoom` with `body`; returns the room ID.
pub async fn create_room(session: &Session, body: Value) -> String {
    let (status, answer) = session.post("/_matrix/client/v3/createRoom", body).await;
    assert_eq!(status, 200, "createRoom by {}: {answer}", session.user_id);
    answer["room_id"].as_str().unwrap_or_else(|| panic!("no room_id: {answer}")).to_owned()
}

/// Join `room_id_or_alias`; asserts 200.
pub async fn join(session: &Session, room_id_or_alias: &str) {
    let path = format!("/_matrix/client/v3/join/{}", encode_component(room_id_or_alias));
    let (status, answer) = session.post(&path, json!({})).await;
    assert_eq!(status, 200, "join {room_id_or_alias} by {}: {answer}", session.user_id);
}

/// Invite `user_id`; asserts 200.
pub async fn invite(session: &Session, room_id: &str, user_id: &str) {
    let (status, answer) = session.post(&room_path(room_id, "/invite"), json!({ "user_id": user_id })).await;
    assert_eq!(status, 200, "invite {user_id} by {}: {answer}", session.user_id);
}

/// `PUT .../send/m.room.message/{txn}` of a text; returns the answer.
pub async fn try_send_text(session: &Session, room_id: &str, txn: &str, body: &str) -> (u16, Value) {
    let path = room_path(room_id, &format!("/send/m.room.message/{}", encode_component(txn)));
    session.put(&path, json!({ "msgtype": "m.text", "body": body })).await
}

/// Send a text; returns its event ID.
pub async fn send_text(session: &Session, room_id: &str, txn: &str, body: &str) -> String {
    let (status, answer) = try_send_text(session, room_id, txn, body).await;
    assert_eq!(status, 200, "send by {}: {answer}", session.user_id);
    answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {answer}")).to_owned()
}

/// Send an event of any type and content; returns its event ID.
pub async fn send_event(session: &Session, room_id: &str, event_type: &str, txn: &str, content: Value) -> String {
    let path = room_path(room_id, &format!("/send/{}/{}", encode_component(event_type), encode_component(txn)));
    let (status, answer) = session.put(&path, content).await;
    assert_eq!(status, 200, "send {event_type} by {}: {answer}", session.user_id);
    answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {answer}")).to_owned()
}

/// The bodies of the `m.room.message` events of a list of events, in order.
pub fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The timeline events of `room_id` in a sync answer (empty if the room is absent).
pub fn timeline<'a>(sync: &'a Value, room_id: &str) -> &'a Value {
    &sync["rooms"]["join"][room_id]["timeline"]["events"]
}
