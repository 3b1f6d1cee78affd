//! Small named integers the server keeps between runs (the stream ceiling).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Read `key`, if set.
pub fn get(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

/// Set `key` to `value`.
pub fn set(conn: &Connection, key: &str, value: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
