//! `PUT /_tidings/client/v1/presence/poll`: explicitly start or stop watching my list.
//! A syncing client starts it implicitly; federation subscribes to peers only while
//! it is on.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::ratelimit::Action;

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody};

/// The body of a poll switch.
#[derive(Debug, Deserialize)]
pub struct PollBody {
    enabled: bool,
}

/// Start or stop watching.
pub async fn put_poll(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<PollBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::PresencePoll, device.user_id.as_str(), &core.metrics)?;
    core.presence.set_polling(&device.user_id, body.enabled);
    Ok(Json(json!({})))
}
