//! `GET /_matrix/client/v3/profile/{userId}` and `GET|PUT .../profile/{userId}/displayname`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, UserPath};

/// A user's profile (display name only for now). Needs no token.
pub async fn get_profile(State(core): State<Core>, UserPath(user): UserPath) -> ApiResult<Json<Value>> {
    let name = core.accounts.displayname(&user).await?;
    Ok(Json(match name {
        Some(n) => json!({ "displayname": n }),
        None => json!({}),
    }))
}

/// A user's display name; 404 when the user has none.
pub async fn get_displayname(State(core): State<Core>, UserPath(user): UserPath) -> ApiResult<Json<Value>> {
    let name = core.accounts.displayname(&user).await?;
    let name = name.ok_or_else(|| Error::not_found(format!("{user} has no display name")))?;
    Ok(Json(json!({ "displayname": name })))
}

/// The body of a display-name change.
#[derive(Debug, Deserialize)]
pub struct DisplaynameBody {
    displayname: Option<String>,
}

/// Set the caller's display name.
pub async fn put_displayname(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<DisplaynameBody>,
) -> ApiResult<Json<Value>> {
    if user != device.user_id {
        return Err(Error::forbidden("you may only change your own display name").into());
    }
    if body.displayname.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(Error::invalid_param("display names are at most 256 bytes").into());
    }
    core.accounts.set_displayname(&user, body.displayname.filter(|n| !n.is_empty())).await?;
    Ok(Json(json!({})))
}
