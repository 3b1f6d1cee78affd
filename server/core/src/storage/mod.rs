//! SQLite storage: one database file in `data_dir`, WAL mode, numbered migrations.
//!
//! - **One writer, group commit.** Every write goes to one writer thread that owns the
//!   only writing connection. It takes every job that is waiting (a change that
//!   arrives while the previous group commits waits at most that long), runs each in a
//!   savepoint of its own inside one transaction, commits once, and only then answers
//!   each job. A request is answered 2xx after its change is committed, so it survives
//!   `kill -9` (WAL with `synchronous=NORMAL`: safe against a process crash, not power
//!   loss), and a burst of changes costs one commit.
//! - **Readers run beside it.** A small pool of read connections (WAL lets readers
//!   see the last commit while the writer works), used from tokio's blocking pool.
//! - **Each domain behind a trait.** [`AccountStore`], [`PresenceStore`],
//!   [`FederationStore`], [`FeedStore`] and [`MetaStore`] are the queries of each domain; jobs see
//!   them as one [`Store`]. A second backend implements these traits and a runner
//!   like [`Db`]; no service changes.

pub mod accounts;
pub mod client_state;
pub mod cross_signing;
pub mod e2ee;
pub mod federation;
pub mod feed_peers;
pub mod feeds;
pub mod media;
pub mod meta;
pub mod presence;
pub mod rooms;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

pub use accounts::AccountStore;
pub use client_state::ClientStateStore;
pub use cross_signing::CrossSigningStore;
pub use e2ee::E2eeStore;
pub use federation::FederationStore;
pub use feed_peers::FeedPeerStore;
pub use feeds::FeedStore;
pub use media::MediaStore;
pub use meta::MetaStore;
pub use presence::PresenceStore;
pub use rooms::RoomStore;

use crate::error::{Error, Result};

/// The migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_accounts_presence.sql"),
    include_str!("../../migrations/0002_presence_devices.sql"),
    include_str!("../../migrations/0003_federation.sql"),
    include_str!("../../migrations/0004_feeds.sql"),
    include_str!("../../migrations/0005_feed_peers.sql"),
    include_str!("../../migrations/0006_rooms.sql"),
    include_str!("../../migrations/0007_link.sql"),
    include_str!("../../migrations/0008_client_state.sql"),
    include_str!("../../migrations/0009_cross_signing.sql"),
    include_str!("../../migrations/0010_room_txn_scope.sql"),
];

/// How many read connections run beside the writer.
const READERS: usize = 4;
/// Prepared statements each connection keeps. rusqlite's default is 16, fewer than
/// the statements one `/sync` runs, so every sync prepared most of them again.
const STATEMENT_CACHE: usize = 256;
/// The most jobs one commit carries; more wait for the next.
const MAX_GROUP: usize = 512;
/// How long a connection waits for a lock another process holds (`create-user`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Every domain's queries, as one job sees them.
pub trait Store:
    AccountStore
    + PresenceStore
    + FederationStore
    + FeedStore
    + FeedPeerStore
    + MetaStore
    + RoomStore
    + ClientStateStore
    + E2eeStore
    + CrossSigningStore
    + MediaStore
{
}

impl<T> Store for T where
    T: AccountStore
        + PresenceStore
        + FederationStore
        + FeedStore
        + FeedPeerStore
        + MetaStore
        + RoomStore
        + ClientStateStore
        + E2eeStore
        + CrossSigningStore
        + MediaStore
{
}

/// What runs after a write job's group committed (with `true`) or failed (`false`):
/// publishing what the job wrote, in memory, only once it is on disk.
pub type AfterCommit = Box<dyn FnOnce(bool) + Send>;

/// One write of a [`Unit`].
type UnitWrite = Box<dyn FnOnce(&dyn Store) -> Result<()> + Send>;

/// Several writes that must land together (one savepoint in the group's
/// transaction), what to do in memory once they have, and what to release at the
/// very end whatever happened (stream positions held in flight). A unit dropped
/// without being submitted still releases.
#[derive(Default)]
pub struct Unit {
    writes: Vec<UnitWrite>,
    after: Vec<AfterCommit>,
    finally: Vec<Box<dyn FnOnce() + Send>>,
}

impl Drop for Unit {
    fn drop(&mut self) {
        for f in std::mem::take(&mut self.finally) {
            f();
        }
    }
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit").field("writes", &self.writes.len()).field("after", &self.after.len()).finish()
    }
}

