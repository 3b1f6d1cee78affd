//! `GET /_matrix/client/v3/sync`: a long poll over the user's stream.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use ruma::presence::PresenceState;
use serde_json::{Value, json};
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
) -> ApiResult<Json<Value>> {
    let (mut request, set_presence) = parse_request(&core, &device.user_id, &query)?;
    request.device = Some(ruma::OwnedDeviceId::from(device.device_id.as_str()));
    let _syncing = core.presence.sync_started(&device.user_id, &device.device_id, set_presence).await;
    let answer = core.sync.sync(&device.user_id, request).await?;
    Ok(Json(render(answer)))
}

/// The JSON of a sync answer: every key Matrix clients expect, empty where Tidings
/// has nothing yet, and the extensions at the top level.
fn render(answer: SyncResponse) -> Value {
    let mut body = json!({
        "next_batch": answer.next_batch.to_string(),
        "presence": answer.presence,
        "account_data": answer.account_data,
        "to_device": answer.to_device,
        "rooms": answer.rooms,
        "device_lists": answer.device_lists,
        "device_one_time_keys_count": answer.device_one_time_keys_count,
    });
    if let Some(types) = answer.device_unused_fallback_key_types {
        body["device_unused_fallback_key_types"] = json!(types);
    }
    for (key, list) in
        [("account_data", "events"), ("to_device", "events"), ("device_lists", "changed"), ("device_lists", "left")]
    {
        if body[key].get(list).is_none() {
            body[key][list] = json!([]);
        }
    }
    for room_kind in ["join", "invite", "leave", "knock"] {
        if body["rooms"].get(room_kind).is_none() {
            body["rooms"][room_kind] = json!({});
        }
    }
    if body["presence"].get("events").is_none() {
        body["presence"]["events"] = json!([]);
    }
    for (key, value) in answer.extensions {
        body[key] = value;
    }
    body
}
