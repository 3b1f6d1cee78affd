//! Reading and writing account data: every write takes a stream position in the
//! unit that stores it and wakes the owner's syncs once it committed.

use std::sync::Arc;

use ruma::{RoomId, UserId};
use serde_json::Value;

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::client_state::AccountDataRow;
use crate::storage::{Db, Unit};
use crate::stream::{Marks, Notifier, Positions};

/// The account-data type that holds push rules.
pub const PUSH_RULES: &str = "m.push_rules";
/// Types a client may not set through the account-data endpoints (the spec: 405).
const SERVER_MANAGED: &[&str] = &[PUSH_RULES, "m.fully_read"];
/// The longest type name accepted.
const MAX_TYPE_BYTES: usize = 255;

/// Account data of every user.
#[derive(Debug)]
pub struct AccountDataService {
    db: Db,
    positions: Arc<Positions>,
    notifier: Arc<Notifier>,
    /// Per user: the newest position of an entry written.
    marks: Arc<Marks>,
    max_entries: u64,
    max_bytes: usize,
}

impl AccountDataService {
    /// The service over `db`, bounded by `config`.
    pub fn new(db: Db, positions: Arc<Positions>, notifier: Arc<Notifier>, config: &ClientConfig) -> Arc<Self> {
        let marks = Arc::new(Marks::new(positions.visible()));
        Arc::new(Self {
            db,
            positions,
            notifier,
            marks,
            max_entries: config.max_account_data_per_user,
            max_bytes: config.max_account_data_bytes,
        })
    }

    /// Set `kind` for `user` (in `room`, if given) as a client asks: the types the
    /// server manages are refused.
    pub async fn put(&self, user: &UserId, room: Option<&RoomId>, kind: &str, content: Value) -> Result<()> {
        if SERVER_MANAGED.contains(&kind) {
            return Err(Error::new(
                ErrorKind::Unrecognized { status: 405 },
                format!("{kind} cannot be set through account data; use its own endpoint"),
            ));
        }
        if kind.is_empty() || kind.len() > MAX_TYPE_BYTES {
            return Err(Error::invalid_param(format!("an account-data type is 1 to {MAX_TYPE_BYTES} bytes")));
        }
        if !content.is_object() {
            return Err(Error::new(ErrorKind::BadJson, "account data content must be a JSON object"));
        }
        self.set(user, room, kind, &content).await
    }

    /// Set `kind` for `user` (in `room`, if given), whatever the type: for the
    /// services that keep their state as account data (push rules).
    pub async fn set(&self, user: &UserId, room: Option<&RoomId>, kind: &str, content: &Value) -> Result<()> {
        let json = serde_json::to_string(content).map_err(Error::internal)?;
        if json.len() > self.max_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("an account-data entry is at most {} bytes (client.max_account_data_bytes)", self.max_bytes),
            ));
        }
        let mut unit = Unit::new();
        let pos = self.positions.reserve_in(&mut unit);
        let (user_id, room_id, kind, cap) =
            (user.to_string(), room.map(|r| r.to_string()).unwrap_or_default(), kind.to_owned(), self.max_entries);
        let marks = Arc::clone(&self.marks);
        unit.write(move |s| {
            if !s.account_data_exists(&user_id, &room_id, &kind)? && s.account_data_count(&user_id)? >= cap {
                return Err(Error::new(
                    ErrorKind::LimitExceeded { retry_after_ms: 0 },
                    format!("one user keeps at most {cap} account-data entries (client.max_account_data_per_user)"),
                ));
            }
            marks.raise(&user_id, pos);
            s.account_data_put(&user_id, &room_id, &kind, &json, pos)
        });
        let (notifier, owner) = (Arc::clone(&self.notifier), user.to_owned());
        unit.after(move |ok| {
            if ok {
                notifier.bump(&owner, pos);
            }
        });
        self.db.submit_unit(unit).wait().await
    }

    /// The content of `kind` for `user` (in `room`, if given), if set.
    pub async fn get(&self, user: &UserId, room: Option<&RoomId>, kind: &str) -> Result<Option<Value>> {
        let (user_id, room_id, kind) =
            (user.to_string(), room.map(|r| r.to_string()).unwrap_or_default(), kind.to_owned());
        let json = self.db.read(move |s| s.account_data_get(&user_id, &room_id, &kind)).await?;
        json.map(|j| serde_json::from_str(&j).map_err(Error::internal)).transpose()
    }

    /// The entries of `user` that changed in `(since, upto]` (all, for `None`).
    pub async fn changed(&self, user: &UserId, since: Option<u64>, upto: u64) -> Result<Vec<AccountDataRow>> {
        let user_id = user.to_string();
        if since.is_some_and(|since| !self.marks.changed_after(&user_id, since)) {
            return Ok(Vec::new());
        }
        self.db.read(move |s| s.account_data_changed(&user_id, since, upto)).await
    }
}
