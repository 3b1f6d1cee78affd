//! The federation and key endpoints: `GET /_matrix/key/v2/server`,
//! `GET /_matrix/federation/v1/version`, `PUT /_matrix/federation/v1/send/{txnId}`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use tidings_core::{Error, ErrorKind};

use crate::Federation;
use crate::peer::{PeerStats, http_size};
use crate::receiver::Transaction;

/// How long our published key is valid.
const KEY_VALIDITY_MS: u64 = 24 * 3600 * 1000;

/// A core error as a Matrix error response (the body is written by core).
#[derive(Debug)]
pub struct FederationError(pub Error);

impl IntoResponse for FederationError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_matrix_body())).into_response()
    }
}

impl From<Error> for FederationError {
    fn from(e: Error) -> Self {
        FederationError(e)
    }
}

/// The routes, state applied.
pub fn router(federation: Arc<Federation>) -> Router {
    Router::new()
        .route("/_matrix/key/v2/server", get(get_keys))
        .route("/_matrix/federation/v1/version", get(get_version))
        .route("/_matrix/federation/v1/send/{txn_id}", put(put_send))
        .with_state(federation)
}

/// The `{txnId}` of a send path; a segment that does not decode (`%ff`) is a
/// Matrix error like any other, not axum's plain-text rejection.
#[derive(Debug)]
struct TxnId(String);

impl<S: Send + Sync> FromRequestParts<S> for TxnId {
    type Rejection = FederationError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("bad transaction ID in the path: {e}")))?;
        if raw.is_empty() {
            return Err(Error::invalid_param("the transaction ID is empty").into());
        }
        Ok(TxnId(raw))
    }
}

async fn get_keys(State(f): State<Arc<Federation>>) -> Json<Value> {
    // The key is signed fresh for each answer, valid for a day from now.
    let extra: Vec<(&str, String)> =
        f.link_key.iter().map(|k| (crate::link::key::LINK_KEY_FIELD, k.public_base64())).collect();
    Json(f.key.server_keys_response_with(&f.core.server_name, f.core.clock.now_ms(), KEY_VALIDITY_MS, &extra))
}

async fn get_version() -> Json<Value> {
    Json(json!({ "server": { "name": "Tidings", "version": env!("CARGO_PKG_VERSION") } }))
}

async fn put_send(
    State(f): State<Arc<Federation>>,
    TxnId(txn_id): TxnId,
    request: Request,
) -> Result<Json<Value>, FederationError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, f.max_body)
        .await
        .map_err(|_| Error::new(ErrorKind::TooLarge, "transaction too large"))?;
    let content: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(ErrorKind::NotJson, format!("the body is not valid JSON: {e}")))?;
    let uri = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let peer = f.receiver.authenticate(auth, parts.method.as_str(), &uri, Some(&content)).await?;
    let now = f.core.clock.now_ms();
    f.core.exchange.heard(peer.name());
    peer.heard.notify_waiters();
    peer.stats.last_received_ts.store(now, std::sync::atomic::Ordering::Relaxed);
    PeerStats::add(
        &peer.stats.bytes_received,
        http_size(
            &format!("{} {uri} HTTP/1.1", parts.method),
            parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            bytes.len(),
        ),
    );
    let txn: Transaction =
        serde_json::from_value(content).map_err(|e| Error::new(ErrorKind::BadJson, format!("bad transaction: {e}")))?;
    f.receiver.receive(&peer, &txn_id, txn).await?;
    let answer = json!({ "pdus": {} });
    PeerStats::add(&peer.stats.bytes_sent, crate::http::answer_size());
    Ok(Json(answer))
}
