//! `GET /rooms/{roomId}/messages`, `GET /rooms/{roomId}/event/{eventId}`,
//! `GET /rooms/{roomId}/context/{eventId}`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::api::client::filter::RoomEventFilter;
use serde_json::{Value, json};
use tidings_core::rooms::MessagesQuery;
use tidings_core::{Core, Error, ErrorKind};

use super::{backwards, event_id, limit, room_id, token};
use crate::error::ApiResult;
use crate::extract::{Authed, QueryMap};

/// Events per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 10;

/// The `filter` parameter of `/messages`: a `RoomEventFilter` in JSON.
pub fn room_event_filter(raw: Option<&String>) -> Result<RoomEventFilter, Error> {
    match raw {
        None => Ok(RoomEventFilter::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::BadJson, format!("filter is not a RoomEventFilter: {e}"))),
    }
}

/// The query of a page (`from`, `to`, `dir`, `limit`, `filter`).
pub fn page_query(
    query: &std::collections::HashMap<String, String>,
    default_back: bool,
) -> Result<MessagesQuery, Error> {
    Ok(MessagesQuery {
        from: token(query, "from")?,
        to: token(query, "to")?,
        backwards: backwards(query, default_back)?,
        limit: limit(query, DEFAULT_LIMIT, tidings_core::rooms::timeline::MAX_PAGE)?,
        filter: room_event_filter(query.get("filter"))?,
    })
}

/// A page of a room's events.
pub async fn get_messages(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let q = page_query(&query, true)?;
    let page = core.rooms.messages(&device.user_id, &room_id(&raw)?, q).await?;
    let mut body = json!({ "chunk": page.chunk, "start": format!("s{}", page.start) });
    if let Some(end) = page.end {
        body["end"] = json!(format!("s{end}"));
    }
    if !page.state.is_empty() {
        body["state"] = json!(page.state);
    }
    Ok(Json(body))
}

/// One event.
pub async fn get_event(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (room, event) = (room_id(&raw_room)?, event_id(&raw_event)?);
    Ok(Json(core.rooms.event(&device.user_id, &room, event.as_str()).await?))
}

/// The context of an event.
pub async fn get_context(
    State(core): State<Core>,
    Authed(device): Authed,
    Path((raw_room, raw_event)): Path<(String, String)>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let (room, event) = (room_id(&raw_room)?, event_id(&raw_event)?);
    let n = limit(&query, DEFAULT_LIMIT, tidings_core::rooms::timeline::MAX_PAGE)?;
    let c = core.rooms.context(&device.user_id, &room, event.as_str(), n).await?;
    Ok(Json(json!({
        "event": c.event,
        "events_before": c.before,
        "events_after": c.after,
        "start": format!("s{}", c.start),
        "end": format!("s{}", c.end),
        "state": c.state,
    })))
}
