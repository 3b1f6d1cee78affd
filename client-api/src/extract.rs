//! Extractors that turn every malformed request into a Matrix error instead of the
//! framework's plain-text rejections.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use ruma::OwnedUserId;
use serde::de::DeserializeOwned;
use tidings_core::accounts::Device;
use tidings_core::ids::parse_user_id;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiError;

/// A JSON body, parsed whatever the Content-Type says (as the spec asks).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(ErrorKind::TooLarge, "request body too large")
            } else {
                Error::new(ErrorKind::BadRequest, format!("could not read the request body: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parse a request body: not JSON is `M_NOT_JSON`, the wrong shape is `M_BAD_JSON`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::new(ErrorKind::NotJson, format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::new(ErrorKind::BadJson, "the body must be a JSON object").into());
    }
    serde_json::from_value(value).map_err(|e| Error::new(ErrorKind::BadJson, format!("bad JSON body: {e}")).into())
}

/// Query parameters as a map: unknown ones are ignored by handlers.
#[derive(Debug)]
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad query string: {e}")))?;
        Ok(QueryMap(map))
    }
}

/// The single `{userId}` of a path, parsed.
#[derive(Debug)]
pub struct UserPath(pub OwnedUserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad path: {e}")))?;
        Ok(UserPath(parse_user_id(&raw)?))
    }
}

/// Several path segments, such as `(userId, type)`, each taken as it is; a path
/// that does not decode is `M_INVALID_PARAM` (never the framework's plain text).
#[derive(Debug)]
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad path: {e}")))?;
        Ok(Segments(value))
    }
}

/// One plain path segment, such as a device ID.
#[derive(Debug)]
pub struct SegmentPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SegmentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad path: {e}")))?;
        Ok(SegmentPath(raw))
    }
}

/// The access token of a request: `Authorization: Bearer` or `?access_token=`.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut words = value.splitn(2, ' ');
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("bearer")) {
            return words.next().map(|t| t.trim().to_owned());
        }
    }
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "access_token").then(|| v.to_owned())
        })
    })
}

/// The device making an authenticated request. Extracting it counts as activity of
/// that device (INTERFACE.md: any authenticated request other than /sync).
#[derive(Debug, Clone)]
pub struct Authed(pub Device);

impl<S: Send + Sync> FromRequestParts<S> for Authed
where
    Core: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AuthedQuiet(device) = AuthedQuiet::from_request_parts(parts, state).await?;
        Core::from_ref(state).presence.request(&device.user_id, &device.device_id);
        Ok(Authed(device))
    }
}

/// The device making an authenticated request, without counting it as activity: for
/// /sync (which keeps a device present but does not make it active) and for the
/// requests that set presence themselves (PUT status, device reports), whose handlers
/// apply activity and the new state in one step, so watchers never see a passing
/// "online".
#[derive(Debug, Clone)]
pub struct AuthedQuiet(pub Device);

impl<S: Send + Sync> FromRequestParts<S> for AuthedQuiet
where
    Core: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let core = Core::from_ref(state);
        let token = access_token(parts)
            .ok_or_else(|| Error::new(ErrorKind::MissingToken, "this endpoint needs an access token"))?;
        Ok(AuthedQuiet(core.accounts.authenticate(&token).await?))
    }
}

/// The client's address, for rate limits keyed by address.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(ClientAddr(addr))
    }
}
