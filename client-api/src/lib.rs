//! The Matrix client-server API of Tidings (`/_matrix/client`) and its extensions
//! (`/_tidings/client/v1`). Handlers are thin: extract, check, one call into
//! `tidings-core`. Errors become Matrix error bodies in [`error`] only.

pub mod account;
pub mod account_data;
pub mod capabilities;
pub mod devices;
pub mod error;
pub mod extract;
pub mod feeds;
pub mod filter;
pub mod keys;
pub mod media;
pub mod presence;
pub mod push_rules;
pub mod rooms;
pub mod sync;
pub mod to_device;
pub mod uia;
pub mod versions;
pub mod well_known;

pub use well_known::WellKnown;

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
    /// What `/.well-known/matrix/client` announces.
    pub well_known: WellKnown,
}

impl FromRef<ClientState> for WellKnown {
    fn from_ref(state: &ClientState) -> WellKnown {
        state.well_known.clone()
    }
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
        .merge(client_state_routes())
        .merge(room_routes())
}

/// What clients call at start-up and keep on the server: filters, push rules,
/// capabilities, avatars, devices, account data, end-to-end keys, to-device.
fn client_state_routes() -> Router<ClientState> {
    use push_rules as pr;
    Router::new()
        .route("/user/{user_id}/filter", post(filter::post_filter))
        .route("/user/{user_id}/filter/{filter_id}", get(filter::get_filter))
        .route("/pushrules/", get(pr::get_all))
        .route("/pushrules", get(pr::get_all))
        .route("/pushrules/{scope}/", get(pr::get_scope))
        .route("/pushrules/{scope}", get(pr::get_scope))
        .route("/pushrules/{scope}/{kind}/", get(pr::get_kind))
        .route("/pushrules/{scope}/{kind}/{rule_id}", get(pr::get_rule).put(pr::put_rule).delete(pr::delete_rule))
        .route("/pushrules/{scope}/{kind}/{rule_id}/enabled", get(pr::get_enabled).put(pr::put_enabled))
        .route("/pushrules/{scope}/{kind}/{rule_id}/actions", get(pr::get_actions).put(pr::put_actions))
        .route("/capabilities", get(capabilities::get_capabilities))
        .route(
            "/profile/{user_id}/avatar_url",
            get(account::profile::get_avatar_url).put(account::profile::put_avatar_url),
        )
        .route("/devices", get(devices::get_devices))
        .route("/devices/{device_id}", get(devices::get_device).put(devices::put_device).delete(devices::delete_device))
        .route("/delete_devices", post(devices::post_delete_devices))
        .route("/user/{user_id}/account_data/{kind}", get(account_data::get_global).put(account_data::put_global))
        .route(
            "/user/{user_id}/rooms/{room_id}/account_data/{kind}",
            get(account_data::get_room).put(account_data::put_room),
        )
        .route("/keys/upload", post(keys::post_upload))
        .route("/keys/query", post(keys::post_query))
        .route("/keys/claim", post(keys::post_claim))
        .route("/keys/changes", get(keys::get_changes))
        .route("/keys/device_signing/upload", post(keys::post_device_signing_upload))
        .route("/keys/signatures/upload", post(keys::post_signatures_upload))
        .route("/sendToDevice/{kind}/{txn_id}", put(to_device::put_send_to_device))
}

/// Media, relative to `/_matrix/client/v1/media` (authenticated) or
/// `/_matrix/media/v3` (legacy: downloads and thumbnails need no token).
fn media_routes(authenticated: bool) -> Router<ClientState> {
    use media::download as d;
    let routes = Router::new()
        .route("/upload", post(media::upload::post_upload))
        .route("/config", get(media::config::get_config));
    if authenticated {
        routes
            .route("/download/{server_name}/{media_id}", get(d::get_download))
            .route("/download/{server_name}/{media_id}/{file_name}", get(d::get_download_named))
            .route("/thumbnail/{server_name}/{media_id}", get(d::get_thumbnail))
    } else {
        routes
            .route("/download/{server_name}/{media_id}", get(d::get_legacy_download))
            .route("/download/{server_name}/{media_id}/{file_name}", get(d::get_legacy_download_named))
            .route("/thumbnail/{server_name}/{media_id}", get(d::get_legacy_thumbnail))
    }
}

