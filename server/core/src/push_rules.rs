//! Push rules (`/pushrules/...`): the spec's default rule set (ruma's
//! [`Ruleset::server_default`]) until the user edits it, then the edited set, kept as
//! the global account data `m.push_rules` (`{"global": ruleset}`), so `/sync` carries
//! every edit the way clients expect.

use std::sync::Arc;

use ruma::push::{
    Action, NewConditionalPushRule, NewPatternedPushRule, NewPushRule, NewSimplePushRule, PushCondition, RuleKind,
    Ruleset,
};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::Value;

use crate::account_data::{AccountDataService, PUSH_RULES};
use crate::error::{Error, ErrorKind, Result};

/// The rule set of a user who never edited it.
pub fn default_rules(user: &UserId) -> Ruleset {
    Ruleset::server_default(user)
}

/// A rule's kind from its path segment; `M_INVALID_PARAM` for an unknown one.
pub fn parse_kind(raw: &str) -> Result<RuleKind> {
    match raw {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        other => Err(Error::invalid_param(format!("'{other}' is not a push rule kind"))),
    }
}

/// Where a new rule goes: after or before another of its kind.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `after`: the rule it follows.
    pub after: Option<String>,
    /// `before`: the rule it precedes.
    pub before: Option<String>,
}

/// The body of `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(Debug, Deserialize)]
struct RuleBody {
    actions: Vec<Action>,
    #[serde(default)]
    conditions: Vec<PushCondition>,
    pattern: Option<String>,
}

fn not_found(kind: &str, rule_id: &str) -> Error {
    Error::not_found(format!("no push rule {kind}/{rule_id}"))
}

/// Every user's push rules.
#[derive(Debug)]
pub struct PushRuleService {
    account_data: Arc<AccountDataService>,
}

impl PushRuleService {
    /// Push rules kept in `account_data`.
    pub fn new(account_data: Arc<AccountDataService>) -> Self {
        Self { account_data }
    }

    /// `user`'s rule set: the edited one, else the default.
    pub async fn ruleset(&self, user: &UserId) -> Result<Ruleset> {
        match self.account_data.get(user, None, PUSH_RULES).await? {
            Some(mut content) => serde_json::from_value(content["global"].take()).map_err(Error::internal),
            None => Ok(default_rules(user)),
        }
    }

    async fn save(&self, user: &UserId, rules: &Ruleset) -> Result<()> {
        let content = serde_json::json!({ "global": rules });
        self.account_data.set(user, None, PUSH_RULES, &content).await
    }

    /// The rules of one kind, as JSON, in priority order.
    pub async fn of_kind(&self, user: &UserId, kind: &str) -> Result<Value> {
        parse_kind(kind)?;
        let rules = serde_json::to_value(self.ruleset(user).await?).map_err(Error::internal)?;
        Ok(rules.get(kind).cloned().unwrap_or(Value::Array(Vec::new())))
    }

    /// One rule, as JSON; `M_NOT_FOUND` if there is none.
    pub async fn rule(&self, user: &UserId, kind: &str, rule_id: &str) -> Result<Value> {
        let rules = self.of_kind(user, kind).await?;
        rules
            .as_array()
            .and_then(|a| a.iter().find(|r| r["rule_id"] == rule_id))
            .cloned()
            .ok_or_else(|| not_found(kind, rule_id))
    }

    /// Add or replace a user-defined rule from a PUT body.
    pub async fn put(&self, user: &UserId, kind: &str, rule_id: &str, body: Value, at: Placement) -> Result<()> {
        let body: RuleBody =
            serde_json::from_value(body).map_err(|e| Error::new(ErrorKind::BadJson, format!("bad push rule: {e}")))?;
        let id = rule_id.to_owned();
        let rule = match parse_kind(kind)? {
            RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(id, body.conditions, body.actions)),
            RuleKind::Underride => {
                NewPushRule::Underride(NewConditionalPushRule::new(id, body.conditions, body.actions))
            }
            RuleKind::Content => {
                let pattern = body
                    .pattern
                    .ok_or_else(|| Error::new(ErrorKind::MissingParam, "a content rule needs a pattern"))?;
                NewPushRule::Content(NewPatternedPushRule::new(id, pattern, body.actions))
            }
            RuleKind::Room => {
                let room =
                    OwnedRoomId::try_from(id).map_err(|_| Error::invalid_param("a room rule's ID is the room's ID"))?;
                NewPushRule::Room(NewSimplePushRule::new(room, body.actions))
            }
            RuleKind::Sender => {
                let sender = OwnedUserId::try_from(id)
                    .map_err(|_| Error::invalid_param("a sender rule's ID is the sender's user ID"))?;
                NewPushRule::Sender(NewSimplePushRule::new(sender, body.actions))
            }
            _ => return Err(Error::invalid_param(format!("'{kind}' is not a push rule kind"))),
        };
        let mut rules = self.ruleset(user).await?;
        rules
            .insert(rule, at.after.as_deref(), at.before.as_deref())
            .map_err(|e| Error::invalid_param(format!("cannot add push rule {kind}/{rule_id}: {e}")))?;
        self.save(user, &rules).await
    }

    /// Delete a user-defined rule.
    pub async fn delete(&self, user: &UserId, kind: &str, rule_id: &str) -> Result<()> {
        let k = parse_kind(kind)?;
        let mut rules = self.ruleset(user).await?;
        if rules.get(k.clone(), rule_id).is_none() {
            return Err(not_found(kind, rule_id));
        }
        rules
            .remove(k, rule_id)
            .map_err(|e| Error::forbidden(format!("cannot delete push rule {kind}/{rule_id}: {e}")))?;
        self.save(user, &rules).await
    }

    /// Turn a rule on or off.
    pub async fn set_enabled(&self, user: &UserId, kind: &str, rule_id: &str, enabled: bool) -> Result<()> {
        let k = parse_kind(kind)?;
        let mut rules = self.ruleset(user).await?;
        rules.set_enabled(k, rule_id, enabled).map_err(|_| not_found(kind, rule_id))?;
        self.save(user, &rules).await
    }

    /// Replace a rule's actions.
    pub async fn set_actions(&self, user: &UserId, kind: &str, rule_id: &str, actions: Value) -> Result<()> {
        let k = parse_kind(kind)?;
        let actions: Vec<Action> =
            serde_json::from_value(actions).map_err(|e| Error::new(ErrorKind::BadJson, format!("bad actions: {e}")))?;
        let mut rules = self.ruleset(user).await?;
        rules.set_actions(k, rule_id, actions).map_err(|_| not_found(kind, rule_id))?;
        self.save(user, &rules).await
    }
}
