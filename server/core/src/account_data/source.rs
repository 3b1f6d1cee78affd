//! Account data in `/sync`: global entries under the top-level `account_data`, per
//! room entries under `rooms.join.{roomId}.account_data`, each as `{"type",
//! "content"}` when it changed in the range (all of them in an initial sync); room
//! entries only for rooms the user is joined to. An
//! initial sync of a user who never edited push rules carries the default
//! `m.push_rules`, since clients read their rules from there.

use std::sync::Arc;

use ruma::serde::Raw;
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};

use super::service::{AccountDataService, PUSH_RULES};
use crate::error::{Error, Result};
use crate::rooms::RoomService;
use crate::sync::{BoxFuture, Source, SyncRange, SyncResponse};

/// Account data as a `/sync` source; room entries show only for rooms the user is
/// joined to (the rooms service knows which).
#[derive(Debug)]
pub struct AccountDataSource(pub Arc<AccountDataService>, pub Arc<RoomService>);

fn raw<T>(kind: &str, content: &Value) -> Result<Raw<T>> {
    let event = json!({ "type": kind, "content": content });
    let value = serde_json::value::to_raw_value(&event).map_err(Error::internal)?;
    Ok(Raw::from_json(value))
}

impl Source for AccountDataSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if range.since.is_some_and(|since| since >= range.upto) {
                return Ok(());
            }
            let rows = self.0.changed(user, range.since, range.upto).await?;
            let mut push_rules_seen = false;
            let joined = self.1.joined_rooms(user);
            for row in rows {
                let content: Value = serde_json::from_str(&row.content).map_err(Error::internal)?;
                if row.room_id.is_empty() {
                    push_rules_seen |= row.kind == PUSH_RULES;
                    out.account_data.events.push(raw(&row.kind, &content)?);
                    continue;
                }
                let Ok(room_id) = OwnedRoomId::try_from(row.room_id.as_str()) else { continue };
                if !joined.contains(&room_id) {
                    continue;
                }
                out.rooms.join.entry(room_id).or_default().account_data.events.push(raw(&row.kind, &content)?);
            }
            if range.is_initial() && !push_rules_seen {
                let rules = crate::push_rules::default_rules(user);
                out.account_data.events.push(raw(PUSH_RULES, &json!({ "global": rules }))?);
            }
            Ok(())
        })
    }
}
