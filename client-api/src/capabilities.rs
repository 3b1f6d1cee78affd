//! `GET /_matrix/client/v3/capabilities`: what this server lets clients do.

use axum::Json;
use serde_json::{Value, json};

use crate::extract::Authed;

/// The capabilities: no password change or profile-field capabilities beyond the
/// defaults, one room version (rooms are single-site for now).
pub async fn get_capabilities(Authed(_device): Authed) -> Json<Value> {
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": false },
            "m.room_versions": { "default": "10", "available": { "10": "stable" } },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
        }
    }))
}
