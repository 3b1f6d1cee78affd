//! The Matrix client-server API of Tidings (`/_matrix/client`) and its extensions
//! (`/_tidings/client/v1`). Handlers are thin: extract, check, one call into
//! `tidings-core`. Errors become Matrix error bodies in [`error`] only.

pub mod account;
pub mod error;
pub mod extract;
pub mod feeds;
pub mod presence;
pub mod sync;
pub mod versions;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{delete, get, post, put};
use tidings_core::Core;

/// Whether anyone may register an account over the API.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationPolicy {
    /// `registration = "open"`.
    pub open: bool,
}

/// What the client API's handlers need.
#[derive(Debug, Clone)]
pub struct ClientState {
    /// Core services.
    pub core: Core,
    /// Registration policy.
    pub registration: RegistrationPolicy,
}

impl FromRef<ClientState> for Core {
    fn from_ref(state: &ClientState) -> Core {
        state.core.clone()
    }
}

impl FromRef<ClientState> for RegistrationPolicy {
    fn from_ref(state: &ClientState) -> RegistrationPolicy {
        state.registration
    }
}

/// The Matrix endpoints, relative to `/_matrix/client/{v3,r0}`.
fn matrix_routes() -> Router<ClientState> {
    Router::new()
        .route("/login", get(account::login::get_login).post(account::login::post_login))
        .route("/logout", post(account::logout::post_logout))
        .route("/logout/all", post(account::logout::post_logout_all))
        .route("/register", post(account::register::post_register))
        .route("/register/available", get(account::register::get_available))
        .route("/account/whoami", get(account::whoami::get_whoami))
        .route("/presence/{user_id}/status", get(presence::status::get_status).put(presence::status::put_status))
        .route("/sync", get(sync::get_sync))
        .route("/profile/{user_id}", get(account::profile::get_profile))
        .route(
            "/profile/{user_id}/displayname",
            get(account::profile::get_displayname).put(account::profile::put_displayname),
        )
}

/// The Tidings extension endpoints, relative to `/_tidings/client/v1`.
fn tidings_routes() -> Router<ClientState> {
    Router::new()
        .route("/presence/list/{user_id}", get(presence::list::get_list).post(presence::list::post_list))
        .route("/presence/requests", get(presence::requests::get_requests))
        .route("/presence/requests/{user_id}", post(presence::requests::post_answer))
        .route("/presence/devices/{device_id}", put(presence::devices::put_device))
        .route("/presence/poll", put(presence::poll::put_poll))
        .route("/feeds", get(feeds::list::get_feeds).post(feeds::subscribe::post_feed))
        .route("/feeds/opml", get(feeds::opml::get_opml).post(feeds::opml::post_opml))
        .route("/feeds/{feed_id}", delete(feeds::unsubscribe::delete_feed))
        .route("/feeds/{feed_id}/items", get(feeds::items::get_items))
}

/// Every client-facing route, with its state applied.
pub fn router(state: ClientState) -> Router {
    Router::new()
        .route("/_matrix/client/versions", get(versions::get_versions))
        .nest("/_matrix/client/v3", matrix_routes())
        .nest("/_matrix/client/r0", matrix_routes())
        .nest("/_tidings/client/v1", tidings_routes())
        .route("/_tidings/mirror/{*url}", get(feeds::mirror::get_mirror))
        .with_state(state)
}
