//! A transaction is never acknowledged when applying it failed.
//!
//! Proves that when the receiving server cannot apply a transaction (its database
//! is busy for longer than its busy timeout, as when another process such as
//! `tidings create-user` holds the write lock), the invite it carries is not lost:
//! the receiver must not answer 200 and mark the txnId as received, so the sender
//! retries it, and once the database is free the invite shows up in the target's
//! `GET /presence/requests`.
//!
//! The test holds `BEGIN EXCLUSIVE` on the receiver's SQLite file itself, for longer
//! than the server's 5 s busy timeout, while the invite is sent. That is a lock held
//! on purpose, not a pause before an assertion; the assertion afterwards waits for
//! the invite to arrive.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use tidings_sytest::paths::list_path;
use tidings_sytest::{ServerOptions, TestServer, json, try_eventually};

const PW: &str = "federation-retry-pw-1";
/// The server's busy timeout is 5 s; the lock is held clearly longer.
const HOLD: Duration = Duration::from_secs(7);
/// Several of the receiver's write-behind intervals (500 ms).
const WRITE_BACK: Duration = Duration::from_millis(1500);

/// Takes the write lock of the database at `path` and holds it for `hold`, on a
/// thread of its own; the returned handle ends when the lock is released. `locked`
/// is told once the lock is held.
fn hold_write_lock(
    path: PathBuf,
    hold: Duration,
    locked: tokio::sync::oneshot::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        // The server may be writing right now: wait for it like a second writer would.
        conn.busy_timeout(Duration::from_secs(30)).expect("setting the test's busy timeout");
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap_or_else(|e| panic!("BEGIN EXCLUSIVE on {}: {e}", path.display()));
        let _ = locked.send(());
        std::thread::sleep(hold);
        conn.execute_batch("ROLLBACK").expect("releasing the lock");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_that_met_a_busy_database_is_retried_until_it_lands() {
    let servers = TestServer::start_federation(vec![
        ServerOptions { batch_ms: 100, ..ServerOptions::named("sender.test") },
        ServerOptions { batch_ms: 100, ..ServerOptions::named("receiver.test") },
    ])
    .await;
    let (sender, receiver) = (&servers[0], &servers[1]);
    // The receiver's side first: its last request before the lock is this one.
    let receiver_admin = receiver.create_admin("admin", PW).await;
    let bob = receiver.register("bob", PW).await;
    assert!(bob.requesters().await.is_empty());
    let sender_admin = sender.create_admin("admin", PW).await;
    let alice = sender.register("alice", PW).await;
    // Give the receiver time to write back what those requests changed (it writes
    // presence behind, every 500 ms at most), so that the invite is the first write
    // to meet the lock. This pause only makes a lost invite likelier to show on a
    // broken server: a server that retries correctly passes however long it is.
    tokio::time::sleep(WRITE_BACK).await;

    let db = receiver.data_dir().join("tidings.sqlite");
    assert!(db.is_file(), "no database at {}", db.display());
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let lock = hold_write_lock(db, HOLD, locked_tx);
    locked_rx.await.expect("the lock thread took the lock");

    // While the receiver cannot write, alice invites bob.
    let got = alice.post(&list_path(&alice.user_id), json!({"invite": [bob.user_id]})).await;
    assert_eq!(got, (200, json!({})), "alice inviting bob");
    lock.await.expect("the lock thread");

    // The database is free again: the invite must arrive (the sender retries the
    // transaction the receiver could not apply).
    let arrived = try_eventually(Duration::from_secs(15), || async {
        let got = bob.requesters().await;
        if got.contains(&alice.user_id) { Ok(()) } else { Err(got) }
    })
    .await;
    if let Err(why) = arrived {
        let sent = sender_admin.federation_peer("receiver.test").await;
        let received = receiver_admin.federation_peer("sender.test").await;
        panic!(
            "alice's invite never reached bob after the receiver's database was busy for {HOLD:?}: {why}\n\
             sender's view of the receiver: {sent}\nreceiver's view of the sender: {received}"
        );
    }
}
