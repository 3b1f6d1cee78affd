//! `GET /rooms/{roomId}/state`, `GET|PUT /rooms/{roomId}/state/{eventType}[/{stateKey}]`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::ratelimit::Action;

use super::room_id;
use crate::error::ApiResult;
use crate::extract::{Authed, parse_json};

/// All current state (or the state when the caller left).
pub async fn get_state(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(core.rooms.state_events(&device.user_id, &room_id(&raw)?).await?)))
}

/// One state event's content, empty state key.
pub async fn get_state_event_empty(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw, event_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(core.rooms.state_event(&device.user_id, &room_id(&raw)?, &event_type, "").await?))
}

/// One state event's content.
pub async fn get_state_event(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw, event_type, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(core.rooms.state_event(&device.user_id, &room_id(&raw)?, &event_type, &key).await?))
}

/// Set a state event, empty state key.
pub async fn put_state_event_empty(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw, event_type)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    put(core, device, raw, event_type, String::new(), body).await
}

/// Set a state event.
pub async fn put_state_event(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw, event_type, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    put(core, device, raw, event_type, key, body).await
}

async fn put(
    core: Core,
    device: tidings_core::accounts::Device,
    raw: String,
    event_type: String,
    key: String,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let content: Value = parse_json(&body)?;
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    let id = core.rooms.set_state(&device.user_id, &room_id(&raw)?, &event_type, &key, content).await?;
    Ok(Json(json!({ "event_id": id })))
}
