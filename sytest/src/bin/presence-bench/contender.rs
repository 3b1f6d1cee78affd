//! The servers the load runs against, and what differs between them: how a watcher is
//! let to see its target (presence lists on Tidings, shared rooms on Synapse), how its
//! `/sync` is asked for, and how long each phase may take.

use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tidings_sytest::bench::concurrently;
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::synapse::SynapseServer;
use tidings_sytest::{Client, ServerOptions, Session, TestServer, encode_component, json};

use crate::{SETUP_CONCURRENCY, TARGETS, WATCHERS};

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `target/release/tidings` of this workspace (or `$TIDINGS_BIN`).
    Tidings,
    /// Synapse from PyPI, see `tidings_sytest::synapse`.
    Synapse,
}

/// How long the phases of a run may take on one kind of server. Synapse gets more
/// time: it is some hundred times slower, and a slow server must give slow figures,
/// not a failed run.
#[derive(Debug, Clone, Copy)]
pub struct Tolerances {
    /// For all watchers' first (non-waiting) `/sync` of the load phase.
    pub ready_deadline: Duration,
    /// Pause after that, for the long polls to park.
    pub settle: Duration,
    /// For the watchers to reach their target's last change after the load.
    pub drain_deadline: Duration,
}

impl Kind {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tidings => "Tidings",
            Kind::Synapse => "Synapse",
        }
    }

    /// See [`Tolerances`].
    pub fn tolerances(self) -> Tolerances {
        match self {
            Kind::Tidings => Tolerances {
                ready_deadline: Duration::from_secs(60),
                settle: Duration::from_secs(1),
                drain_deadline: Duration::from_secs(10),
            },
            Kind::Synapse => Tolerances {
                ready_deadline: Duration::from_secs(300),
                settle: Duration::from_secs(5),
                drain_deadline: Duration::from_secs(30),
            },
        }
    }

    /// Query parameters every watcher `/sync` adds (after `since` and `timeout`).
    ///
    /// Tidings: none. Synapse: `set_presence=offline`, so the watchers' own syncing
    /// does not make them online (their room-mates would get that presence, which a
    /// Tidings watcher's co-watchers never do), and a filter that leaves rooms and
    /// account data out (the rooms exist only to make presence visible).
    pub fn sync_query(self) -> String {
        match self {
            Kind::Tidings => String::new(),
            Kind::Synapse => {
                let filter = json!({"room": {"rooms": []}, "account_data": {"not_types": ["*"]}});
                format!("&set_presence=offline&filter={}", encode_component(&filter.to_string()))
            }
        }
    }
}

/// A running server of either kind.
pub enum Server {
    /// A Tidings process.
    Tidings(TestServer),
    /// A Synapse process.
    Synapse(SynapseServer),
}

impl Server {
    /// Starts Tidings with rate limits off, open registration, presence timers long
    /// enough that nothing goes idle or offline during the run, and room for the
    /// load's 1,048 connections (1,000 long polls and 48 writers; the default
    /// `max_connections` of 768 would hold the writers in the listen backlog).
    pub async fn start_tidings() -> Result<Server, String> {
        let opts = ServerOptions {
            registration_open: true,
            rate_limits: false,
            offline_after_ms: 600_000,
            idle_after_ms: 600_000,
            rust_log: Some("warn".to_owned()),
            ..ServerOptions::named("bench.test")
        }
        .with_key("", "max_connections", "4096");
        TestServer::try_start(opts).await.map(Server::Tidings).map_err(|e| e.to_string())
    }

    /// Starts Synapse with `python` (see `tidings_sytest::synapse`).
    pub async fn start_synapse(python: &Path) -> Result<Server, String> {
        SynapseServer::start(python, "localhost").await.map(Server::Synapse)
    }