/// Room endpoints, relative to `/_matrix/client/{v3,r0}`.
fn room_routes() -> Router<ClientState> {
    use rooms::{create, directory, ephemeral, members, membership, messages, send, state};
    Router::new()
        .route("/createRoom", post(create::post_create_room))
        .route("/join/{room_id_or_alias}", post(membership::post_join))
        .route("/rooms/{room_id}/join", post(membership::post_join))
        .route("/rooms/{room_id}/leave", post(membership::post_leave))
        .route("/rooms/{room_id}/forget", post(membership::post_forget))
        .route("/rooms/{room_id}/invite", post(membership::post_invite))
        .route("/rooms/{room_id}/kick", post(membership::post_kick))
        .route("/rooms/{room_id}/ban", post(membership::post_ban))
        .route("/rooms/{room_id}/unban", post(membership::post_unban))
        .route("/rooms/{room_id}/send/{event_type}/{txn_id}", put(send::put_send))
        .route("/rooms/{room_id}/redact/{event_id}/{txn_id}", put(send::put_redact))
        .route("/rooms/{room_id}/state", get(state::get_state))
        .route(
            "/rooms/{room_id}/state/{event_type}",
            get(state::get_state_event_empty).put(state::put_state_event_empty),
        )
        .route(
            "/rooms/{room_id}/state/{event_type}/",
            get(state::get_state_event_empty).put(state::put_state_event_empty),
        )
        .route(
            "/rooms/{room_id}/state/{event_type}/{state_key}",
            get(state::get_state_event).put(state::put_state_event),
        )
        .route("/rooms/{room_id}/messages", get(messages::get_messages))
        .route("/rooms/{room_id}/event/{event_id}", get(messages::get_event))
        .route("/rooms/{room_id}/context/{event_id}", get(messages::get_context))
        .route("/rooms/{room_id}/members", get(members::get_members))
        .route("/rooms/{room_id}/joined_members", get(members::get_joined_members))
        .route("/joined_rooms", get(members::get_joined_rooms))
        .route("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post(ephemeral::post_receipt))
        .route("/rooms/{room_id}/read_markers", post(ephemeral::post_read_markers))
        .route("/rooms/{room_id}/typing/{user_id}", put(ephemeral::put_typing))
        .route(
            "/directory/room/{alias}",
            get(directory::get_alias).put(directory::put_alias).delete(directory::delete_alias),
        )
        .route("/directory/list/room/{room_id}", get(directory::get_listing).put(directory::put_listing))
        .route("/publicRooms", get(directory::get_public_rooms).post(directory::post_public_rooms))
        .merge(relation_routes())
}

/// Relations and threads: on `/v1` in the spec, and answered on `/v3` too.
fn relation_routes() -> Router<ClientState> {
    use rooms::relations;
    Router::new()
        .route("/rooms/{room_id}/relations/{event_id}", get(relations::get_relations))
        .route("/rooms/{room_id}/relations/{event_id}/{rel_type}", get(relations::get_relations_by_type))
        .route(
            "/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}",
            get(relations::get_relations_by_type_and_event),
        )
        .route("/rooms/{room_id}/threads", get(relations::get_threads))
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
        .nest("/_matrix/client/v1", relation_routes())
        .nest("/_tidings/client/v1", tidings_routes())
        .route("/_tidings/mirror/{*url}", get(feeds::mirror::get_mirror))
        .nest("/_matrix/client/v1/media", media_routes(true))
        .nest("/_matrix/media/v3", media_routes(false))
        .nest("/_matrix/media/r0", media_routes(false))
        .route("/.well-known/matrix/client", get(well_known::get_well_known))
        .with_state(state)
}
