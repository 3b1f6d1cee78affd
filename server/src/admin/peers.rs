//! `GET /_tidings/admin/v1/federation/peers`: each configured peer with its
//! watchdogs, queue and traffic (bytes include HTTP request lines and headers, and
//! the link's bytes on the line), and for a linked peer its link's state and figures.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_federation::PeerStatus;

use super::{Admin, AdminState};

/// Every configured peer.
pub async fn get_peers(State(state): State<AdminState>, _admin: Admin) -> Json<Value> {
    let peers: Vec<Value> = state.federation.peer_status().await.iter().map(render).collect();
    Json(json!({ "peers": peers }))
}

fn render(p: &PeerStatus) -> Value {
    json!({
        "server_name": p.server_name,
        "last_received_ts": p.last_received_ts,
        "short_watchdog_due_ts": p.short_watchdog_due_ts,
        "long_watchdog_due_ts": p.long_watchdog_due_ts,
        "queue_len": p.queue_len,
        "txns_sent": p.txns_sent,
        "txns_received": p.txns_received,
        "bytes_sent": p.bytes_sent,
        "bytes_received": p.bytes_received,
        "bytes_by_class": {
            "control": p.bytes_by_class[0],
            "presence": p.bytes_by_class[1],
            "short": p.bytes_by_class[2],
            "bulk": p.bytes_by_class[3],
        },
        "transport": p.transport,
        "link_state": p.link.as_ref().map(|l| l.state),
        "link_bytes_sent": p.link.as_ref().map_or(0, |l| l.bytes_sent),
        "link_bytes_received": p.link.as_ref().map_or(0, |l| l.bytes_received),
        "link_rtt_ms": p.link.as_ref().and_then(|l| l.rtt_ms),
        "link_calls": p.link.as_ref().map_or(0, |l| l.calls),
        "link_connected_ms": p.link.as_ref().map_or(0, |l| l.connected_ms),
        "link_cost": p.link.as_ref().map_or(0.0, |l| l.cost),
    })
}