impl Unit {
    /// An empty unit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a write; it runs in order with the others, all or none.
    pub fn write(&mut self, f: impl FnOnce(&dyn Store) -> Result<()> + Send + 'static) {
        self.writes.push(Box::new(f));
    }

    /// Add a step to run after the unit committed (`true`) or failed (`false`).
    pub fn after(&mut self, f: impl FnOnce(bool) + Send + 'static) {
        self.after.push(Box::new(f));
    }

    /// Add a step to run last, after every after-commit step, or when the unit is
    /// dropped unsubmitted.
    pub fn finally(&mut self, f: impl FnOnce() + Send + 'static) {
        self.finally.push(Box::new(f));
    }

    /// Whether the unit holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// A write that was handed to the writer; [`Pending::wait`] answers once its group
/// committed. Dropping it does not cancel the write.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T>>);

impl<T> Pending<T> {
    /// Wait until the write is committed (or failed).
    pub async fn wait(self) -> Result<T> {
        self.0.await.map_err(|_| Error::internal("the database writer stopped"))?
    }
}

enum Reply<T> {
    Async(oneshot::Sender<Result<T>>),
    Blocking(mpsc::SyncSender<Result<T>>),
}

/// One job of a group: run in a savepoint, then told whether the group committed.
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Job<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    after: Option<AfterCommit>,
    reply: Reply<T>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) {
        let Some(work) = self.work.take() else { return };
        // A job that panics fails alone: the writer thread, and every position and
        // answer waiting on it, must outlive any one job.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_savepoint(conn, work)));
        self.result = Some(outcome.unwrap_or_else(|_| {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(Error::internal("a database write panicked"))
        }));
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let result = match (committed, self.result) {
            (_, None) => Err(Error::internal("a database write was not run")),
            (Ok(()), Some(result)) => result,
            (Err(e), Some(_)) => Err(e),
        };
        if let Some(after) = self.after {
            after(result.is_ok());
        }
        match self.reply {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = work(conn);
    let end = if result.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
    conn.execute_batch(end)?;
    result
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    path: PathBuf,
    /// Dropped with the handle: the checkpointer thread then ends.
    _checkpointer: Option<mpsc::Sender<()>>,
    /// A temporary directory that lives as long as the handle (test databases).
    _temp: Option<tempfile_guard::Guard>,
}

/// Where writes run.
#[derive(Debug)]
enum Writer {
    /// On the writer thread, in groups (the server).
    Thread(mpsc::Sender<Box<dyn WriteJob>>),
    /// On the calling thread, one job per transaction, and reads too: for tests
    /// under tokio's paused clock, which must never wait on another thread (the clock
    /// would jump ahead while it does).
    Inline(Mutex<Connection>),
}

impl std::fmt::Debug for dyn WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteJob")
    }
}

