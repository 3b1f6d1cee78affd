//! `GET /_matrix/client/v3/sync`: a long poll over the user's stream.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_core::sync::{SyncRequest, SyncToken};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{AuthedQuiet, QueryMap};
use crate::presence::render::presence_event;
use crate::presence::status::parse_state;

fn parse_request(query: &std::collections::HashMap<String, String>) -> Result<SyncRequest, Error> {
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
    Ok(SyncRequest { since, timeout: Duration::from_millis(timeout), set_presence, full_state })
}

/// Answer a sync. Unknown parameters (`filter`, ...) are ignored.
pub async fn get_sync(
    State(core): State<Core>,
    AuthedQuiet(device): AuthedQuiet,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Value>> {
    let request = parse_request(&query)?;
    let batch = core.sync.sync(&device, request).await;
    let presence: Vec<Value> = batch.presence.iter().map(presence_event).collect();
    let requests: Vec<Value> =
        batch.presence_requests.iter().map(|(who, edge)| json!({ "user_id": who, "ts": edge.ts })).collect();
    Ok(Json(json!({
        "next_batch": batch.next_batch.to_string(),
        "presence": { "events": presence },
        "account_data": { "events": [] },
        "to_device": { "events": [] },
        "rooms": { "join": {}, "invite": {}, "leave": {}, "knock": {} },
        "device_lists": { "changed": [], "left": [] },
        "device_one_time_keys_count": {},
        "tidings.presence_requests": { "events": requests },
    })))
}
