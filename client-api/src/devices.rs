//! `GET /_matrix/client/v3/devices`, `GET|PUT|DELETE /_matrix/client/v3/devices/{deviceId}`
//! and `POST /_matrix/client/v3/delete_devices`. Deleting needs user-interactive
//! auth with `m.login.password`: the first request gets 401 with the flows and a
//! session, the next one carries the caller's password. The session is only an
//! echo (the password is what is checked), so a stranger cannot make the server
//! hold one.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::accounts::Device;
use tidings_core::devices::DeviceInfo;
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, SegmentPath};
use crate::uia::{AuthDict, authorize};

fn device_json(d: &DeviceInfo) -> Value {
    let mut v = json!({ "device_id": d.device_id });
    if let Some(name) = &d.display_name {
        v["display_name"] = json!(name);
    }
    v
}

/// The caller's devices.
pub async fn get_devices(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    let devices = core.devices.list(&device.user_id).await?;
    Ok(Json(json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() })))
}

/// One of the caller's devices.
pub async fn get_device(
    State(core): State<Core>,
    Authed(device): Authed,
    SegmentPath(device_id): SegmentPath,
) -> ApiResult<Json<Value>> {
    Ok(Json(device_json(&core.devices.get(&device.user_id, &device_id).await?)))
}

/// The body of a rename.
#[derive(Debug, Deserialize)]
pub struct RenameBody {
    display_name: Option<String>,
}

/// Rename one of the caller's devices.
pub async fn put_device(
    State(core): State<Core>,
    Authed(device): Authed,
    SegmentPath(device_id): SegmentPath,
    JsonBody(body): JsonBody<RenameBody>,
) -> ApiResult<Json<Value>> {
    core.devices.rename(&device.user_id, &device_id, body.display_name).await?;
    Ok(Json(json!({})))
}

/// The body of a device deletion.
#[derive(Debug, Deserialize)]
pub struct DeleteBody {
    auth: Option<AuthDict>,
}

/// The body of `delete_devices`.
#[derive(Debug, Deserialize)]
pub struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<AuthDict>,
}

async fn delete_all_of(core: &Core, device: &Device, ids: Vec<String>) -> Result<(), Error> {
    for id in core.devices.delete(&device.user_id, ids).await? {
        core.presence.forget_device(&device.user_id, &id);
    }
    Ok(())
}

/// Delete one of the caller's devices (after user-interactive auth).
pub async fn delete_device(
    State(core): State<Core>,
    Authed(device): Authed,
    SegmentPath(device_id): SegmentPath,
    JsonBody(body): JsonBody<DeleteBody>,
) -> ApiResult<Response> {
    core.devices.get(&device.user_id, &device_id).await?;
    if let Some(challenge) = authorize(&core, &device, body.auth).await? {
        return Ok(challenge);
    }
    delete_all_of(&core, &device, vec![device_id]).await?;
    Ok(Json(json!({})).into_response())
}

/// Delete several of the caller's devices (after user-interactive auth).
pub async fn post_delete_devices(
    State(core): State<Core>,
    Authed(device): Authed,
    JsonBody(body): JsonBody<DeleteManyBody>,
) -> ApiResult<Response> {
    if let Some(challenge) = authorize(&core, &device, body.auth).await? {
        return Ok(challenge);
    }
    delete_all_of(&core, &device, body.devices).await?;
    Ok(Json(json!({})).into_response())
}
