//! Downloads and thumbnails: `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`,
//! `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` (authenticated)
//! and the legacy `GET /_matrix/media/v3/download/...` and `.../thumbnail/...`
//! (no token: browser clients such as Hydrogen put them in `<img src>`).
//!
//! Served so a file cannot act as part of the server's origin: only the spec's
//! inline-safe types inline, a sandboxing Content-Security-Policy, `nosniff`.
//! Thumbnails take `width`, `height` (required) and `method` (`scale`, the default,
//! or `crop`); core makes each once and caches it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidings_core::media::{StoredMedia, Thumbnail, ThumbnailMethod, ThumbnailSpec, content_disposition};
use tidings_core::{Core, Error, ErrorKind};
use tokio_util::io::ReaderStream;

use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap, Segments};

/// The policy that keeps a served file from running script in our origin.
const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                   style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// What is served: a file, its type, size and name.
struct Served<'a> {
    path: &'a std::path::Path,
    content_type: &'a str,
    size: u64,
    name: Option<&'a str>,
}

async fn serve_media(media: StoredMedia, filename: Option<String>) -> ApiResult<Response> {
    let content_type = media.row.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let name = filename.or(media.row.filename.clone());
    serve(Served { path: &media.path, content_type: &content_type, size: media.row.size, name: name.as_deref() }).await
}

async fn serve(served: Served<'_>) -> ApiResult<Response> {
    let Served { path, content_type, size, name } = served;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::internal(format!("media file {} is missing: {e}", path.display())))?;
    let mut response = Response::new(Body::from_stream(ReaderStream::new(file)));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    let value =
        |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, value(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(content_type, name))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    Ok(response)
}

async fn download(core: &Core, server: &str, media_id: &str, filename: Option<String>) -> ApiResult<Response> {
    serve_media(core.media.get(server, media_id).await?, filename).await
}

/// `width`, `height` and `method` of a thumbnail request.
fn thumbnail_spec(query: &std::collections::HashMap<String, String>) -> Result<ThumbnailSpec, Error> {
    let side = |key: &str| -> Result<u64, Error> {
        let raw = query.get(key).ok_or_else(|| Error::new(ErrorKind::MissingParam, format!("{key} is required")))?;
        raw.parse::<u64>().map_err(|_| Error::invalid_param(format!("{key} must be a positive integer")))
    };
    let method = ThumbnailMethod::parse(query.get("method").map_or("scale", String::as_str))?;
    ThumbnailSpec::new(side("width")?, side("height")?, method)
}

async fn thumbnail(
    core: &Core,
    server: &str,
    media_id: &str,
    query: &std::collections::HashMap<String, String>,
) -> ApiResult<Response> {
    let spec = thumbnail_spec(query)?;
    let Thumbnail { path, content_type, size } = core.media.thumbnail(server, media_id, spec).await?;
    serve(Served { path: &path, content_type, size, name: None }).await
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
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    thumbnail(&core, &server, &media_id, &query).await
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
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    thumbnail(&core, &server, &media_id, &query).await.map(IntoResponse::into_response)
}