    /// Which kind it is.
    pub fn kind(&self) -> Kind {
        match self {
            Server::Tidings(_) => Kind::Tidings,
            Server::Synapse(_) => Kind::Synapse,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        match self {
            Server::Tidings(s) => s.base_url(),
            Server::Synapse(s) => s.base_url(),
        }
    }

    /// A client for it.
    pub fn client(&self) -> Client {
        match self {
            Server::Tidings(s) => s.client(),
            Server::Synapse(s) => s.client(),
        }
    }

    /// Its process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Tidings(s) => s.pid(),
            Server::Synapse(s) => s.pid(),
        }
    }

    /// Stops it gracefully; its exit status.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        match self {
            Server::Tidings(s) => s.stop().await,
            Server::Synapse(s) => s.stop().await,
        }
    }

    /// The lines of its log that are warnings, errors or panics, less Synapse's
    /// start-up banner (logged as warnings) and its complaints about the watchers'
    /// long polls dropped when the run stops.
    pub fn log_problems(&self) -> Vec<String> {
        let log = match self {
            Server::Tidings(s) => s.log(),
            Server::Synapse(s) => s.log(),
        };
        let benign = ["synapse.config.logger", "already disconnected"];
        log.lines()
            .filter(|l| ["WARN", "ERROR", "CRITICAL", "panicked", "Traceback"].iter().any(|w| l.contains(w)))
            .filter(|l| !benign.iter().any(|b| l.contains(b)))
            .map(str::to_owned)
            .collect()
    }

    /// Lets watcher `i` see target `i % TARGETS`, and spot-checks that it does.
    ///
    /// # Panics
    ///
    /// When the server refuses a step (the bench cannot go on).
    pub async fn arrange_visibility(&self, targets: &[Session], watchers: &[Session]) {
        match self.kind() {
            Kind::Tidings => {
                arrange_consent(targets, watchers).await;
                check_lists(targets, watchers).await;
            }
            Kind::Synapse => share_rooms(targets, watchers).await,
        }
        check_status_visible(targets, watchers).await;
    }
}

/// Tidings: watcher `i` invites target `i % TARGETS` to its presence list, and the
/// target allows it.
async fn arrange_consent(targets: &[Session], watchers: &[Session]) {
    let targets = Arc::new(targets.to_vec());
    let watchers = Arc::new(watchers.to_vec());
    concurrently(WATCHERS, SETUP_CONCURRENCY, move |i| {
        let (targets, watchers) = (Arc::clone(&targets), Arc::clone(&watchers));
        async move {
            let (watcher, target) = (&watchers[i], &targets[i % TARGETS]);
            let (status, body) =
                watcher.post(&list_path(&watcher.user_id), json!({ "invite": [target.user_id] })).await;
            assert_eq!(status, 200, "{} inviting {}: {body}", watcher.user_id, target.user_id);
            let (status, body) = target.post(&answer_path(&watcher.user_id), json!({ "allow": true })).await;
            assert_eq!(status, 200, "{} allowing {}: {body}", target.user_id, watcher.user_id);
        }
    })
    .await;
}

/// Tidings: spot-checks that the edges are accepted.
async fn check_lists(targets: &[Session], watchers: &[Session]) {
    for i in spot_checked() {
        let watcher = &watchers[i];
        let (status, body) = watcher.get(&list_path(&watcher.user_id)).await;
        assert_eq!(status, 200, "GET list of {}: {body}", watcher.user_id);
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        assert!(
            entries.len() == 1
                && entries[0]["user_id"] == targets[i % TARGETS].user_id.as_str()
                && entries[0]["subscription"] == "accepted",
            "the list of {} is not one accepted entry for {}: {body}",
            watcher.user_id,
            targets[i % TARGETS].user_id
        );
    }
}

/// Synapse: each target creates a private room inviting its watchers, who join it.
async fn share_rooms(targets: &[Session], watchers: &[Session]) {
    let targets = Arc::new(targets.to_vec());
    let watchers = Arc::new(watchers.to_vec());
    concurrently(TARGETS, SETUP_CONCURRENCY, move |t| {
        let (targets, watchers) = (Arc::clone(&targets), Arc::clone(&watchers));
        async move {
            let target = &targets[t];
            let mine: Vec<&Session> = watchers.iter().skip(t).step_by(TARGETS).collect();
            let invite: Vec<&str> = mine.iter().map(|w| w.user_id.as_str()).collect();
            let create = json!({ "preset": "private_chat", "invite": invite });
            let (status, body) = target.post("/_matrix/client/v3/createRoom", create).await;
            assert_eq!(status, 200, "{} creating its room: {body}", target.user_id);
            let room = body["room_id"].as_str().expect("createRoom answers a room_id").to_owned();
            let join = format!("/_matrix/client/v3/join/{}", encode_component(&room));
            for watcher in mine {
                let (status, body) = watcher.post(&join, json!({})).await;
                assert_eq!(status, 200, "{} joining {room}: {body}", watcher.user_id);
            }
        }
    })
    .await;
}

/// Both: a few watchers may read their target's status (403 if not visible).
async fn check_status_visible(targets: &[Session], watchers: &[Session]) {
    for i in spot_checked() {
        let (watcher, target) = (&watchers[i], &targets[i % TARGETS]);
        let (status, body) = watcher.get(&status_path(&target.user_id)).await;
        assert_eq!(status, 200, "{} reading the status of {}: {body}", watcher.user_id, target.user_id);
    }
}

/// The watchers whose visibility is checked.
fn spot_checked() -> [usize; 3] {
    [0, WATCHERS / 2 + 7, WATCHERS - 1]
}
