//! `GET|POST /_tidings/client/v1/presence/list/{userId}`: the caller's presence list.

use axum::Json;
use axum::extract::State;
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::ids::{is_local, parse_user_id};
use tidings_core::ratelimit::Action;
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, UserPath};
use tidings_core::presence::render::list_entry;

/// Most IDs one request may name, `invite` and `drop` together (INTERFACE.md).
pub const MAX_IDS: usize = 100;

fn own_list(device_user: &OwnedUserId, path_user: &OwnedUserId) -> Result<(), Error> {
    if device_user != path_user {
        return Err(Error::forbidden("you may only see and change your own presence list"));
    }
    Ok(())
}

/// The caller's list, with each answer and, where allowed, the presence.
pub async fn get_list(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
) -> ApiResult<Json<Value>> {
    own_list(&device.user_id, &user)?;
    let entries: Vec<Value> = core.presence.list(&user).iter().map(|(edge, view)| list_entry(edge, view)).collect();
    Ok(Json(json!({ "entries": entries })))
}

/// The body of a list change.
#[derive(Debug, Deserialize)]
pub struct ListChange {
    #[serde(default)]
    invite: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

/// Invite users to be watched (asking their permission) and drop others.
/// Every ID is checked before anything changes, so a bad one changes nothing.
pub async fn post_list(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<ListChange>,
) -> ApiResult<Json<Value>> {
    own_list(&device.user_id, &user)?;
    let named = body.invite.len() + body.drop.len();
    if named > MAX_IDS {
        return Err(Error::invalid_param(format!(
            "one request names at most {MAX_IDS} user IDs (invite and drop together); this one names {named}"
        ))
        .into());
    }
    core.limiter.check(Action::PresenceList, user.as_str(), &core.metrics)?;
    let invite = body.invite.iter().map(|s| parse_user_id(s)).collect::<Result<Vec<_>, _>>()?;
    let drop = body.drop.iter().map(|s| parse_user_id(s)).collect::<Result<Vec<_>, _>>()?;
    for target in &invite {
        if *target == user {
            return Err(Error::invalid_param("you always see your own presence; you cannot watch yourself").into());
        }
        if is_local(target, &core.server_name) && !core.accounts.exists(target).await? {
            return Err(Error::not_found(format!("there is no user {target}")).into());
        }
    }
    core.consent.check_list_room(&user, &invite, &drop)?;
    for target in &drop {
        core.consent.drop_watch(&user, target).await?;
    }
    for target in &invite {
        core.consent.invite(&user, target).await?;
    }
    Ok(Json(json!({})))
}
