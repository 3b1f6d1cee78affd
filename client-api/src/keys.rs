//! `POST /_matrix/client/v3/keys/upload`, `POST .../keys/query`, `POST .../keys/claim`
//! and `GET .../keys/changes`: end-to-end keys of this server's devices.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::e2ee::UploadKeys;
use tidings_core::sync::SyncToken;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, QueryMap};

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

/// The device keys of the named users' devices.
pub async fn post_query(
    State(core): State<Core>,
    Authed(_device): Authed,
    JsonBody(body): JsonBody<QueryBody>,
) -> ApiResult<Json<Value>> {
    let found = core.keys.query(body.device_keys).await?;
    Ok(Json(json!({
        "device_keys": found,
        "failures": {},
        "master_keys": {},
        "self_signing_keys": {},
        "user_signing_keys": {},
    })))
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

/// The users sharing a room with the caller whose devices changed between two sync tokens.
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
    Ok(Json(json!({ "changed": changed, "left": [] })))
}
