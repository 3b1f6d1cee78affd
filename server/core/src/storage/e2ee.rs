//! The server side of end-to-end encryption: device keys, one-time and fallback
//! keys, to-device messages and the log of device-list changes. Keys are kept as the
//! JSON the device uploaded (they are signed: the server never rewrites them).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// How many sendToDevice transaction IDs of one device are remembered: a retry
/// comes soon after its first try, so older ones need not be kept for ever.
pub const KEPT_TXNS_PER_DEVICE: i64 = 1000;

/// A to-device message waiting for its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceRow {
    /// Its stream position.
    pub stream_pos: u64,
    /// Who sent it.
    pub sender: String,
    /// The event type.
    pub kind: String,
    /// The content, JSON.
    pub content: String,
}

/// Keys and to-device messages.
pub trait E2eeStore {
    /// Set a device's signed device keys.
    fn device_keys_put(&self, user: &str, device: &str, keys: &str) -> Result<()>;

    /// The device keys of `user` (of one device, if given), by device ID.
    fn device_keys_get(&self, user: &str, device: Option<&str>) -> Result<Vec<(String, String)>>;

    /// Add a one-time key unless the device has one with that ID already.
    fn otk_add(&self, user: &str, device: &str, key_id: &str, algorithm: &str, key: &str) -> Result<()>;

    /// Unclaimed one-time keys of a device, per algorithm.
    fn otk_counts(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>>;

    /// Take (delete) one unclaimed one-time key of `algorithm`: its ID and JSON.
    fn otk_claim(&self, user: &str, device: &str, algorithm: &str) -> Result<Option<(String, String)>>;

    /// Set the fallback key of `algorithm` (unused again).
    fn fallback_put(&self, user: &str, device: &str, algorithm: &str, key_id: &str, key: &str) -> Result<()>;

    /// Hand out the fallback key of `algorithm` (it stays, marked used).
    fn fallback_claim(&self, user: &str, device: &str, algorithm: &str) -> Result<Option<(String, String)>>;

    /// The algorithms whose fallback key is not used yet.
    fn fallback_unused(&self, user: &str, device: &str) -> Result<Vec<String>>;

    /// Forget every key and waiting message of a device.
    fn e2ee_delete_device(&self, user: &str, device: &str) -> Result<()>;

    /// Record that `user`'s device list changed at `pos` (only the last change of
    /// each user is kept: a sync asks whether it lies in its range, and a later one
    /// is seen by the next sync).
    fn device_list_changed(&self, user: &str, pos: u64) -> Result<()>;

    /// The users whose device list changed in `(since, upto]`.
    fn device_lists_changed_between(&self, since: u64, upto: u64) -> Result<Vec<String>>;

    /// Queue a to-device message.
    fn to_device_put(&self, user: &str, device: &str, row: &ToDeviceRow) -> Result<()>;

    /// How many messages wait for a device.
    fn to_device_count(&self, user: &str, device: &str) -> Result<u64>;

    /// The messages waiting for a device at or below `upto`, oldest first.
    fn to_device_waiting(&self, user: &str, device: &str, upto: u64) -> Result<Vec<ToDeviceRow>>;

    /// Delete the messages a device acknowledged (at or below `upto`); how many.
    fn to_device_ack(&self, user: &str, device: &str, upto: u64) -> Result<u64>;

    /// Record a sendToDevice transaction; `false` if it was applied before. Only the
    /// newest [`KEPT_TXNS_PER_DEVICE`] of a device are remembered.
    fn to_device_txn_put(&self, user: &str, device: &str, txn_id: &str) -> Result<bool>;

    /// The highest stream position stored by these tables.
    fn e2ee_max_stream_pos(&self) -> Result<u64>;
}

impl E2eeStore for Connection {
    fn device_keys_put(&self, user: &str, device: &str, keys: &str) -> Result<()> {
        self.execute(
            "INSERT INTO e2ee_device_keys (user_id, device_id, keys) VALUES (?1, ?2, ?3)
             ON CONFLICT(user_id, device_id) DO UPDATE SET keys = excluded.keys",
            params![user, device, keys],
        )?;
        Ok(())
    }

