//! `PUT /_tidings/client/v1/presence/devices/{deviceId}`: a device reports how long it
//! has been idle and/or what kind of device it is.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiResult;
use crate::extract::{AuthedQuiet, JsonBody, SegmentPath};

/// The body of a device report.
#[derive(Debug, Deserialize)]
pub struct DeviceReport {
    idle_ms: Option<u64>,
    kind: Option<String>,
}

fn check_kind(kind: &str) -> Result<(), Error> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.');
    if kind.is_empty() || kind.len() > 32 || !kind.chars().all(ok) {
        return Err(Error::invalid_param("kind must be 1 to 32 characters of a-z, 0-9, '_', '-', '.'"));
    }
    Ok(())
}

/// Record a device's idleness and/or kind. The device must be one of the caller's.
pub async fn put_device(
    State(core): State<Core>,
    AuthedQuiet(device): AuthedQuiet,
    SegmentPath(device_id): SegmentPath,
    JsonBody(body): JsonBody<DeviceReport>,
) -> ApiResult<Json<Value>> {
    if body.idle_ms.is_none() && body.kind.is_none() {
        return Err(Error::new(ErrorKind::MissingParam, "give idle_ms and/or kind").into());
    }
    if let Some(kind) = &body.kind {
        check_kind(kind)?;
    }
    core.limiter.check(Action::Presence, device.user_id.as_str(), &core.metrics)?;
    core.presence.report_device(&device.user_id, &device.device_id, &device_id, body.idle_ms, body.kind).await?;
    Ok(Json(json!({})))
}
