//! `GET|PUT /_matrix/client/v3/user/{userId}/account_data/{type}` and
//! `GET|PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`.
//! Only the owner may read or write (403 otherwise); an unset type is 404.

use axum::Json;
use axum::extract::State;
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};
use tidings_core::ids::parse_user_id;
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, Segments};

fn owner(device_user: &UserId, raw: &str) -> Result<ruma::OwnedUserId, Error> {
    let user = parse_user_id(raw)?;
    if user != device_user {
        return Err(Error::forbidden("you may only use your own account data"));
    }
    Ok(user)
}

fn room(raw: &str) -> Result<OwnedRoomId, Error> {
    OwnedRoomId::try_from(raw).map_err(|_| Error::invalid_param(format!("'{raw}' is not a room ID")))
}

fn found(content: Option<Value>, kind: &str) -> Result<Json<Value>, Error> {
    content.map(Json).ok_or_else(|| Error::not_found(format!("no account data of type {kind}")))
}

/// Global account data of one type.
pub async fn get_global(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((user, kind)): Segments<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = owner(&device.user_id, &user)?;
    Ok(found(core.account_data.get(&user, None, &kind).await?, &kind)?)
}

/// Set global account data of one type.
pub async fn put_global(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((user, kind)): Segments<(String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let user = owner(&device.user_id, &user)?;
    core.account_data.put(&user, None, &kind, content).await?;
    Ok(Json(json!({})))
}

/// Account data of one type in one room.
pub async fn get_room(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((user, room_id, kind)): Segments<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user = owner(&device.user_id, &user)?;
    let room_id = room(&room_id)?;
    Ok(found(core.account_data.get(&user, Some(&room_id), &kind).await?, &kind)?)
}

/// Set account data of one type in one room.
pub async fn put_room(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((user, room_id, kind)): Segments<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let user = owner(&device.user_id, &user)?;
    let room_id = room(&room_id)?;
    core.account_data.put(&user, Some(&room_id), &kind, content).await?;
    Ok(Json(json!({})))
}
