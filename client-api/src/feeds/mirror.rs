//! `GET /_tidings/mirror/{url-encoded feed URL}` (no auth): the cached feed as Atom
//! for feed readers on the site's LAN, with conditional GET, so they read it without
//! touching the line. Only feeds someone here subscribes to; it never fetches on
//! request, so it is no open proxy.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidings_core::{Core, Error};

use crate::error::ApiResult;

/// The mirror document, or 304 when the reader's copy is current.
pub async fn get_mirror(State(core): State<Core>, Path(url): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let Some(doc) = core.feeds.mirror(&url).await? else {
        return Err(Error::not_found("this server mirrors no such feed (only feeds its users subscribe to)").into());
    };
    let modified = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(doc.modified_ms));
    let header_str = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let fresh = match header_str(header::IF_NONE_MATCH) {
        Some(tags) => tags.split(',').any(|t| t.trim() == doc.etag || t.trim() == "*"),
        None => header_str(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_some_and(|since| since >= httpdate::parse_http_date(&modified).unwrap_or(std::time::UNIX_EPOCH)),
    };
    let validators = [(header::ETAG, doc.etag.clone()), (header::LAST_MODIFIED, modified)];
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, validators).into_response());
    }
    Ok((validators, [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8".to_owned())], doc.body)
        .into_response())
}
