//! `POST /_matrix/media/v3/upload?filename=` and `POST /_matrix/client/v1/media/upload`:
//! the body, streamed to disk while it arrives, stopped with 413 `M_TOO_LARGE` as
//! soon as it passes `max_upload_bytes` (or what is left of the user's quota), and
//! acknowledged only once the file and its row are durable.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap};

/// The longest file name or content type kept.
const MAX_NAME_BYTES: usize = 255;

/// Store the uploaded body; `{"content_uri": "mxc://..."}`.
pub async fn post_upload(
    State(core): State<Core>,
    Authed(device): Authed,
    QueryMap(query): QueryMap,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let max = core.media.max_upload_bytes();
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(
            Error::new(ErrorKind::TooLarge, format!("uploads are at most {max} bytes (max_upload_bytes)")).into()
        );
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_NAME_BYTES)
        .map(str::to_owned);
    let filename = query.get("filename").filter(|f| !f.is_empty() && f.len() <= MAX_NAME_BYTES).cloned();
    let mut upload = core.media.begin(&device.user_id).await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::new(ErrorKind::BadRequest, format!("the upload broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            upload.push(data).await?;
        }
    }
    let content_uri = core.media.finish(&device.user_id, upload, content_type, filename).await?;
    Ok(Json(json!({ "content_uri": content_uri })))
}
