//! `DELETE /_tidings/client/v1/feeds/{feedId}` → `{}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::Core;

use super::parse_feed_id;
use crate::error::ApiResult;
use crate::extract::{Authed, SegmentPath};

/// Unsubscribe the caller; 404 when they do not subscribe.
pub async fn delete_feed(
    State(core): State<Core>,
    Authed(device): Authed,
    SegmentPath(raw): SegmentPath,
) -> ApiResult<Json<Value>> {
    core.feeds.unsubscribe(&device.user_id, parse_feed_id(&raw)?).await?;
    Ok(Json(json!({})))
}
