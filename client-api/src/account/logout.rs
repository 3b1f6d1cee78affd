//! `POST /_matrix/client/v3/logout` and `POST /_matrix/client/v3/logout/all`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::Core;

use crate::error::ApiResult;
use crate::extract::Authed;

/// Invalidate the caller's token and forget its device (its end-to-end keys and
/// waiting to-device messages go with it).
pub async fn post_logout(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    core.devices.delete(&device.user_id, vec![device.device_id.clone()]).await?;
    core.presence.forget_device(&device.user_id, &device.device_id);
    Ok(Json(json!({})))
}

/// Invalidate every token of the caller.
pub async fn post_logout_all(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    for id in core.devices.delete_all(&device.user_id).await? {
        core.presence.forget_device(&device.user_id, &id);
    }
    core.presence.forget_device(&device.user_id, &device.device_id);
    Ok(Json(json!({})))
}
