//! User-interactive auth with `m.login.password`, for the endpoints that need the
//! caller to prove their password again (deleting devices, replacing cross-signing
//! keys): the first request gets 401 with the flows and a session, the next one
//! carries the caller's password. The session is only an echo (the password is what
//! is checked), so a stranger cannot make the server hold one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use tidings_core::accounts::Device;
use tidings_core::{Core, Error, ErrorKind};

/// The `auth` dict of a request body.
#[derive(Debug, Default, Deserialize)]
pub struct AuthDict {
    #[serde(rename = "type")]
    kind: Option<String>,
    password: Option<String>,
    session: Option<String>,
}

/// The 401 answer that asks for the password (with the error of a wrong one).
pub fn challenge(session: Option<String>, error: Option<&Error>) -> Response {
    let session = session.unwrap_or_else(|| {
        rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
    });
    let mut body = json!({
        "flows": [{ "stages": ["m.login.password"] }],
        "params": {},
        "session": session,
    });
    if let Some(e) = error {
        body["errcode"] = json!(e.kind().errcode());
        body["error"] = json!(e.message());
    }
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// Check the auth dict: `None` when the caller proved their password, else the 401 to send.
pub async fn authorize(core: &Core, device: &Device, auth: Option<AuthDict>) -> Result<Option<Response>, Error> {
    let Some(auth) = auth else { return Ok(Some(challenge(None, None))) };
    match auth.kind.as_deref() {
        Some("m.login.password") => {}
        Some(other) => return Err(Error::new(ErrorKind::BadRequest, format!("unsupported auth stage '{other}'"))),
        None => return Ok(Some(challenge(auth.session, None))),
    }
    let password = auth.password.unwrap_or_default();
    match core.accounts.check_password(&device.user_id, &password).await {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == ErrorKind::Forbidden => Ok(Some(challenge(auth.session, Some(&e)))),
        Err(e) => Err(e),
    }
}
