//! `GET /_tidings/client/v1/presence/requests` and
//! `POST /_tidings/client/v1/presence/requests/{userId}`: who asks to watch me, and my answer.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::Core;
use tidings_core::ratelimit::Action;

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, UserPath};

/// Requests waiting for the caller's answer, oldest first.
pub async fn get_requests(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    let requests: Vec<Value> = core
        .consent
        .requests(&device.user_id)
        .iter()
        .map(|(watcher, edge)| json!({ "user_id": watcher, "ts": edge.ts }))
        .collect();
    Ok(Json(json!({ "requests": requests })))
}

/// The body of an answer.
#[derive(Debug, Deserialize)]
pub struct Answer {
    allow: bool,
}

/// Allow or deny `{userId}`'s request; denying also revokes an accepted watcher.
pub async fn post_answer(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(watcher): UserPath,
    JsonBody(body): JsonBody<Answer>,
) -> ApiResult<Json<Value>> {
    core.limiter.check(Action::PresenceAnswer, device.user_id.as_str(), &core.metrics)?;
    core.consent.answer(&device.user_id, &watcher, body.allow).await?;
    Ok(Json(json!({})))
}
