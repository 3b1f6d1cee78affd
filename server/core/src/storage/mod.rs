//! SQLite storage: one database file in `data_dir`, WAL mode, numbered migrations.
//!
//! Every call runs on tokio's blocking pool ([`Db::call`]), so a slow disk never
//! stalls the async runtime. Each domain has its own small module of queries.

pub mod accounts;
pub mod federation;
pub mod meta;
pub mod presence;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_accounts_presence.sql"),
    include_str!("../../migrations/0002_presence_devices.sql"),
    include_str!("../../migrations/0003_federation.sql"),
];

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)
            .map_err(|e| Error::internal(format!("cannot open database {}: {e}", path.display())))?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_owned() })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| Error::internal("database lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::internal(format!("database task failed: {e}")))?
    }

    /// Run `f` with the connection on the current thread: for start-up and the CLI only.
    pub fn call_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = self.conn.lock().map_err(|_| Error::internal("database lock poisoned"))?;
        f(&mut guard)
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(Error::internal(format!(
            "the database has schema version {done}, newer than this tidings ({}): refusing to run",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(migration = i + 1, "applied database migration");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
pub(crate) fn memory() -> Db {
    let mut conn = Connection::open_in_memory().expect("in-memory database");
    migrate(&mut conn).expect("migrations apply");
    Db { conn: Arc::new(Mutex::new(conn)), path: PathBuf::from(":memory:") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_apply_and_are_idempotent() {
        let dir = std::env::temp_dir().join(format!("tidings-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db.sqlite");
        let _ = std::fs::remove_file(&path);
        drop(super::Db::open(&path).expect("first open"));
        let db = super::Db::open(&path).expect("second open");
        let version: i64 =
            db.call_blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)).expect("version");
        assert_eq!(version as usize, super::MIGRATIONS.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
