//! Downloads and thumbnails: `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`,
//! `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` (authenticated)
//! and the legacy `GET /_matrix/media/v3/download/...` and `.../thumbnail/...`
//! (no token: browser clients such as Hydrogen put them in `<img src>`).
//!
//! Served so a file cannot act as part of the server's origin: only the spec's
//! inline-safe types inline, a sandboxing Content-Security-Policy, `nosniff`.
//! Thumbnails are not scaled: an image's thumbnail is the image itself (spec/client-api.md).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidings_core::media::{StoredMedia, content_disposition};
use tidings_core::{Core, Error};
use tokio_util::io::ReaderStream;

use crate::error::ApiResult;
use crate::extract::{Authed, Segments};

/// The policy that keeps a served file from running script in our origin.
const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                   style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

async fn serve(media: StoredMedia, filename: Option<String>) -> ApiResult<Response> {
    let file = tokio::fs::File::open(&media.path)
        .await
        .map_err(|e| Error::internal(format!("media file {} is missing: {e}", media.path.display())))?;
    let content_type = media.row.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let name = filename.or(media.row.filename.clone());
    let mut response = Response::new(Body::from_stream(ReaderStream::new(file)));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    let value =
        |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, value(&content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(media.row.size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(&content_type, name.as_deref()))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    Ok(response)
}

async fn download(core: &Core, server: &str, media_id: &str, filename: Option<String>) -> ApiResult<Response> {
    serve(core.media.get(server, media_id).await?, filename).await
}

async fn thumbnail(core: &Core, server: &str, media_id: &str) -> ApiResult<Response> {
    let media = core.media.get(server, media_id).await?;
    if !media.row.content_type.as_deref().is_some_and(|t| t.starts_with("image/")) {
        return Err(Error::not_found("no thumbnail: the media is not an image").into());
    }
    serve(media, None).await
}

/// Authenticated download.
pub async fn get_download(
    State(core): State<Core>,
    Authed(_device): Authed,
    Segments((server, media_id)): Segments<(String, String)>,
) -> ApiResult<Response> {
    download(&core, &server, &media_id, None).await
}

/// Authenticated download under a file name.
pub async fn get_download_named(
    State(core): State<Core>,
    Authed(_device): Authed,
    Segments((server, media_id, filename)): Segments<(String, String, String)>,
) -> ApiResult<Response> {
    download(&core, &server, &media_id, Some(filename)).await
}

/// Authenticated thumbnail.
pub async fn get_thumbnail(
    State(core): State<Core>,
    Authed(_device): Authed,
    Segments((server, media_id)): Segments<(String, String)>,
) -> ApiResult<Response> {
    thumbnail(&core, &server, &media_id).await
}

/// Legacy download (no token).
pub async fn get_legacy_download(
    State(core): State<Core>,
    Segments((server, media_id)): Segments<(String, String)>,
) -> ApiResult<Response> {
    download(&core, &server, &media_id, None).await
}

/// Legacy download under a file name (no token).
pub async fn get_legacy_download_named(
    State(core): State<Core>,
    Segments((server, media_id, filename)): Segments<(String, String, String)>,
) -> ApiResult<Response> {
    download(&core, &server, &media_id, Some(filename)).await
}

/// Legacy thumbnail (no token).
pub async fn get_legacy_thumbnail(
    State(core): State<Core>,
    Segments((server, media_id)): Segments<(String, String)>,
) -> ApiResult<Response> {
    thumbnail(&core, &server, &media_id).await.map(IntoResponse::into_response)
}
