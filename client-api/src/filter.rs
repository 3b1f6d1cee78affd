//! `POST /_matrix/client/v3/user/{userId}/filter` and
//! `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`: sync filters, stored per
//! user as ruma's `FilterDefinition`. Only the owner may create or read them.

use axum::Json;
use axum::extract::State;
use ruma::api::client::filter::FilterDefinition;
use serde_json::{Value, json};
use tidings_core::{Core, Error};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, Segments, UserPath};

fn own(device_user: &ruma::UserId, path_user: &ruma::UserId) -> Result<(), Error> {
    if device_user != path_user {
        return Err(Error::forbidden("you may only use your own filters"));
    }
    Ok(())
}

/// Store a filter; `{"filter_id"}`.
pub async fn post_filter(
    State(core): State<Core>,
    Authed(device): Authed,
    UserPath(user): UserPath,
    JsonBody(filter): JsonBody<FilterDefinition>,
) -> ApiResult<Json<Value>> {
    own(&device.user_id, &user)?;
    let filter_id = core.filters.create(&user, &filter).await?;
    Ok(Json(json!({ "filter_id": filter_id })))
}

/// A stored filter.
pub async fn get_filter(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((user, filter_id)): Segments<(String, String)>,
) -> ApiResult<Json<FilterDefinition>> {
    let user = tidings_core::ids::parse_user_id(&user)?;
    own(&device.user_id, &user)?;
    Ok(Json(core.filters.stored(&user, &filter_id).await?))
}
