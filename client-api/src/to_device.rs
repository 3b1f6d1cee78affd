//! `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`: messages to devices,
//! applied once per sending device and transaction ID.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, Segments};

/// The longest event type or transaction ID accepted.
const MAX_ID_BYTES: usize = 255;

/// The body of a send.
#[derive(Debug, Deserialize)]
pub struct SendBody {
    messages: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
}

/// Queue the messages for their devices.
pub async fn put_send_to_device(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((kind, txn_id)): Segments<(String, String)>,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<Json<Value>> {
    if kind.is_empty() || kind.len() > MAX_ID_BYTES || txn_id.is_empty() || txn_id.len() > MAX_ID_BYTES {
        return Err(
            Error::invalid_param(format!("event types and transaction IDs are 1 to {MAX_ID_BYTES} bytes")).into()
        );
    }
    core.to_device.send(&device, &kind, &txn_id, body.messages).await?;
    Ok(Json(json!({})))
}
