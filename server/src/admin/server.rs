//! `GET /_tidings/admin/v1/server`: name, version, uptime and user count.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_client_api::error::ApiResult;

use super::{Admin, AdminState};

/// Facts about this server.
pub async fn get_server(State(state): State<AdminState>, _admin: Admin) -> ApiResult<Json<Value>> {
    let users = state.core.accounts.count().await?;
    Ok(Json(json!({
        "server_name": &*state.core.server_name,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_ms": state.started.elapsed().as_millis() as u64,
        "users": users,
    })))
}
