//! `GET|POST /_matrix/client/v3/login`: password login with an `m.id.user` identifier.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::accounts::DeviceRequest;
use tidings_core::ids::user_id_from_login;
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error, ErrorKind};

use super::session_json;
use crate::error::ApiResult;
use crate::extract::{ClientAddr, JsonBody};

/// The login flows offered.
pub async fn get_login() -> Json<Value> {
    Json(json!({ "flows": [{ "type": "m.login.password" }] }))
}

#[derive(Debug, Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    user: Option<String>,
}

/// The body of a login request.
#[derive(Debug, Deserialize)]
pub struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Identifier>,
    /// Deprecated top-level user name, still sent by older clients.
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

/// Log in with a password.
pub async fn post_login(
    State(core): State<Core>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::Login, &addr, &core.metrics)?;
    if body.kind != "m.login.password" {
        return Err(Error::new(ErrorKind::BadRequest, format!("unsupported login type '{}'", body.kind)).into());
    }
    let name = match body.identifier {
        Some(Identifier { kind, user }) if kind == "m.id.user" => user,
        Some(Identifier { kind, .. }) => {
            return Err(Error::new(ErrorKind::BadRequest, format!("unsupported identifier type '{kind}'")).into());
        }
        None => body.user,
    }
    .ok_or_else(|| Error::new(ErrorKind::MissingParam, "no user given"))?;
    let password = body.password.ok_or_else(|| Error::new(ErrorKind::MissingParam, "no password given"))?;
    let user_id =
        user_id_from_login(&name, &core.server_name).map_err(|_| Error::forbidden("invalid user name or password"))?;
    let device = DeviceRequest { device_id: body.device_id, display_name: body.initial_device_display_name };
    let session = core.accounts.login(&user_id, &password, device).await?;
    tidings_core::metrics::Metrics::inc(&core.metrics.logins);
    Ok(Json(session_json(&session, &core.server_name)))
}
