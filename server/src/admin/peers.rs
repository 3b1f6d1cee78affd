//! `GET /_tidings/admin/v1/federation/peers`: each configured peer with its
//! watchdogs, queue and traffic (bytes include HTTP request lines and headers).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{Admin, AdminState};

/// Every configured peer.
pub async fn get_peers(State(state): State<AdminState>, _admin: Admin) -> Json<Value> {
    Json(json!({ "peers": state.federation.peer_stats().await }))
}
