//! `POST /_matrix/client/v3/createRoom`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::ids::parse_user_id;
use tidings_core::ratelimit::Action;
use tidings_core::rooms::{CreateRoom, Preset};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody};

/// One `initial_state` entry.
#[derive(Debug, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    state_key: String,
    content: Value,
}

/// The body of `createRoom`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct CreateRoomBody {
    visibility: Option<String>,
    preset: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    room_alias_name: Option<String>,
    invite: Vec<String>,
    is_direct: bool,
    initial_state: Vec<InitialState>,
    power_level_content_override: Option<Value>,
    creation_content: Option<Value>,
    room_version: Option<String>,
}

/// Create a room; answers `{"room_id"}`.
pub async fn post_create_room(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<CreateRoomBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomCreate, device.user_id.as_str(), &core.metrics)?;
    let public = match body.visibility.as_deref() {
        None | Some("private") => false,
        Some("public") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!("visibility must be public or private, not '{other}'")).into());
        }
    };
    let invite = body.invite.iter().map(|u| parse_user_id(u)).collect::<Result<Vec<_>, _>>()?;
    let request = CreateRoom {
        preset: body.preset.as_deref().map(Preset::parse).transpose()?,
        public,
        name: body.name,
        topic: body.topic,
        alias_localpart: body.room_alias_name,
        invite,
        is_direct: body.is_direct,
        initial_state: body.initial_state.into_iter().map(|s| (s.event_type, s.state_key, s.content)).collect(),
        power_level_override: body.power_level_content_override,
        creation_content: body.creation_content,
        room_version: body.room_version,
    };
    let room_id = core.rooms.create_room(&device.user_id, request).await?;
    Ok(Json(json!({ "room_id": room_id })))
}
