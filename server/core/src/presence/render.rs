//! How presence looks on the wire: Matrix `m.presence` content for Matrix
//! endpoints (with `tidings.unknown` where we do not know), and the richer entry of
//! the presence-list extension.

use super::{Edge, Subscription, UserView};
use serde_json::{Map, Value, json};

/// Matrix presence content: `presence`, and `last_active_ago`, `currently_active`,
/// `status_msg` where known. An unknown user is "offline" with `tidings.unknown: true`.
pub fn presence_content(view: &UserView) -> Value {
    let mut c = Map::new();
    let s = &view.snapshot;
    if !view.known {
        // Whatever we last heard is stale: Matrix has no "unknown", so say offline.
        c.insert("presence".into(), json!("offline"));
        c.insert("tidings.unknown".into(), json!(true));
        return Value::Object(c);
    }
    c.insert("presence".into(), json!(s.state.as_str()));
    if let Some(active) = s.last_active_ms {
        c.insert("last_active_ago".into(), json!(view.now_ms.saturating_sub(active)));
    }
    if s.state == ruma::presence::PresenceState::Online {
        c.insert("currently_active".into(), json!(s.currently_active));
    }
    if let Some(msg) = &s.status_msg {
        c.insert("status_msg".into(), json!(msg));
    }
    if !s.devices.is_empty() {
        c.insert("tidings.devices".into(), devices(view));
    }
    Value::Object(c)
}

fn devices(view: &UserView) -> Value {
    view.snapshot.devices.iter().map(|d| json!({ "device_id": d.device_id, "kind": d.kind, "idle": d.idle })).collect()
}

/// An `m.presence` event for /sync.
pub fn presence_event(view: &UserView) -> Value {
    json!({ "type": "m.presence", "sender": view.user_id, "content": presence_content(view) })
}

/// One entry of `GET /_tidings/client/v1/presence/list/{userId}`.
pub fn list_entry(edge: &Edge, view: &UserView) -> Value {
    let mut e = Map::new();
    e.insert("user_id".into(), json!(view.user_id));
    e.insert("subscription".into(), json!(edge.state.as_str()));
    if edge.state != Subscription::Accepted || !view.known {
        e.insert("presence".into(), json!("unknown"));
        return Value::Object(e);
    }
    let s = &view.snapshot;
    e.insert("presence".into(), json!(s.state.as_str()));
    if let Some(msg) = &s.status_msg {
        e.insert("status_msg".into(), json!(msg));
    }
    if let Some(active) = s.last_active_ms {
        e.insert("last_active_ago".into(), json!(view.now_ms.saturating_sub(active)));
    }
    e.insert("currently_active".into(), json!(s.currently_active));
    e.insert("devices".into(), devices(view));
    Value::Object(e)
}
