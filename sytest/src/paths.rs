//! Paths of the endpoints tests call with a user ID in them, encoded once here.

use crate::client::encode_component;

/// `GET /_tidings/client/v1/presence/requests`: who asks to watch me.
pub const REQUESTS: &str = "/_tidings/client/v1/presence/requests";

/// `/_matrix/client/v3/presence/{userId}/status`.
pub fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", encode_component(user_id))
}

/// `/_tidings/client/v1/presence/list/{userId}`.
pub fn list_path(user_id: &str) -> String {
    format!("/_tidings/client/v1/presence/list/{}", encode_component(user_id))
}

/// `/_tidings/client/v1/presence/requests/{userId}`: answer `watcher`'s request.
pub fn answer_path(watcher: &str) -> String {
    format!("{REQUESTS}/{}", encode_component(watcher))
}
