//! Small named integers the server keeps between runs (the stream ceiling).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Small named integers kept between runs.
pub trait MetaStore {
    /// Read `key`, if set.
    fn meta_get(&self, key: &str) -> Result<Option<i64>>;

    /// Set `key` to `value`.
    fn meta_set(&self, key: &str, value: i64) -> Result<()>;
}

impl MetaStore for Connection {
    fn meta_get(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn meta_set(&self, key: &str, value: i64) -> Result<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}
