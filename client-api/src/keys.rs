//! `POST /_matrix/client/v3/keys/upload`, `POST .../keys/query`, `POST .../keys/claim`,
//! `GET .../keys/changes`, `POST .../keys/device_signing/upload` (user-interactive auth
//! with the password unless it sets the first master key or repeats the stored keys)
//! and `POST .../keys/signatures/upload`: end-to-end keys of this server's users.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::e2ee::{SignatureUploads, SigningKeysUpload, UploadKeys};
use tidings_core::sync::SyncToken;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, QueryMap};
use crate::uia::{AuthDict, authorize};

/// Store the caller's device keys, one-time keys and fallback keys; the counts of
/// its unclaimed one-time keys.
pub async fn post_upload(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<UploadKeys>,
) -> ApiResult<Json<Value>> {
    let counts = core.keys.upload(&device, body).await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

/// The body of a query.
#[derive(Debug, Deserialize)]
pub struct QueryBody {
    device_keys: BTreeMap<OwnedUserId, Vec<String>>,
}

/// The device keys and cross-signing keys of the named users.
pub async fn post_query(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<QueryBody>,
) -> ApiResult<Json<Value>> {
    let found = core.keys.query(&device.user_id, body.device_keys).await?;
    let mut answer = serde_json::to_value(found).map_err(Error::internal)?;
    answer["failures"] = json!({});
    Ok(Json(answer))
}

/// The body of `keys/device_signing/upload`.
#[derive(Debug, Deserialize)]
pub struct DeviceSigningBody {
    #[serde(flatten)]
    keys: SigningKeysUpload,
    auth: Option<AuthDict>,
}

/// Store the caller's cross-signing keys (after user-interactive auth when it replaces keys).
pub async fn post_device_signing_upload(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<DeviceSigningBody>,
) -> ApiResult<Response> {
    if core.keys.signing_upload_needs_auth(&device.user_id, &body.keys).await?
        && let Some(challenge) = authorize(&core, &device, body.auth).await?
    {
        return Ok(challenge);
    }
    core.keys.upload_signing_keys(&device.user_id, body.keys).await?;
    Ok(Json(json!({})).into_response())
}

/// Store signatures onto devices and master keys; what failed, per key.
pub async fn post_signatures_upload(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<SignatureUploads>,
) -> ApiResult<Json<Value>> {
    let failures = core.keys.upload_signatures(&device.user_id, body).await?;
    Ok(Json(json!({ "failures": failures })))
}

/// The body of a claim.
#[derive(Debug, Deserialize)]
pub struct ClaimBody {
    one_time_keys: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
}

/// One key per named device: a one-time key, else its fallback key.
pub async fn post_claim(
    State(core): State<Core>,
    Authed(_device): Authed,
    JsonBody(body): JsonBody<ClaimBody>,
) -> ApiResult<Json<Value>> {
    let claimed = core.keys.claim(body.one_time_keys).await?;
    Ok(Json(json!({ "one_time_keys": claimed, "failures": {} })))
}

/// The users sharing a room with the caller whose devices changed between two sync
/// tokens, and those who stopped sharing any room with the caller.
pub async fn get_changes(
    State(core): State<Core>,
    Authed(device): Authed,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let token = |name: &str| -> Result<u64, Error> {
        let raw =
            query.get(name).ok_or_else(|| Error::new(ErrorKind::MissingParam, format!("`{name}` is required")))?;
        Ok(SyncToken::parse(raw)?.0)
    };
    let (from, to) = (token("from")?, token("to")?);
    let changed = core.keys.changed(&device.user_id, from, to).await?;
    let left = core.keys.left(&device.user_id, from, to).await?;
    Ok(Json(json!({ "changed": changed, "left": left })))
}
