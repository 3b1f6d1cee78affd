//! Queries for users and their devices. Access tokens are stored only as SHA-256 hashes.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// A user row as the account service needs it.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Full user ID.
    pub user_id: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Whether the user may use the admin API.
    pub admin: bool,
    /// Display name, if set.
    pub displayname: Option<String>,
}

/// A device row, found by its token hash.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// Owner.
    pub user_id: String,
    /// Device ID.
    pub device_id: String,
    /// Whether the owner is an admin.
    pub admin: bool,
    /// Device kind reported by the client ("desktop", "mobile", "bot", ...).
    pub kind: Option<String>,
}

/// Users and devices: the account service's storage.
pub trait AccountStore {
    /// Insert a user; `false` if the ID is taken.
    fn insert_user(&self, user_id: &str, password_hash: &str, admin: bool, now: u64) -> Result<bool>;

    /// Look up a user.
    fn get_user(&self, user_id: &str) -> Result<Option<UserRow>>;

    /// Whether a user exists.
    fn user_exists(&self, user_id: &str) -> Result<bool>;

    /// Set or clear a user's display name.
    fn set_displayname(&self, user_id: &str, name: Option<&str>) -> Result<()>;

    /// Every user with admin flag and device count, ordered by ID.
    fn list_users(&self) -> Result<Vec<(String, bool, u64)>>;

    /// Number of users.
    fn count_users(&self) -> Result<u64>;

    /// Create or replace a device's token (a login with an existing device ID replaces its token).
    fn upsert_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token_hash: &str,
        now: u64,
    ) -> Result<()>;

    /// The device holding the token with this hash.
    fn device_by_token(&self, token_hash: &str) -> Result<Option<DeviceRow>>;

    /// The token hash of a device, if the device exists.
    fn device_token_hash(&self, user_id: &str, device_id: &str) -> Result<Option<String>>;

    /// Delete one device; returns the token hash it had.
    fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<String>>;

    /// Delete every device of a user; returns their IDs and token hashes.
    fn delete_all_devices(&self, user_id: &str) -> Result<Vec<(String, String)>>;

    /// Record the kind a device reported.
    fn set_device_kind(&self, user_id: &str, device_id: &str, kind: &str) -> Result<()>;

    /// Every device with a kind: loaded into presence at start.
    fn device_kinds(&self) -> Result<Vec<(String, String, String)>>;

    /// Whether `user_id` has a device `device_id`.
    fn device_exists(&self, user_id: &str, device_id: &str) -> Result<bool>;
}

impl AccountStore for Connection {
    fn insert_user(&self, user_id: &str, password_hash: &str, admin: bool, now: u64) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO users (user_id, password_hash, admin, created_ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(user_id) DO NOTHING",
            params![user_id, password_hash, admin, now as i64],
        )?;
        Ok(n == 1)
    }

    fn get_user(&self, user_id: &str) -> Result<Option<UserRow>> {
        Ok(self
            .query_row(
                "SELECT user_id, password_hash, admin, displayname FROM users WHERE user_id = ?1",
                [user_id],
                |r| {
                    Ok(UserRow {
                        user_id: r.get(0)?,
                        password_hash: r.get(1)?,
                        admin: r.get(2)?,
                        displayname: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn user_exists(&self, user_id: &str) -> Result<bool> {
        Ok(self.query_row("SELECT 1 FROM users WHERE user_id = ?1", [user_id], |_| Ok(())).optional()?.is_some())
    }

    fn set_displayname(&self, user_id: &str, name: Option<&str>) -> Result<()> {
        self.execute("UPDATE users SET displayname = ?2 WHERE user_id = ?1", params![user_id, name])?;
        Ok(())
    }

    fn list_users(&self) -> Result<Vec<(String, bool, u64)>> {
        let mut stmt = self.prepare(
            "SELECT u.user_id, u.admin, (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.user_id)
             FROM users u ORDER BY u.user_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_users(&self) -> Result<u64> {
        let n: i64 = self.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn upsert_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token_hash: &str,
        now: u64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO devices (user_id, device_id, display_name, token_hash, created_ts)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(user_id, device_id) DO UPDATE SET token_hash = excluded.token_hash,
                 display_name = COALESCE(excluded.display_name, devices.display_name)",
            params![user_id, device_id, display_name, token_hash, now as i64],
        )?;
        Ok(())
    }

    fn device_by_token(&self, token_hash: &str) -> Result<Option<DeviceRow>> {
        Ok(self
            .query_row(
                "SELECT d.user_id, d.device_id, u.admin, d.kind FROM devices d
                 JOIN users u ON u.user_id = d.user_id WHERE d.token_hash = ?1",
                [token_hash],
                |r| Ok(DeviceRow { user_id: r.get(0)?, device_id: r.get(1)?, admin: r.get(2)?, kind: r.get(3)? }),
            )
            .optional()?)
    }

    fn device_token_hash(&self, user_id: &str, device_id: &str) -> Result<Option<String>> {
        Ok(self
            .query_row(
                "SELECT token_hash FROM devices WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<String>> {
        let hash: Option<String> = self
            .query_row(
                "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2 RETURNING token_hash",
                params![user_id, device_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash)
    }

    fn delete_all_devices(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.prepare("DELETE FROM devices WHERE user_id = ?1 RETURNING device_id, token_hash")?;
        let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_device_kind(&self, user_id: &str, device_id: &str, kind: &str) -> Result<()> {
        self.execute(
            "UPDATE devices SET kind = ?3 WHERE user_id = ?1 AND device_id = ?2",
            params![user_id, device_id, kind],
        )?;
        Ok(())
    }

    fn device_kinds(&self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.prepare("SELECT user_id, device_id, kind FROM devices WHERE kind IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn device_exists(&self, user_id: &str, device_id: &str) -> Result<bool> {
        Ok(self
            .query_row(
                "SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
