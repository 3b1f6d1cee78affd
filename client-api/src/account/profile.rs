//! `GET /_matrix/client/v3/profile/{userId}`, `GET|PUT .../profile/{userId}/displayname`
//! and `GET|PUT .../profile/{userId}/avatar_url`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, UserPath};

/// A user's profile: display name and avatar, each left out when unset. Needs no token.
pub async fn get_profile(State(core): State<Core>, UserPath(user): UserPath) -> ApiResult<Json<Value>> {
    let name = core.accounts.displayname(&user).await?;
    let avatar = core.accounts.avatar_url(&user).await?;
    let mut profile = json!({});
    if let Some(n) = name {
        profile["displayname"] = json!(n);
    }
    if let Some(a) = avatar {
        profile["avatar_url"] = json!(a);
    }
    Ok(Json(profile))
}

/// A user's avatar URL; 404 when the user has none.
pub async fn get_avatar_url(State(core): State<Core>, UserPath(user): UserPath) -> ApiResult<Json<Value>> {
    let url = core.accounts.avatar_url(&user).await?;
    let url = url.ok_or_else(|| Error::not_found(format!("{user} has no avatar")))?;
    Ok(Json(json!({ "avatar_url": url })))
}

/// The body of an avatar change.
#[derive(Debug, Deserialize)]
pub struct AvatarBody {
    avatar_url: Option<String>,
}

/// Set the caller's avatar URL.
pub async fn put_avatar_url(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<AvatarBody>,
) -> ApiResult<Json<Value>> {
    if user != device.user_id {
        return Err(Error::forbidden("you may only change your own avatar").into());
    }
    core.accounts.set_avatar_url(&user, body.avatar_url.filter(|u| !u.is_empty())).await?;
    Ok(Json(json!({})))
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
