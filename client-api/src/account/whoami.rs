//! `GET /_matrix/client/v3/account/whoami`.

use axum::Json;
use serde_json::{Value, json};

use crate::extract::Authed;

/// Who the access token belongs to.
pub async fn get_whoami(Authed(device): Authed) -> Json<Value> {
    Json(json!({ "user_id": device.user_id, "device_id": device.device_id, "is_guest": false }))
}