impl Db {
    /// Open (creating if needed) the database at `path`, bring its schema up to
    /// date, and start its writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None, false)
    }

    fn open_with(path: &Path, temp: Option<tempfile_guard::Guard>, inline: bool) -> Result<Self> {
        let mut writer = Connection::open(path)
            .map_err(|e| Error::internal(format!("cannot open database {}: {e}", path.display())))?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            let reader = Connection::open_with_flags(path, flags)
                .map_err(|e| Error::internal(format!("cannot open database {}: {e}", path.display())))?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            readers.push(reader);
        }
        let mut checkpointer = None;
        let writer = if inline {
            Writer::Inline(Mutex::new(writer))
        } else {
            // The writer never checkpoints: SQLite would do it in the commit that
            // fills the log, with an fsync that held every write waiting behind it
            // (measured: 17 to 120 ms, twice a second under room-bench's load).
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
            checkpointer = Some(start_checkpointer(path)?);
            let (jobs, queue) = mpsc::channel::<Box<dyn WriteJob>>();
            std::thread::Builder::new()
                .name("tidings-db-writer".into())
                .spawn(move || run_writer(writer, queue))
                .map_err(|e| Error::internal(format!("cannot start the database writer: {e}")))?;
            Writer::Thread(jobs)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                readers: Mutex::new(readers),
                reader_permits: Semaphore::new(READERS),
                path: path.to_owned(),
                _checkpointer: checkpointer,
                _temp: temp,
            }),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Read with one of the reader connections, on the blocking pool. A read sees
    /// every write whose [`Pending`] has answered.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        if matches!(self.inner.writer, Writer::Inline(_)) {
            return self.read_blocking(f);
        }
        let _permit = self.inner.reader_permits.acquire().await.map_err(|_| Error::internal("database closed"))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = lock(&inner.readers).pop().ok_or_else(|| Error::internal("no free reader connection"))?;
            let result = f(&conn);
            lock(&inner.readers).push(conn);
            result
        })
        .await
        .map_err(|e| Error::internal(format!("database task failed: {e}")))?
    }

    /// Read on the current thread: for start-up and the command line only.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
        let conn = lock(&self.inner.readers).pop().ok_or_else(|| Error::internal("no free reader connection"))?;
        let result = f(&conn);
        lock(&self.inner.readers).push(conn);
        result
    }

    /// Hand a write to the writer; `after` runs once its group committed or failed,
    /// before the returned [`Pending`] answers.
    pub fn submit<T, F>(&self, f: F, after: Option<AfterCommit>) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(Job { work: Some(f), result: None, after, reply: Reply::Async(tx) }));
        Pending(rx)
    }

    /// Write and wait for the commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        self.submit(f, None).wait().await
    }

    /// Hand a [`Unit`] to the writer: all its writes in one savepoint, then its
    /// after-commit steps in order.
    pub fn submit_unit(&self, mut unit: Unit) -> Pending<()> {
        let (writes, after, finally) =
            (std::mem::take(&mut unit.writes), std::mem::take(&mut unit.after), std::mem::take(&mut unit.finally));
        let after: AfterCommit = Box::new(move |ok| {
            after.into_iter().for_each(|f| f(ok));
            finally.into_iter().for_each(|f| f());
        });
        self.submit(move |s| writes.into_iter().try_for_each(|w| w(s)), Some(after))
    }

    /// Write and wait on the current thread: for start-up and the command line only.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Box::new(Job { work: Some(f), result: None, after: None, reply: Reply::Blocking(tx) }));
        rx.recv().map_err(|_| Error::internal("the database writer stopped"))?
    }

    fn send(&self, job: Box<dyn WriteJob>) {
        match &self.inner.writer {
            Writer::Thread(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    job.finish(Err(Error::internal("the database writer stopped")));
                }
            }
            Writer::Inline(conn) => {
                let mut group = vec![job];
                let committed = run_group(&lock(conn), &mut group);
                for job in group {
                    job.finish(committed.clone());
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: take every waiting job, run them in one transaction, commit
/// once, answer each. Ends when every [`Db`] handle is gone.
/// Start the thread that checkpoints the write-ahead log every
/// [`CHECKPOINT_EVERY`] on a connection of its own, `PASSIVE`ly: it copies what no
/// reader still needs and never waits for the writer, which goes on appending. It
/// ends when the returned sender is dropped. A commit is durable once in the log;
/// checkpoints only keep the log short.
fn start_checkpointer(path: &Path) -> Result<mpsc::Sender<()>> {
    let conn =
        Connection::open(path).map_err(|e| Error::internal(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("tidings-db-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpointing the database log failed; it will be tried again");
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the database checkpointer: {e}")))?;
    Ok(stop)
}

fn run_writer(conn: Connection, queue: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = run_group(&conn, &mut group);
        for job in group {
            job.finish(committed.clone());
        }
    }
}

/// Run `group` in one transaction, each job in its own savepoint; the commit's outcome.
fn run_group(conn: &Connection, group: &mut [Box<dyn WriteJob>]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for job in group.iter_mut() {
        job.run(conn);
    }
    let committed = conn.execute_batch("COMMIT").map_err(Error::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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

/// A guard that removes a temporary directory when dropped (test databases).
mod tempfile_guard {
    /// Removes its directory on drop.
    #[derive(Debug)]
    pub struct Guard(pub std::path::PathBuf);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh database in a temporary directory, removed when the last handle goes:
/// for tests of the services (readers need a file; `:memory:` is per connection).
/// It runs every query on the calling thread, so tests under tokio's paused clock
/// stay deterministic.
pub fn temporary() -> Result<Db> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tidings-db-{}-{n}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::internal(format!("temporary database: {e}")))?;
    let path = dir.join("tidings.sqlite");
    Db::open_with(&path, Some(tempfile_guard::Guard(dir)), true)
}

#[cfg(test)]
pub(crate) fn memory() -> Db {
    temporary().expect("temporary database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_and_are_idempotent() {
        let dir = std::env::temp_dir().join(format!("tidings-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db.sqlite");
        let _ = std::fs::remove_file(&path);
        drop(Db::open(&path).expect("first open"));
        let db = Db::open(&path).expect("second open");
        drop(db);
        let c = Connection::open(&path).expect("open");
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version as usize, MIGRATIONS.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_checkpointer_copies_the_log_into_the_database_while_the_writer_writes() {
        let dir = std::env::temp_dir().join(format!("tidings-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db.sqlite");
        let _ = std::fs::remove_file(&path);
        let db = Db::open(&path).expect("open");
        let before = std::fs::metadata(&path).expect("db file").len();
        // About 2 MiB of rows; the writer itself never checkpoints.
        for i in 0..64 {
            let blob = "x".repeat(32 * 1024);
            db.write(move |s| s.filter_put(&format!("@u{i}:a"), &blob, 10).map(|_| ())).await.expect("write");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let grown = loop {
            let now = std::fs::metadata(&path).expect("db file").len();
            if now >= before + 1024 * 1024 || std::time::Instant::now() > deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(grown >= before + 1024 * 1024, "the database file grew from {before} to {grown} bytes only");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn room_txns_of_before_the_endpoint_scope_keep_their_answer() {
        let mut c = Connection::open_in_memory().expect("open");
        for sql in &MIGRATIONS[..9] {
            c.execute_batch(sql).expect("migration");
        }
        c.execute_batch(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ('!r:a', '10', '@a:a', 0);
             INSERT INTO room_events (pos, room_id, depth, event_id, event_type, sender, txn_device, txn_id, json)
               VALUES (1, '!r:a', 1, '$m', 'm.room.message', '@a:a', 'D', 't1', '{}'),
                      (2, '!r:a', 2, '$x', 'm.room.redaction', '@a:a', 'D', 't2', '{\"redacts\":\"$m\"}');
             INSERT INTO room_txns (user_id, device_id, txn_id, event_id)
               VALUES ('@a:a', 'D', 't1', '$m'), ('@a:a', 'D', 't2', '$x');",
        )
        .expect("old rows");
        c.pragma_update(None, "user_version", 9).expect("version");
        migrate(&mut c).expect("migrate");
        assert_eq!(c.room_txn("@a:a", "D", "send !r:a m.room.message", "t1").expect("read"), Some("$m".into()));
        assert_eq!(c.room_txn("@a:a", "D", "redact !r:a $m", "t2").expect("read"), Some("$x".into()));
        assert_eq!(c.room_txn("@a:a", "D", "send !other:a m.room.message", "t1").expect("read"), None);
    }

    /// A database with its writer thread, as the server runs it.
    fn threaded() -> Db {
        let dir =
            std::env::temp_dir().join(format!("tidings-db-threaded-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Db::open_with(&dir.join("t.sqlite"), Some(tempfile_guard::Guard(dir)), false).expect("open")
    }

    #[tokio::test]
    async fn a_failed_job_rolls_back_alone_and_the_group_commits() {
        let db = threaded();
        let ok = db.submit(|s| s.meta_set("a", 1), None);
        let bad = db.submit(
            |s| {
                s.meta_set("b", 2)?;
                Err::<(), _>(Error::invalid_param("refused"))
            },
            None,
        );
        let ok2 = db.submit(|s| s.meta_set("c", 3), None);
        assert!(ok.wait().await.is_ok());
        assert!(bad.wait().await.is_err());
        assert!(ok2.wait().await.is_ok());
        let read = db.read(|s| Ok((s.meta_get("a")?, s.meta_get("b")?, s.meta_get("c")?))).await.expect("read");
        assert_eq!(read, (Some(1), None, Some(3)), "the failed job's write is rolled back, the others kept");
    }

    #[tokio::test]
    async fn after_commit_runs_before_the_answer() {
        let db = threaded();
        let seen = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&seen);
        let pending = db.submit(|s| s.meta_set("x", 7), Some(Box::new(move |ok| *lock(&s2) = Some(ok))));
        pending.wait().await.expect("committed");
        assert_eq!(*lock(&seen), Some(true));
    }

    #[tokio::test]
    async fn a_unit_lands_whole_or_not_at_all() {
        let db = memory();
        let mut unit = Unit::new();
        unit.write(|s| s.meta_set("u1", 1));
        unit.write(|_| Err(Error::invalid_param("second write fails")));
        let outcome = Arc::new(Mutex::new(None));
        let o2 = Arc::clone(&outcome);
        unit.after(move |ok| *lock(&o2) = Some(ok));
        assert!(db.submit_unit(unit).wait().await.is_err());
        assert_eq!(*lock(&outcome), Some(false));
        assert_eq!(db.read(|s| s.meta_get("u1")).await.expect("read"), None);
    }
}
