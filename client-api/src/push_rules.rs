//! `/_matrix/client/v3/pushrules/...`: the caller's push rules. `GET /pushrules/`
//! (all), `GET /pushrules/global/` (the scope), `GET /pushrules/global/{kind}/`,
//! `GET|PUT|DELETE /pushrules/global/{kind}/{ruleId}` (PUT with `before`/`after`),
//! `GET|PUT .../{ruleId}/enabled` and `GET|PUT .../{ruleId}/actions`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::accounts::Device;
use tidings_core::push_rules::Placement;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, JsonBody, QueryMap, Segments};

/// `{scope}/{kind}/{ruleId}` of a rule's path, the scope checked to be `global`.
#[derive(Debug)]
pub struct RulePath {
    kind: String,
    rule_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RulePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Segments((scope, kind, rule_id)) =
            Segments::<(String, String, String)>::from_request_parts(parts, state).await?;
        global_only(&scope)?;
        Ok(RulePath { kind, rule_id })
    }
}

/// One field of a rule (`enabled`, `actions`) as its endpoint answers it.
async fn rule_field(core: &Core, device: &Device, at: &RulePath, field: &str) -> ApiResult<Json<Value>> {
    let rule = core.push_rules.rule(&device.user_id, &at.kind, &at.rule_id).await?;
    Ok(Json(json!({ field: rule[field] })))
}

fn global_only(scope: &str) -> Result<(), Error> {
    if scope != "global" {
        return Err(Error::invalid_param(format!("unknown push rule scope '{scope}'; only 'global' exists")));
    }
    Ok(())
}

/// Every rule: `{"global": ruleset}`.
pub async fn get_all(State(core): State<Core>, Authed(device): Authed) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "global": core.push_rules.ruleset(&device.user_id).await? })))
}

/// The rules of a scope.
pub async fn get_scope(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments(scope): Segments<String>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    Ok(Json(serde_json::to_value(core.push_rules.ruleset(&device.user_id).await?).map_err(Error::internal)?))
}

/// The rules of one kind.
pub async fn get_kind(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind)): Segments<(String, String)>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    Ok(Json(core.push_rules.of_kind(&device.user_id, &kind).await?))
}

/// One rule.
pub async fn get_rule(State(core): State<Core>, Authed(device): Authed, at: RulePath) -> ApiResult<Json<Value>> {
    Ok(Json(core.push_rules.rule(&device.user_id, &at.kind, &at.rule_id).await?))
}

/// Add or replace a user-defined rule.
pub async fn put_rule(
    State(core): State<Core>,
    Authed(device): Authed,
    at: RulePath,
    QueryMap(query): QueryMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let place = Placement { after: query.get("after").cloned(), before: query.get("before").cloned() };
    core.push_rules.put(&device.user_id, &at.kind, &at.rule_id, body, place).await?;
    Ok(Json(json!({})))
}

/// Delete a user-defined rule.
pub async fn delete_rule(State(core): State<Core>, Authed(device): Authed, at: RulePath) -> ApiResult<Json<Value>> {
    core.push_rules.delete(&device.user_id, &at.kind, &at.rule_id).await?;
    Ok(Json(json!({})))
}

/// Whether a rule is on.
pub async fn get_enabled(State(core): State<Core>, Authed(device): Authed, at: RulePath) -> ApiResult<Json<Value>> {
    rule_field(&core, &device, &at, "enabled").await
}

/// The body of `PUT .../enabled`.
#[derive(Debug, Deserialize)]
pub struct EnabledBody {
    enabled: bool,
}

/// Turn a rule on or off.
pub async fn put_enabled(
    State(core): State<Core>,
    Authed(device): Authed,
    at: RulePath,
    JsonBody(body): JsonBody<EnabledBody>,
) -> ApiResult<Json<Value>> {
    core.push_rules.set_enabled(&device.user_id, &at.kind, &at.rule_id, body.enabled).await?;
    Ok(Json(json!({})))
}

/// A rule's actions.
pub async fn get_actions(State(core): State<Core>, Authed(device): Authed, at: RulePath) -> ApiResult<Json<Value>> {
    rule_field(&core, &device, &at, "actions").await
}

/// Replace a rule's actions.
pub async fn put_actions(
    State(core): State<Core>,
    Authed(device): Authed,
    at: RulePath,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let actions = body
        .get_mut("actions")
        .map(Value::take)
        .ok_or_else(|| Error::new(ErrorKind::MissingParam, "`actions` is required"))?;
    core.push_rules.set_actions(&device.user_id, &at.kind, &at.rule_id, actions).await?;
    Ok(Json(json!({})))
}
