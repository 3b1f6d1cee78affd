//! The domain of a Tidings homeserver: accounts, presence with consent, the stream
//! behind `/sync`, what crosses to peers, rate limits and storage. It knows nothing of
//! HTTP; the client API and federation crates call into it, and [`Core::open`] wires
//! its parts together.

pub mod accounts;
pub mod clock;
pub mod config;
pub mod error;
pub mod exchange;
pub mod feeds;
pub mod housekeeping;
pub mod ids;
pub mod lanes;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod ratelimit;
pub mod storage;
pub mod stream;
pub mod sync;
pub mod timers;

use std::path::Path;
use std::sync::Arc;

pub use error::{Error, ErrorKind, Result};

use accounts::AccountService;
use clock::SharedClock;
use config::{FeedsConfig, PeersConfig, PresenceConfig, RateLimitConfig};
use exchange::Exchange;
use feeds::{FeedService, FeedsSource};
use metrics::Metrics;
use outbound::Outbound;
use presence::{Consent, PresencePeers, PresenceRequestsSource, PresenceService, PresenceSource};
use ratelimit::RateLimiter;
use storage::Db;
use stream::{Notifier, Positions};
use sync::SyncService;

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
    /// Consent: presence lists, requests and answers.
    pub consent: Arc<Consent>,
    /// The presence protocol with peers (watchdogs, subscriptions).
    pub presence_peers: Arc<PresencePeers>,
    /// /sync.
    pub sync: Arc<SyncService>,
    /// Rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Wakes long polls.
    pub notifier: Arc<Notifier>,
    /// Stream positions and the commit watermark.
    pub positions: Arc<Positions>,
    /// What must leave for each peer, and its batch windows.
    pub outbound: Arc<Outbound>,
    /// Transactions in and out.
    pub exchange: Arc<Exchange>,
    /// Feed subscriptions and polling.
    pub feeds: Arc<FeedService>,
}

impl Core {
    /// Open the database under `data_dir` and load every service from it.
    pub fn open(
        data_dir: &Path,
        server_name: &str,
        presence: &PresenceConfig,
        rate_limits: &RateLimitConfig,
        clock: SharedClock,
        peers: &PeersConfig,
        feeds: &FeedsConfig,
    ) -> Result<Self> {
        let db = Db::open(&data_dir.join("tidings.sqlite"))?;
        Self::with_db(db, server_name, presence, rate_limits, clock, peers, feeds)
    }

    /// Load every service from `db` (tests hand a temporary database).
    pub fn with_db(
        db: Db,
        server_name: &str,
        presence: &PresenceConfig,
        rate_limits: &RateLimitConfig,
        clock: SharedClock,
        peers: &PeersConfig,
        feeds: &FeedsConfig,
    ) -> Result<Self> {
        let floor = db.read_blocking(|s| s.max_stream_pos())?;
        let positions = Arc::new(db.write_blocking(move |s| Positions::load(s, floor))?);
        let notifier = Arc::new(Notifier::new());
        let metrics = Arc::new(Metrics::default());
        let outbound =
            Arc::new(Outbound::load(db.clone(), Arc::clone(&clock), presence.batch_ms, peers.names.clone())?);
        let presence_service = PresenceService::load(
            db.clone(),
            presence,
            Arc::clone(&clock),
            Arc::clone(&positions),
            Arc::clone(&notifier),
            server_name,
            Arc::clone(&metrics),
            Arc::clone(&outbound),
        )?;
        let consent = Consent::new(&presence_service, presence.max_list_entries);
        let presence_peers = PresencePeers::new(
            Arc::clone(&presence_service),
            Arc::clone(&consent),
            &peers.names,
            peers.short_watchdog_ms,
            peers.long_watchdog_ms,
        );
        let exchange = Arc::new(Exchange::new(
            server_name,
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&outbound),
            vec![Arc::clone(&presence_peers) as Arc<dyn exchange::EduFamily>],
        ));
        let feeds =
            FeedService::new(db.clone(), Arc::clone(&clock), Arc::clone(&positions), Arc::clone(&notifier), feeds)?;
        let sync = Arc::new(SyncService::new(
            vec![
                Arc::new(PresenceSource(Arc::clone(&presence_service))),
                Arc::new(PresenceRequestsSource(Arc::clone(&presence_service))),
                Arc::new(FeedsSource(Arc::clone(&feeds))),
            ],
            Arc::clone(&notifier),
            Arc::clone(&positions),
            Arc::clone(&metrics),
        ));
        Ok(Self {
            server_name: server_name.into(),
            accounts: Arc::new(AccountService::new(db.clone(), server_name, Arc::clone(&clock))),
            limiter: Arc::new(RateLimiter::new(rate_limits.clone(), Arc::clone(&clock))),
            presence: presence_service,
            consent,
            presence_peers,
            sync,
            metrics,
            notifier,
            positions,
            outbound,
            exchange,
            feeds,
            clock,
            db,
        })
    }

    /// Run core's background tasks (presence timers and write-behind, watchdogs,
    /// batch windows, feed polling) until `shutdown` resolves; presence is flushed at the end.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let peers = tokio::spawn(Arc::clone(&self.presence_peers).run());
        let feeds = tokio::spawn(Arc::clone(&self.feeds).run());
        let outbound = Arc::clone(&self.outbound);
        let windows = tokio::spawn(async move { outbound.run().await });
        Arc::clone(&self.presence).run(shutdown).await;
        peers.abort();
        windows.abort();
        feeds.abort();
    }
}
