//! `GET /_tidings/admin/v1/users`: every account with its admin flag and device count.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tidings_client_api::error::ApiResult;

use super::{Admin, AdminState};

/// Every user.
pub async fn get_users(State(state): State<AdminState>, _admin: Admin) -> ApiResult<Json<Value>> {
    let users: Vec<Value> = state
        .core
        .accounts
        .list()
        .await?
        .into_iter()
        .map(|(user_id, admin, devices)| json!({ "user_id": user_id, "admin": admin, "devices": devices }))
        .collect();
    Ok(Json(json!({ "users": users })))
}
