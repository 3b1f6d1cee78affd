//! `GET /_tidings/admin/v1/feeds`: every feed with its subscribers, source, polling
//! times and counters (`*_ts` in Unix ms or `null`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_client_api::error::ApiResult;
use tidings_core::feeds::FeedStatus;

use super::{Admin, AdminState};

/// Every feed known to the server.
pub async fn get_feeds(State(state): State<AdminState>, _admin: Admin) -> ApiResult<Json<Value>> {
    let feeds: Vec<Value> = state.core.feeds.status().await?.iter().map(render).collect();
    Ok(Json(json!({ "feeds": feeds })))
}

fn render(s: &FeedStatus) -> Value {
    let f = &s.feed;
    let mut v = json!({
        "feed_id": f.feed_id.to_string(),
        "url": f.url,
        "subscribers": s.subscribers,
        "remote_watchers": s.remote_watchers,
        "source": f.source,
        "last_fetched_ts": f.last_fetched_ts,
        "next_fetch_ts": s.next_fetch_ts,
        "fetches": f.fetches,
        "not_modified": f.not_modified,
        "errors": f.errors,
    });
    if let (Some(e), Some(map)) = (&f.last_error, v.as_object_mut()) {
        map.insert("last_error".into(), json!(e));
    }
    v
}
