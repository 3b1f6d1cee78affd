//! What clients keep on the server between starts: sync filters and account data
//! (global and per room; push rules are the global account data `m.push_rules`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// One account-data entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataRow {
    /// The room, or `""` for global account data.
    pub room_id: String,
    /// The event type.
    pub kind: String,
    /// The content, JSON.
    pub content: String,
    /// Where it last changed.
    pub stream_pos: u64,
}

/// Filters and account data.
pub trait ClientStateStore {
    /// The ID of `definition` for `user`: an identical one's, else a new one, if the
    /// user has fewer than `cap` (else `None`).
    fn filter_put(&self, user: &str, definition: &str, cap: u64) -> Result<Option<u64>>;

    /// A stored filter's definition.
    fn filter_get(&self, user: &str, filter_id: u64) -> Result<Option<String>>;

    /// Set one account-data entry (room `""`: global).
    fn account_data_put(&self, user: &str, room: &str, kind: &str, content: &str, pos: u64) -> Result<()>;

    /// One account-data entry's content.
    fn account_data_get(&self, user: &str, room: &str, kind: &str) -> Result<Option<String>>;

    /// How many account-data entries `user` has.
    fn account_data_count(&self, user: &str) -> Result<u64>;

    /// Whether `user` has the entry already.
    fn account_data_exists(&self, user: &str, room: &str, kind: &str) -> Result<bool>;

    /// The entries of `user` that changed in `(since, upto]` (every one at or below
    /// `upto` when `since` is `None`).
    fn account_data_changed(&self, user: &str, since: Option<u64>, upto: u64) -> Result<Vec<AccountDataRow>>;

    /// The highest stream position stored by filters and account data.
    fn client_state_max_stream_pos(&self) -> Result<u64>;

    /// The devices of `user`: ID and display name, by ID.
    fn devices_of(&self, user: &str) -> Result<Vec<(String, Option<String>)>>;

    /// Rename a device; `false` if it does not exist.
    fn device_rename(&self, user: &str, device: &str, name: Option<&str>) -> Result<bool>;

    /// A user's avatar URL: `None` if there is no such user.
    fn avatar_url_get(&self, user: &str) -> Result<Option<Option<String>>>;

    /// Set a user's avatar URL.
    fn avatar_url_set(&self, user: &str, url: Option<&str>) -> Result<()>;
}

impl ClientStateStore for Connection {
    fn filter_put(&self, user: &str, definition: &str, cap: u64) -> Result<Option<u64>> {
        let same: Option<i64> = self
            .query_row(
                "SELECT filter_id FROM filters WHERE user_id = ?1 AND definition = ?2",
                params![user, definition],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = same {
            return Ok(Some(id as u64));
        }
        let (count, max): (i64, i64) = self.query_row(
            "SELECT COUNT(*), COALESCE(MAX(filter_id), -1) FROM filters WHERE user_id = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if count as u64 >= cap {
            return Ok(None);
        }
        let id = max + 1;
        self.execute(
            "INSERT INTO filters (user_id, filter_id, definition) VALUES (?1, ?2, ?3)",
            params![user, id, definition],
        )?;
        Ok(Some(id as u64))
    }

    fn filter_get(&self, user: &str, filter_id: u64) -> Result<Option<String>> {
        Ok(self
            .query_row(
                "SELECT definition FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                params![user, filter_id as i64],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn account_data_put(&self, user: &str, room: &str, kind: &str, content: &str, pos: u64) -> Result<()> {
        self.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
            params![user, room, kind, content, pos as i64],
        )?;
        Ok(())
    }

    fn account_data_get(&self, user: &str, room: &str, kind: &str) -> Result<Option<String>> {
        Ok(self
            .query_row(
                "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
                params![user, room, kind],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn account_data_count(&self, user: &str) -> Result<u64> {
        let n: i64 = self.query_row("SELECT COUNT(*) FROM account_data WHERE user_id = ?1", [user], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn account_data_exists(&self, user: &str, room: &str, kind: &str) -> Result<bool> {
        Ok(self.account_data_get(user, room, kind)?.is_some())
    }

    fn account_data_changed(&self, user: &str, since: Option<u64>, upto: u64) -> Result<Vec<AccountDataRow>> {
        let since = since.map_or(-1, |s| s as i64);
        let mut stmt = self.prepare_cached(
            "SELECT room_id, type, content, stream_pos FROM account_data
             WHERE user_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3 ORDER BY stream_pos",
        )?;
        let rows = stmt.query_map(params![user, since, upto as i64], |r| {
            Ok(AccountDataRow {
                room_id: r.get(0)?,
                kind: r.get(1)?,
                content: r.get(2)?,
                stream_pos: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn client_state_max_stream_pos(&self) -> Result<u64> {
        let n: i64 = self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM account_data", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn devices_of(&self, user: &str) -> Result<Vec<(String, Option<String>)>> {
        let mut stmt =
            self.prepare_cached("SELECT device_id, display_name FROM devices WHERE user_id = ?1 ORDER BY device_id")?;
        let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn device_rename(&self, user: &str, device: &str, name: Option<&str>) -> Result<bool> {
        let n = self.execute(
            "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
            params![user, device, name],
        )?;
        Ok(n == 1)
    }

    fn avatar_url_get(&self, user: &str) -> Result<Option<Option<String>>> {
        Ok(self.query_row("SELECT avatar_url FROM users WHERE user_id = ?1", [user], |r| r.get(0)).optional()?)
    }

    fn avatar_url_set(&self, user: &str, url: Option<&str>) -> Result<()> {
        self.execute("UPDATE users SET avatar_url = ?2 WHERE user_id = ?1", params![user, url])?;
        Ok(())
    }
}
