//! The domain of a Tidings homeserver: accounts, presence with consent, the sync
//! stream, rate limits and storage. It knows nothing of HTTP; the client API and
//! federation crates call into it, and [`Core::open`] wires its parts together.

pub mod accounts;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod ratelimit;
pub mod storage;
pub mod sync;

use std::path::Path;
use std::sync::Arc;

pub use error::{Error, ErrorKind, Result};

use accounts::AccountService;
use clock::SharedClock;
use config::{PresenceConfig, RateLimitConfig};
use metrics::Metrics;
use outbound::Outbound;
use presence::PresenceService;
use ratelimit::RateLimiter;
use storage::Db;
use sync::{Notifier, StreamCounter, SyncService};

/// The core services of one homeserver, each shared by handle. This is wiring only:
/// callers hand each handler just the services it uses.
#[derive(Debug, Clone)]
pub struct Core {
    /// This server's name.
    pub server_name: Arc<str>,
    /// The clock everything reads.
    pub clock: SharedClock,
    /// The database.
    pub db: Db,
    /// Accounts, devices, tokens.
    pub accounts: Arc<AccountService>,
    /// Presence and presence lists.
    pub presence: Arc<PresenceService>,
    /// /sync.
    pub sync: Arc<SyncService>,
    /// Rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Wakes long polls.
    pub notifier: Arc<Notifier>,
    /// What must leave for each peer.
    pub outbound: Arc<Outbound>,
}

impl Core {
    /// Open the database under `data_dir` and load every service from it.
    pub fn open(
        data_dir: &Path,
        server_name: &str,
        presence: &PresenceConfig,
        rate_limits: &RateLimitConfig,
        clock: SharedClock,
        peers: Vec<String>,
    ) -> Result<Self> {
        let db = Db::open(&data_dir.join("tidings.sqlite"))?;
        let floor = db.call_blocking(|c| storage::presence::max_stream_pos(c))?;
        let counter = Arc::new(db.call_blocking(|c| StreamCounter::load(c, floor))?);
        let notifier = Arc::new(Notifier::new());
        let metrics = Arc::new(Metrics::default());
        let outbound = Arc::new(Outbound::load(db.clone(), Arc::clone(&clock), peers)?);
        let presence_service = PresenceService::load(
            db.clone(),
            presence,
            Arc::clone(&clock),
            Arc::clone(&counter),
            Arc::clone(&notifier),
            server_name,
            Arc::clone(&metrics),
            Arc::clone(&outbound),
        )?;
        let sync = Arc::new(SyncService::new(
            Arc::clone(&presence_service),
            Arc::clone(&notifier),
            counter,
            Arc::clone(&metrics),
        ));
        Ok(Self {
            server_name: server_name.into(),
            accounts: Arc::new(AccountService::new(db.clone(), server_name, Arc::clone(&clock))),
            limiter: Arc::new(RateLimiter::new(rate_limits.clone(), Arc::clone(&clock))),
            presence: presence_service,
            sync,
            metrics,
            notifier,
            outbound,
            clock,
            db,
        })
    }
}
