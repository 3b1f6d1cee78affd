//! `GET /_tidings/admin/v1/federation/peers`: each configured peer with its
//! watchdogs, queue and traffic. Until the federation sender runs, nothing has been
//! sent or received, so the figures are zero and the timestamps null.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{Admin, AdminState};

/// Every configured peer.
pub async fn get_peers(State(state): State<AdminState>, _admin: Admin) -> Json<Value> {
    let peers: Vec<Value> = state
        .federation
        .peers
        .iter()
        .map(|p| {
            json!({
                "server_name": p.server_name,
                "last_received_ts": null,
                "short_watchdog_due_ts": null,
                "long_watchdog_due_ts": null,
                "queue_len": 0,
                "txns_sent": 0,
                "txns_received": 0,
                "bytes_sent": 0,
                "bytes_received": 0,
            })
        })
        .collect();
    Json(json!({ "peers": peers }))
}
