//! `GET /_matrix/client/v3/sync`: a long poll over the user's stream.

use std::time::Duration;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ruma::api::client::sync::sync_events::v3::{InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom};
use ruma::events::presence::PresenceEvent;
use ruma::events::{AnyGlobalAccountDataEvent, AnyToDeviceEvent};
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedRoomId, OwnedUserId, UInt};
use serde::Serialize;
use serde_json::Value;
use tidings_core::sync::{SyncRequest, SyncResponse, SyncToken};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{AuthedQuiet, QueryMap};
use crate::presence::status::parse_state;

fn parse_request(
    core: &Core,
    user: &ruma::UserId,
    query: &std::collections::HashMap<String, String>,
) -> Result<(SyncRequest, Option<PresenceState>), Error> {
    let since = query.get("since").filter(|s| !s.is_empty()).map(|s| SyncToken::parse(s)).transpose()?;
    let timeout = match query.get("timeout") {
        Some(t) => t.parse::<u64>().map_err(|_| Error::invalid_param("timeout must be a whole number of ms"))?,
        None => 0,
    };
    let set_presence = query.get("set_presence").map(|s| parse_state(s)).transpose()?;
    let full_state = match query.get("full_state").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::invalid_param("full_state must be true or false")),
    };
    let filter = std::sync::Arc::new(core.rooms.resolve_filter(user, query.get("filter").map(String::as_str))?);
    let request = SyncRequest { since, timeout: Duration::from_millis(timeout), full_state, filter, device: None };
    Ok((request, set_presence))
}

/// Answer a sync. `filter` is inline JSON or a stored filter's ID; unknown parameters are ignored. The device counts
/// as syncing (present, not active) while the request waits.
pub async fn get_sync(
    State(core): State<Core>,
    AuthedQuiet(device): AuthedQuiet,
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    let (mut request, set_presence) = parse_request(&core, &device.user_id, &query)?;
    request.device = Some(ruma::OwnedDeviceId::from(device.device_id.as_str()));
    let _syncing = core.presence.sync_started(&device.user_id, &device.device_id, set_presence).await;
    let answer = core.sync.sync(&device.user_id, request).await?;
    Ok(render(&answer)?)
}

/// The JSON of a sync answer: every key Matrix clients expect, empty where Tidings
/// has nothing, and the extensions at the top level. Written in one pass: the events
/// the sources rendered (`Raw`) are copied into the body as they are, not parsed again.
#[derive(Serialize)]
struct Body<'a> {
    next_batch: String,
    presence: Events<'a, Raw<PresenceEvent>>,
    account_data: Events<'a, Raw<AnyGlobalAccountDataEvent>>,
    to_device: Events<'a, Raw<AnyToDeviceEvent>>,
    rooms: RoomsBody<'a>,
    device_lists: DeviceListsBody<'a>,
    device_one_time_keys_count: &'a BTreeMap<OneTimeKeyAlgorithm, UInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_unused_fallback_key_types: Option<&'a Vec<OneTimeKeyAlgorithm>>,
    #[serde(flatten)]
    extensions: &'a BTreeMap<String, Value>,
}

/// `{"events": [...]}`, also when empty.
#[derive(Serialize)]
struct Events<'a, T> {
    events: &'a [T],
}

/// `rooms`, with all four kinds also when empty.
#[derive(Serialize)]
struct RoomsBody<'a> {
    join: &'a BTreeMap<OwnedRoomId, JoinedRoom>,
    invite: &'a BTreeMap<OwnedRoomId, InvitedRoom>,
    leave: &'a BTreeMap<OwnedRoomId, LeftRoom>,
    knock: &'a BTreeMap<OwnedRoomId, KnockedRoom>,
}

/// `device_lists`, with both lists also when empty.
#[derive(Serialize)]
struct DeviceListsBody<'a> {
    changed: &'a [OwnedUserId],
    left: &'a [OwnedUserId],
}

fn render(answer: &SyncResponse) -> Result<Response, Error> {
    let body = Body {
        next_batch: answer.next_batch.to_string(),
        presence: Events { events: &answer.presence.events },
        account_data: Events { events: &answer.account_data.events },
        to_device: Events { events: &answer.to_device.events },
        rooms: RoomsBody {
            join: &answer.rooms.join,
            invite: &answer.rooms.invite,
            leave: &answer.rooms.leave,
            knock: &answer.rooms.knock,
        },
        device_lists: DeviceListsBody { changed: &answer.device_lists.changed, left: &answer.device_lists.left },
        device_one_time_keys_count: &answer.device_one_time_keys_count,
        device_unused_fallback_key_types: answer.device_unused_fallback_key_types.as_ref(),
        extensions: &answer.extensions,
    };
    let bytes = serde_json::to_vec(&body).map_err(Error::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
