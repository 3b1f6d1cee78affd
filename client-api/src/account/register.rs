//! `POST /_matrix/client/v3/register` (user-interactive auth with `m.login.dummy`)
//! and `GET /_matrix/client/v3/register/available`.
//!
//! Like Synapse, the `auth` dict is accepted on the first request with or without a
//! `session`, because matrix-nio sends it that way.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::accounts::DeviceRequest;
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error, ErrorKind};

use super::session_json;
use crate::RegistrationPolicy;
use crate::error::ApiResult;
use crate::extract::{ClientAddr, JsonBody, QueryMap};

#[derive(Debug, Deserialize)]
struct AuthDict {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The body of a registration request.
#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    auth: Option<AuthDict>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
}

fn uia_challenge() -> Response {
    let session: String =
        rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect();
    let body = json!({
        "flows": [{ "stages": ["m.login.dummy"] }],
        "params": {},
        "session": session,
    });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// Register an account.
pub async fn post_register(
    State(core): State<Core>,
    State(policy): State<RegistrationPolicy>,
    ClientAddr(addr): ClientAddr,
    QueryMap(query): QueryMap,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Response> {
    if !policy.open {
        return Err(Error::forbidden("registration is closed on this server").into());
    }
    if query.get("kind").is_some_and(|k| k != "user") {
        return Err(Error::forbidden("guest access is not supported").into());
    }
    if let Some(name) = &body.username {
        core.accounts.available(name).await?;
    }
    match body.auth.as_ref().and_then(|a| a.kind.as_deref()) {
        Some("m.login.dummy") => {}
        Some(other) => {
            return Err(Error::new(ErrorKind::BadRequest, format!("unsupported auth stage '{other}'")).into());
        }
        None => return Ok(uia_challenge()),
    }
    core.limiter.check(Action::Register, &addr, &core.metrics)?;
    let password = body.password.ok_or_else(|| Error::new(ErrorKind::MissingParam, "a password is required"))?;
    if password.is_empty() || password.len() > 512 {
        return Err(Error::invalid_param("the password must be 1 to 512 bytes long").into());
    }
    let device = DeviceRequest { device_id: body.device_id, display_name: body.initial_device_display_name };
    let (user_id, session) =
        core.accounts.register(body.username.as_deref(), &password, device, !body.inhibit_login).await?;
    tidings_core::metrics::Metrics::inc(&core.metrics.registrations);
    let answer = match session {
        Some(session) => session_json(&session, &core.server_name),
        None => json!({ "user_id": user_id, "home_server": &*core.server_name }),
    };
    Ok(Json(answer).into_response())
}

/// Whether a user name is free.
pub async fn get_available(State(core): State<Core>, QueryMap(query): QueryMap) -> ApiResult<Json<Value>> {
    let name = query.get("username").ok_or_else(|| Error::new(ErrorKind::MissingParam, "username is required"))?;
    core.accounts.available(name).await?;
    Ok(Json(json!({ "available": true })))
}
