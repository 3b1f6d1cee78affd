//! `GET /_tidings/client/v1/feeds` → `{"feeds": [...]}`: the caller's subscriptions.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::feeds::render;

use crate::error::ApiResult;
use crate::extract::Authed;

/// The caller's subscriptions, each with its fetch state.
pub async fn get_feeds(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    let feeds: Vec<Value> = core.feeds.list(&device.user_id).await?.iter().map(render::subscription).collect();
    Ok(Json(json!({ "feeds": feeds })))
}
