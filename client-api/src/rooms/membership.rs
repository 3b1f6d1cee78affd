//! Membership: `POST /join/{roomIdOrAlias}`, `POST /rooms/{roomId}/join`, `.../leave`,
//! `.../invite`, `.../kick`, `.../ban`, `.../unban`, `.../forget`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::RoomOrAliasId;
use serde_json::{Value, json};
use tidings_core::ids::parse_user_id;
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error};

use super::{ReasonBody, TargetBody, room_id};
use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody};

/// Join by room ID or alias; answers `{"room_id"}`.
pub async fn post_join(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    let target = <&RoomOrAliasId>::try_from(target.as_str())
        .map_err(|e| Error::invalid_param(format!("'{target}' is not a room ID or alias: {e}")))?;
    let room_id = core.rooms.join(&device.user_id, target).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// Leave (or reject an invite).
pub async fn post_leave(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    core.rooms.leave(&device.user_id, &room_id(&raw)?, body.reason).await?;
    Ok(Json(json!({})))
}

/// Forget a room one left.
pub async fn post_forget(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    core.rooms.forget(&device.user_id, &room_id(&raw)?).await?;
    Ok(Json(json!({})))
}

/// What one of invite, kick, ban, unban does.
#[derive(Debug, Clone, Copy)]
enum Act {
    Invite,
    Kick,
    Ban,
    Unban,
}

async fn act(
    core: Core,
    device: tidings_core::accounts::Device,
    raw: String,
    body: TargetBody,
    act: Act,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::RoomSend, device.user_id.as_str(), &core.metrics)?;
    let room = room_id(&raw)?;
    let target = parse_user_id(&body.user_id)?;
    let me = &device.user_id;
    match act {
        Act::Invite => core.rooms.invite(me, &room, &target, body.reason).await?,
        Act::Kick => core.rooms.kick(me, &room, &target, body.reason).await?,
        Act::Ban => core.rooms.ban(me, &room, &target, body.reason).await?,
        Act::Unban => core.rooms.unban(me, &room, &target, body.reason).await?,
    }
    Ok(Json(json!({})))
}

/// Invite a user.
pub async fn post_invite(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Json<Value>> {
    act(core, device, raw, body, Act::Invite).await
}

/// Kick a user.
pub async fn post_kick(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Json<Value>> {
    act(core, device, raw, body, Act::Kick).await
}

/// Ban a user.
pub async fn post_ban(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Json<Value>> {
    act(core, device, raw, body, Act::Ban).await
}

/// Unban a user.
pub async fn post_unban(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult<Json<Value>> {
    act(core, device, raw, body, Act::Unban).await
}
