//! `GET /_tidings/client/v1/feeds/{feedId}/items?since=TOKEN&limit=N` →
//! `{"items": [...], "next": TOKEN}`: oldest first; without `since`, the newest `limit`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::feeds::render;
use tidings_core::{Core, Error};

use super::parse_feed_id;
use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap, SegmentPath};

/// Items when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// The largest `limit`.
pub const MAX_LIMIT: u64 = 1000;

/// A page of a feed's items.
pub async fn get_items(
    State(core): State<Core>,
    Authed(device): Authed,
    SegmentPath(raw): SegmentPath,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let feed_id = parse_feed_id(&raw)?;
    let since = match query.get("since") {
        Some(t) => Some(t.parse::<u64>().map_err(|_| Error::invalid_param(format!("since '{t}' is not a token")))?),
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| Error::invalid_param(format!("limit must be between 1 and {MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let (items, next) = core.feeds.items(&device.user_id, feed_id, since, limit).await?;
    let items: Vec<Value> = items.iter().map(render::item).collect();
    Ok(Json(json!({ "items": items, "next": next.to_string() })))
}
