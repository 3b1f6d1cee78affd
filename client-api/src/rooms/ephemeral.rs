//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`, `POST /rooms/{roomId}/read_markers`,
//! `PUT /rooms/{roomId}/typing/{userId}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::ids::parse_user_id;
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error};

use super::{event_id, room_id};
use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody};

/// The body of a receipt.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ReceiptBody {
    thread_id: Option<String>,
}

/// Send a receipt.
pub async fn post_receipt(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, receipt_type, raw_event)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomEphemeral, device.user_id.as_str(), &core.metrics)?;
    let (room, event) = (room_id(&raw_room)?, event_id(&raw_event)?);
    core.rooms.receipt(&device.user_id, &room, &receipt_type, event.as_str(), body.thread_id.as_deref()).await?;
    Ok(Json(json!({})))
}

/// The body of `read_markers`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct MarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

/// Set the fully-read marker and receipts at once.
pub async fn post_read_markers(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<MarkersBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomEphemeral, device.user_id.as_str(), &core.metrics)?;
    let room = room_id(&raw)?;
    for (kind, id) in [("m.fully_read", body.fully_read), ("m.read", body.read), ("m.read.private", body.read_private)]
    {
        if let Some(id) = id {
            let id = event_id(&id)?;
            core.rooms.receipt(&device.user_id, &room, kind, id.as_str(), None).await?;
        }
    }
    Ok(Json(json!({})))
}

/// The body of a typing notice.
#[derive(Debug, Deserialize)]
pub struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

/// Start or stop typing.
pub async fn put_typing(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_user)): Path<(String, String)>,
    JsonBody(body): JsonBody<TypingBody>,
) -> ApiResult<Json<Value>> {
    let user = parse_user_id(&raw_user)?;
    if user != device.user_id {
        return Err(Error::forbidden("you may only set your own typing notice").into());
    }
    core.limiter.check(Action::RoomEphemeral, device.user_id.as_str(), &core.metrics)?;
    let timeout = body.typing.then(|| body.timeout.unwrap_or(30_000));
    core.rooms.typing(&device.user_id, &room_id(&raw_room)?, timeout)?;
    Ok(Json(json!({})))
}
