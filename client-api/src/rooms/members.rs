//! `GET /joined_rooms`, `GET /rooms/{roomId}/members`, `GET /rooms/{roomId}/joined_members`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::rooms::MembersQuery;

use super::{room_id, token};
use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap};

/// The rooms the caller is joined to.
pub async fn get_joined_rooms(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "joined_rooms": core.rooms.joined_rooms(&device.user_id) })))
}

/// Member events, optionally at a token and of one membership.
pub async fn get_members(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let q = MembersQuery {
        at: token(&query, "at")?,
        membership: query.get("membership").cloned(),
        not_membership: query.get("not_membership").cloned(),
    };
    let chunk = core.rooms.members(&device.user_id, &room_id(&raw)?, q).await?;
    Ok(Json(json!({ "chunk": chunk })))
}

/// Joined members with their display names and avatars.
pub async fn get_joined_members(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(core.rooms.joined_members(&device.user_id, &room_id(&raw)?)?))
}
