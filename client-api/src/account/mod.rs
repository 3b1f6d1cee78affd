//! Account endpoints: registration, login, logout, whoami, profile.

pub mod login;
pub mod logout;
pub mod profile;
pub mod register;
pub mod whoami;

use serde_json::{Value, json};
use tidings_core::accounts::Session;

/// The body of a successful login or registration.
fn session_json(session: &Session, server_name: &str) -> Value {
    json!({
        "user_id": session.device.user_id,
        "access_token": session.access_token,
        "device_id": session.device.device_id,
        "home_server": server_name,
    })
}
