//! `GET /_matrix/client/v1/media/config` and `GET /_matrix/media/v3/config`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::Core;

use crate::extract::Authed;

/// The largest upload accepted.
pub async fn get_config(State(core): State<Core>, Authed(_device): Authed) -> Json<Value> {
    Json(json!({ "m.upload.size": core.media.max_upload_bytes() }))
}