    fn device_keys_get(&self, user: &str, device: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut stmt = self.prepare_cached(
            "SELECT device_id, keys FROM e2ee_device_keys WHERE user_id = ?1 AND (?2 IS NULL OR device_id = ?2)
             ORDER BY device_id",
        )?;
        let rows = stmt.query_map(params![user, device], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn otk_add(&self, user: &str, device: &str, key_id: &str, algorithm: &str, key: &str) -> Result<()> {
        self.execute(
            "INSERT OR IGNORE INTO e2ee_one_time_keys (user_id, device_id, key_id, algorithm, key)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, device, key_id, algorithm, key],
        )?;
        Ok(())
    }

    fn otk_counts(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.prepare_cached(
            "SELECT algorithm, COUNT(*) FROM e2ee_one_time_keys WHERE user_id = ?1 AND device_id = ?2
             GROUP BY algorithm ORDER BY algorithm",
        )?;
        let rows = stmt.query_map(params![user, device], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn otk_claim(&self, user: &str, device: &str, algorithm: &str) -> Result<Option<(String, String)>> {
        let found: Option<(String, String)> = self
            .query_row(
                "SELECT key_id, key FROM e2ee_one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                 ORDER BY key_id LIMIT 1",
                params![user, device, algorithm],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((key_id, _)) = &found {
            self.execute(
                "DELETE FROM e2ee_one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                params![user, device, key_id],
            )?;
        }
        Ok(found)
    }

    fn fallback_put(&self, user: &str, device: &str, algorithm: &str, key_id: &str, key: &str) -> Result<()> {
        self.execute(
            "INSERT INTO e2ee_fallback_keys (user_id, device_id, algorithm, key_id, key, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)
             ON CONFLICT(user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key = excluded.key,
             used = CASE WHEN e2ee_fallback_keys.key_id = excluded.key_id THEN e2ee_fallback_keys.used ELSE 0 END",
            params![user, device, algorithm, key_id, key],
        )?;
        Ok(())
    }

    fn fallback_claim(&self, user: &str, device: &str, algorithm: &str) -> Result<Option<(String, String)>> {
        let found: Option<(String, String)> = self
            .query_row(
                "SELECT key_id, key FROM e2ee_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                params![user, device, algorithm],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if found.is_some() {
            self.execute(
                "UPDATE e2ee_fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                params![user, device, algorithm],
            )?;
        }
        Ok(found)
    }

    fn fallback_unused(&self, user: &str, device: &str) -> Result<Vec<String>> {
        let mut stmt = self.prepare_cached(
            "SELECT algorithm FROM e2ee_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0
             ORDER BY algorithm",
        )?;
        let rows = stmt.query_map(params![user, device], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn e2ee_delete_device(&self, user: &str, device: &str) -> Result<()> {
        for table in
            ["e2ee_device_keys", "e2ee_one_time_keys", "e2ee_fallback_keys", "e2ee_to_device", "e2ee_to_device_txns"]
        {
            self.execute(&format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"), params![user, device])?;
        }
        self.execute("DELETE FROM e2ee_signatures WHERE target_user = ?1 AND target_key = ?2", params![user, device])?;
        Ok(())
    }

    fn device_list_changed(&self, user: &str, pos: u64) -> Result<()> {
        self.execute(
            "INSERT INTO e2ee_device_list_changes (user_id, stream_pos) VALUES (?1, ?2)
             ON CONFLICT(user_id) DO UPDATE SET stream_pos = MAX(stream_pos, excluded.stream_pos)",
            params![user, pos as i64],
        )?;
        Ok(())
    }

    fn device_lists_changed_between(&self, since: u64, upto: u64) -> Result<Vec<String>> {
        let mut stmt = self.prepare_cached(
            "SELECT DISTINCT user_id FROM e2ee_device_list_changes WHERE stream_pos > ?1 AND stream_pos <= ?2
             ORDER BY user_id",
        )?;
        let rows = stmt.query_map(params![since as i64, upto as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn to_device_put(&self, user: &str, device: &str, row: &ToDeviceRow) -> Result<()> {
        self.execute(
            "INSERT INTO e2ee_to_device (user_id, device_id, stream_pos, sender, type, content)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![user, device, row.stream_pos as i64, row.sender, row.kind, row.content],
        )?;
        Ok(())
    }

    fn to_device_count(&self, user: &str, device: &str) -> Result<u64> {
        let n: i64 = self.query_row(
            "SELECT COUNT(*) FROM e2ee_to_device WHERE user_id = ?1 AND device_id = ?2",
            params![user, device],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn to_device_waiting(&self, user: &str, device: &str, upto: u64) -> Result<Vec<ToDeviceRow>> {
        let mut stmt = self.prepare_cached(
            "SELECT stream_pos, sender, type, content FROM e2ee_to_device
             WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3 ORDER BY stream_pos",
        )?;
        let rows = stmt.query_map(params![user, device, upto as i64], |r| {
            Ok(ToDeviceRow {
                stream_pos: r.get::<_, i64>(0)? as u64,
                sender: r.get(1)?,
                kind: r.get(2)?,
                content: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn to_device_ack(&self, user: &str, device: &str, upto: u64) -> Result<u64> {
        let n = self.execute(
            "DELETE FROM e2ee_to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3",
            params![user, device, upto as i64],
        )?;
        Ok(n as u64)
    }

    fn to_device_txn_put(&self, user: &str, device: &str, txn_id: &str) -> Result<bool> {
        let n = self.execute(
            "INSERT OR IGNORE INTO e2ee_to_device_txns (user_id, device_id, txn_id) VALUES (?1, ?2, ?3)",
            params![user, device, txn_id],
        )?;
        if n == 1 {
            self.execute(
                "DELETE FROM e2ee_to_device_txns WHERE user_id = ?1 AND device_id = ?2 AND rowid <=
                 (SELECT rowid FROM e2ee_to_device_txns WHERE user_id = ?1 AND device_id = ?2
                  ORDER BY rowid DESC LIMIT 1 OFFSET ?3)",
                params![user, device, KEPT_TXNS_PER_DEVICE],
            )?;
        }
        Ok(n == 1)
    }

    fn e2ee_max_stream_pos(&self) -> Result<u64> {
        let a: i64 =
            self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM e2ee_device_list_changes", [], |r| r.get(0))?;
        let b: i64 = self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM e2ee_to_device", [], |r| r.get(0))?;
        Ok(a.max(b) as u64)
    }
}
