//! `GET|PUT /_matrix/client/v3/presence/{userId}/status`.

use axum::Json;
use axum::extract::State;
use ruma::presence::PresenceState;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, AuthedQuiet, JsonBody, UserPath};
use tidings_core::presence::render::presence_content;

/// Longest status text accepted.
use tidings_core::presence::MAX_STATUS_MSG_BYTES as MAX_STATUS_MSG;

/// A user's presence, if the caller is that user or an accepted watcher; else 403.
pub async fn get_status(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
) -> ApiResult<Json<Value>> {
    let view = core.presence.view_as(&device.user_id, &user)?;
    Ok(Json(presence_content(&view)))
}

/// The body of a status change.
#[derive(Debug, Deserialize)]
pub struct StatusBody {
    presence: String,
    status_msg: Option<String>,
}

/// Parse a presence state name from a client.
pub fn parse_state(raw: &str) -> Result<PresenceState, Error> {
    match raw {
        "online" => Ok(PresenceState::Online),
        "unavailable" => Ok(PresenceState::Unavailable),
        "offline" => Ok(PresenceState::Offline),
        other => {
            Err(Error::invalid_param(format!("presence must be one of online, unavailable, offline (not '{other}')")))
        }
    }
}

/// Set the caller's own presence.
pub async fn put_status(
    State(core): State<Core>,
    AuthedQuiet(device): AuthedQuiet,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<StatusBody>,
) -> ApiResult<Json<Value>> {
    if user != device.user_id {
        return Err(Error::forbidden("you may only set your own presence").into());
    }
    core.limiter.check(Action::Presence, user.as_str(), &core.metrics)?;
    let state = parse_state(&body.presence)?;
    if body.status_msg.as_ref().is_some_and(|m| m.len() > MAX_STATUS_MSG) {
        return Err(Error::invalid_param(format!("status_msg is limited to {MAX_STATUS_MSG} bytes")).into());
    }
    core.presence.set_status(&user, &device.device_id, state, body.status_msg).await?;
    Ok(Json(json!({})))
}
