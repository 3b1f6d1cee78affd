//! The admin API, `/_tidings/admin/v1`: for admins' access tokens only (and, for
//! the metrics endpoint, the optional `metrics_token`).

mod feeds;
mod metrics;
mod peers;
mod server;
mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::get;
use tidings_client_api::error::ApiError;
use tidings_client_api::extract::Authed;
use tidings_core::{Core, Error};
use tidings_federation::Federation;

/// What the admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Core services.
    pub core: Core,
    /// When the server started.
    pub started: Instant,
    /// The scraper's token, if configured.
    pub metrics_token: Option<Arc<str>>,
    /// Federation with the configured peers.
    pub federation: Arc<Federation>,
}

impl FromRef<AdminState> for Core {
    fn from_ref(state: &AdminState) -> Core {
        state.core.clone()
    }
}

/// Proof that the caller is an admin; anyone else gets 403 `M_FORBIDDEN`.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Self::Rejection> {
        let Authed(device) = Authed::from_request_parts(parts, state).await?;
        if !device.admin {
            return Err(Error::forbidden("this endpoint is for server admins").into());
        }
        Ok(Admin)
    }
}

/// The admin routes, state applied.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/_tidings/admin/v1/server", get(server::get_server))
        .route("/_tidings/admin/v1/users", get(users::get_users))
        .route("/_tidings/admin/v1/federation/peers", get(peers::get_peers))
        .route("/_tidings/admin/v1/metrics", get(metrics::get_metrics))
        .route("/_tidings/admin/v1/feeds", get(feeds::get_feeds))
        .with_state(state)
}
