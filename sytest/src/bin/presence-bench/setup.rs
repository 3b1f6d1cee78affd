//! Setup: the users, their visibility, and every watcher's initial `/sync`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_sytest::bench::{concurrently, register_all};
use tidings_sytest::{Session, Value};

use crate::contender::Server;
use crate::{PASSWORD, SETUP_CONCURRENCY, TARGETS, WATCHERS};

/// The users of a run, ready for the load.
#[derive(Debug)]
pub struct Population {
    /// `target-000` .. `target-099`.
    pub targets: Vec<Session>,
    /// `watcher-0000` .. `watcher-0999`; watcher `i` sees target `i % TARGETS`.
    pub watchers: Vec<Session>,
    /// Per watcher: the `next_batch` of its initial sync.
    pub since: Vec<String>,
    /// How long all of setup took.
    pub took: Duration,
}

/// Registers everyone, arranges visibility and runs each watcher's initial sync,
/// `SETUP_CONCURRENCY` requests at a time, printing how long each step took.
///
/// # Panics
///
/// When the server refuses a step (the bench cannot go on).
pub async fn populate(server: &Server) -> Population {
    let name = server.kind().name();
    let start = Instant::now();
    let client = server.client();
    let names = |prefix: &str, n: usize, width: usize| (0..n).map(|i| format!("{prefix}-{i:0width$}")).collect();
    let targets = register_all(client.clone(), names("target", TARGETS, 3), PASSWORD, SETUP_CONCURRENCY).await;
    let watchers = register_all(client, names("watcher", WATCHERS, 4), PASSWORD, SETUP_CONCURRENCY).await;
    let registered = start.elapsed();
    println!("[{name}] registered {} users in {:.1} s", TARGETS + WATCHERS, registered.as_secs_f64());
    server.arrange_visibility(&targets, &watchers).await;
    let visible = start.elapsed();
    println!("[{name}] arranged visibility in {:.1} s", (visible - registered).as_secs_f64());
    let since = initial_syncs(&watchers, server.kind().sync_query()).await;
    let took = start.elapsed();
    println!(
        "[{name}] {WATCHERS} initial syncs in {:.1} s; setup took {:.1} s",
        (took - visible).as_secs_f64(),
        took.as_secs_f64()
    );
    Population { targets, watchers, since, took }
}

/// Each watcher's first `/sync` (no `since`, no wait); their `next_batch` tokens.
async fn initial_syncs(watchers: &[Session], query: String) -> Vec<String> {
    let watchers = Arc::new(watchers.to_vec());
    let query = Arc::new(query);
    concurrently(WATCHERS, SETUP_CONCURRENCY, move |i| {
        let (watchers, query) = (Arc::clone(&watchers), Arc::clone(&query));
        async move {
            let watcher = &watchers[i];
            let (status, body): (u16, Value) = watcher.get(&format!("/_matrix/client/v3/sync?timeout=0{query}")).await;
            assert_eq!(status, 200, "initial /sync of {}: {body}", watcher.user_id);
            body["next_batch"].as_str().expect("an initial /sync answers a next_batch").to_owned()
        }
    })
    .await
}
