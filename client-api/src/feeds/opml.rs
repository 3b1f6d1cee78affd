//! `GET /_tidings/client/v1/feeds/opml`: the caller's subscriptions as OPML 2.0;
//! `POST` with an OPML body subscribes to each feed in it →
//! `{"subscribed": N, "failed": [{"url", "error"}]}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tidings_core::feeds::opml;
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::Authed;

/// Export.
pub async fn get_opml(State(core): State<Core>, Authed(device): Authed) -> ApiResult<impl IntoResponse> {
    let subs = core.feeds.list(&device.user_id).await?;
    Ok(([(header::CONTENT_TYPE, "text/x-opml; charset=utf-8")], opml::export(&subs)))
}

/// Import: every feed is tried; the ones refused are listed with why.
pub async fn post_opml(State(core): State<Core>, Authed(device): Authed, body: Bytes) -> ApiResult<Json<Value>> {
    let text = std::str::from_utf8(&body).map_err(|_| Error::invalid_param("the OPML document is not UTF-8"))?;
    let urls = opml::feed_urls(text).map_err(Error::invalid_param)?;
    let (mut subscribed, mut failed) = (0u64, Vec::new());
    for url in urls {
        match core.feeds.subscribe(&device.user_id, &url).await {
            Ok(_) => subscribed += 1,
            Err(e) => failed.push(json!({ "url": url, "error": e.message() })),
        }
    }
    Ok(Json(json!({ "subscribed": subscribed, "failed": failed })))
}
