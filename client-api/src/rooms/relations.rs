//! `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `GET /_matrix/client/v1/rooms/{roomId}/threads`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tidings_core::{Core, Error};

use super::messages::page_query;
use super::{event_id, limit, room_id, token};
use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap};

async fn relations(
    core: Core,
    user: &ruma::UserId,
    raw_room: &str,
    raw_event: &str,
    rel_type: Option<String>,
    event_type: Option<String>,
    query: &std::collections::HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let (room, event) = (room_id(raw_room)?, event_id(raw_event)?);
    let q = page_query(query, true)?;
    let page = core.rooms.relations(user, &room, event.as_str(), rel_type, event_type, q).await?;
    let mut body = json!({ "chunk": page.chunk });
    if let Some(end) = page.end {
        body["next_batch"] = json!(format!("s{end}"));
    }
    Ok(Json(body))
}

/// Every event relating to one.
pub async fn get_relations(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event)): Path<(String, String)>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    relations(core, &device.user_id, &raw_room, &raw_event, None, None, &query).await
}

/// Events relating to one by `relType`.
pub async fn get_relations_by_type(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event, rel_type)): Path<(String, String, String)>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    relations(core, &device.user_id, &raw_room, &raw_event, Some(rel_type), None, &query).await
}

/// Events relating to one by `relType`, of one event type.
pub async fn get_relations_by_type_and_event(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event, rel_type, event_type)): Path<(String, String, String, String)>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    relations(core, &device.user_id, &raw_room, &raw_event, Some(rel_type), Some(event_type), &query).await
}

/// Thread roots of a room, newest activity first (`include=all|participated`).
pub async fn get_threads(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let participated = match query.get("include").map(String::as_str) {
        None | Some("all") => false,
        Some("participated") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!("include must be all or participated, not '{other}'")).into());
        }
    };
    let n = limit(&query, 10, tidings_core::rooms::timeline::MAX_PAGE)?;
    let from = token(&query, "from")?;
    let (chunk, next) = core.rooms.threads(&device.user_id, &room_id(&raw)?, participated, from, n).await?;
    let mut body = json!({ "chunk": chunk });
    if let Some(next) = next {
        body["next_batch"] = json!(format!("s{next}"));
    }
    Ok(Json(body))
}
