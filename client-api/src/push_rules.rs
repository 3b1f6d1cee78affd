//! `/_matrix/client/v3/pushrules/...`: the caller's push rules. `GET /pushrules/`
//! (all), `GET /pushrules/global/` (the scope), `GET /pushrules/global/{kind}/`,
//! `GET|PUT|DELETE /pushrules/global/{kind}/{ruleId}` (PUT with `before`/`after`),
//! `GET|PUT .../{ruleId}/enabled` and `GET|PUT .../{ruleId}/actions`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::push_rules::Placement;
use tidings_core::{Core, Error, ErrorKind};

use crate::error::ApiResult;
use crate::extract::{Authed, JsonBody, QueryMap, Segments};

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
pub async fn get_rule(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    Ok(Json(core.push_rules.rule(&device.user_id, &kind, &rule_id).await?))
}

/// Add or replace a user-defined rule.
pub async fn put_rule(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
    QueryMap(query): QueryMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    let at = Placement { after: query.get("after").cloned(), before: query.get("before").cloned() };
    core.push_rules.put(&device.user_id, &kind, &rule_id, body, at).await?;
    Ok(Json(json!({})))
}

/// Delete a user-defined rule.
pub async fn delete_rule(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    core.push_rules.delete(&device.user_id, &kind, &rule_id).await?;
    Ok(Json(json!({})))
}

/// Whether a rule is on.
pub async fn get_enabled(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    let rule = core.push_rules.rule(&device.user_id, &kind, &rule_id).await?;
    Ok(Json(json!({ "enabled": rule["enabled"] })))
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
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
    JsonBody(body): JsonBody<EnabledBody>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    core.push_rules.set_enabled(&device.user_id, &kind, &rule_id, body.enabled).await?;
    Ok(Json(json!({})))
}

/// A rule's actions.
pub async fn get_actions(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    let rule = core.push_rules.rule(&device.user_id, &kind, &rule_id).await?;
    Ok(Json(json!({ "actions": rule["actions"] })))
}

/// Replace a rule's actions.
pub async fn put_actions(
    State(core): State<Core>,
    Authed(device): Authed,
    Segments((scope, kind, rule_id)): Segments<(String, String, String)>,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    global_only(&scope)?;
    let actions = body
        .get_mut("actions")
        .map(Value::take)
        .ok_or_else(|| Error::new(ErrorKind::MissingParam, "`actions` is required"))?;
    core.push_rules.set_actions(&device.user_id, &kind, &rule_id, actions).await?;
    Ok(Json(json!({})))
}
