//! `GET|PUT|DELETE /directory/room/{roomAlias}`, `GET|PUT /directory/list/room/{roomId}`,
//! `GET|POST /publicRooms`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::RoomAliasId;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::rooms::DirectoryPage;
use tidings_core::{Core, Error};

use super::room_id;
use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, QueryMap};

/// Rooms per page of the directory when no limit is given, and the most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

fn alias(raw: &str) -> Result<&RoomAliasId, Error> {
    <&RoomAliasId>::try_from(raw).map_err(|e| Error::invalid_param(format!("'{raw}' is not a room alias: {e}")))
}

/// Resolve an alias: `{"room_id", "servers"}`.
pub async fn get_alias(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = core.rooms.resolve_alias(&device.user_id, alias(&raw)?).await?;
    Ok(Json(json!({ "room_id": room, "servers": [&*core.server_name] })))
}

/// The body of `PUT /directory/room/{alias}`.
#[derive(Debug, Deserialize)]
pub struct AliasBody {
    room_id: String,
}

/// Add an alias.
pub async fn put_alias(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult<Json<Value>> {
    core.rooms.put_alias(&device.user_id, alias(&raw)?, &room_id(&body.room_id)?).await?;
    Ok(Json(json!({})))
}

/// Remove an alias.
pub async fn delete_alias(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    core.rooms.delete_alias(&device.user_id, alias(&raw)?).await?;
    Ok(Json(json!({})))
}

/// Whether a room is listed.
pub async fn get_listing(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let public = core.rooms.is_published(&device.user_id, &room_id(&raw)?)?;
    Ok(Json(json!({ "visibility": if public { "public" } else { "private" } })))
}

/// The body of `PUT /directory/list/room/{roomId}`.
#[derive(Debug, Deserialize)]
pub struct ListingBody {
    visibility: String,
}

/// List or unlist a room.
pub async fn put_listing(
    State(core): State<Core>,
    Authed(device): Authed,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<ListingBody>,
) -> ApiResult<Json<Value>> {
    let public = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        other => {
            return Err(Error::invalid_param(format!("visibility must be public or private, not '{other}'")).into());
        }
    };
    core.rooms.set_published(&device.user_id, &room_id(&raw)?, public).await?;
    Ok(Json(json!({})))
}

fn render(page: DirectoryPage) -> Value {
    let chunk: Vec<Value> = page
        .rooms
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "room_id": r.room_id,
                "num_joined_members": r.joined,
                "world_readable": r.world_readable,
                "guest_can_join": r.guest_can_join,
                "join_rule": r.join_rule,
            });
            for (k, f) in [
                ("name", r.name),
                ("topic", r.topic),
                ("canonical_alias", r.canonical_alias),
                ("avatar_url", r.avatar_url),
            ] {
                if let Some(f) = f {
                    v[k] = json!(f);
                }
            }
            v
        })
        .collect();
    let mut body = json!({ "chunk": chunk, "total_room_count_estimate": page.total });
    if let Some(n) = page.next {
        body["next_batch"] = json!(format!("p{n}"));
    }
    if let Some(p) = page.prev {
        body["prev_batch"] = json!(format!("p{p}"));
    }
    body
}

fn since(raw: Option<&str>) -> Result<Option<usize>, Error> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            s.strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::invalid_param(format!("'{s}' is not a directory token")))
        })
        .transpose()
}

fn page_limit(raw: Option<u64>) -> usize {
    raw.map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT))
}

/// The public directory (no auth needed, as in the spec).
pub async fn get_public_rooms(State(core): State<Core>, QueryMap(query): QueryMap) -> ApiResult<Json<Value>> {
    let limit = query
        .get("limit")
        .map(|l| l.parse::<u64>().map_err(|_| Error::invalid_param("limit must be a number")))
        .transpose()?;
    let page = core.rooms.public_rooms(since(query.get("since").map(String::as_str))?, page_limit(limit), None);
    Ok(Json(render(page)))
}

/// The body of `POST /publicRooms`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct PublicRoomsBody {
    limit: Option<u64>,
    since: Option<String>,
    filter: Option<PublicRoomsFilter>,
}

/// `filter` of `POST /publicRooms`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct PublicRoomsFilter {
    generic_search_term: Option<String>,
}

/// The public directory, searched.
pub async fn post_public_rooms(
    State(core): State<Core>,
    Authed(_device): Authed,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult<Json<Value>> {
    let term = body.filter.and_then(|f| f.generic_search_term);
    let page = core.rooms.public_rooms(since(body.since.as_deref())?, page_limit(body.limit), term.as_deref());
    Ok(Json(render(page)))
}
