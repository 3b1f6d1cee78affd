//! `POST /_tidings/client/v1/feeds` `{"url"}` → `{"feed_id"}`: subscribe (twice is harmless).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::Core;

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody};

/// The body of a subscription.
#[derive(Debug, Deserialize)]
pub struct SubscribeBody {
    url: String,
}

/// Subscribe the caller to the feed at `url`.
pub async fn post_feed(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<SubscribeBody>,
) -> ApiResult<Json<Value>> {
    let feed_id = core.feeds.subscribe(&device.user_id, &body.url).await?;
    Ok(Json(json!({ "feed_id": feed_id.to_string() })))
}
