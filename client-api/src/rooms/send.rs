//! `PUT /rooms/{roomId}/send/{eventType}/{txnId}` and
//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: idempotent per device and txnId.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::ratelimit::Action;

use super::{ReasonBody, event_id, room_id};
use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, parse_json};

/// The longest transaction ID accepted.
const MAX_TXN_ID: usize = 255;

fn check_txn(txn: &str) -> Result<(), tidings_core::Error> {
    if txn.is_empty() || txn.len() > MAX_TXN_ID {
        return Err(tidings_core::Error::invalid_param("transaction IDs are 1 to 255 bytes"));
    }
    Ok(())
}

/// Send a message-like event; answers `{"event_id"}` (the first one for a reused txnId).
pub async fn put_send(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, event_type, txn)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_txn(&txn)?;
    let content: Value = parse_json(&body)?;
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    let room = room_id(&raw_room)?;
    let id = core.rooms.send(&device.user_id, &device.device_id, &room, &event_type, &txn, content).await?;
    Ok(Json(json!({ "event_id": id })))
}

/// Redact an event; answers `{"event_id"}` of the redaction.
pub async fn put_redact(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event, txn)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult<Json<Value>> {
    check_txn(&txn)?;
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    let (room, target) = (room_id(&raw_room)?, event_id(&raw_event)?);
    let id = core.rooms.redact(&device.user_id, &device.device_id, &room, target.as_str(), &txn, body.reason).await?;
    Ok(Json(json!({ "event_id": id })))
}
