//! The domain of a Tidings homeserver: accounts, presence with consent, the stream
//! behind `/sync`, what crosses to peers, rate limits and storage. It knows nothing of
//! HTTP; the client API and federation crates call into it, and [`Core::open`] wires
//! its parts together.

pub mod account_data;
pub mod accounts;
pub mod clock;
pub mod config;
pub mod devices;
pub mod e2ee;
pub mod error;
pub mod exchange;
pub mod feeds;
pub mod filters;
pub mod housekeeping;
pub mod ids;
pub mod lanes;
pub mod media;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod push_rules;
pub mod ratelimit;
pub mod rooms;
pub mod rooms_seams;
pub mod storage;
pub mod stream;
pub mod sync;
pub mod timers;

use std::path::Path;
use std::sync::Arc;

pub use error::{Error, ErrorKind, Result};

use account_data::{AccountDataService, AccountDataSource};
use accounts::AccountService;
use clock::SharedClock;
use config::{ClientAreas, FeedsConfig, PeersConfig, PresenceConfig, RateLimitConfig};
use devices::DeviceService;
use e2ee::{DeviceListsSource, E2eeMarks, KeyCountsSource, KeyService, SharedRooms, ToDeviceService, ToDeviceSource};
use exchange::Exchange;
use feeds::{FeedFederation, FeedPeers, FeedService, FeedsSource};
use filters::FilterService;
use media::MediaService;
use metrics::Metrics;
use outbound::Outbound;
use presence::{Consent, PresencePeers, PresenceRequestsSource, PresenceService, PresenceSource};
use push_rules::PushRuleService;
use ratelimit::RateLimiter;
use rooms::{RoomService, RoomsSource};
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
    /// Feeds between sites: the `tidings.feed_*` EDU family and its timers.
    pub feed_peers: Arc<FeedPeers>,
    /// Rooms on this site.
    pub rooms: Arc<RoomService>,
    /// Sync filters.
    pub filters: Arc<FilterService>,
    /// Account data, global and per room.
    pub account_data: Arc<AccountDataService>,
    /// Push rules.
    pub push_rules: Arc<PushRuleService>,
    /// Devices: list, rename, delete.
    pub devices: Arc<DeviceService>,
    /// End-to-end keys.
    pub keys: Arc<KeyService>,
    /// To-device messages.
    pub to_device: Arc<ToDeviceService>,
    /// Uploaded media.
    pub media: Arc<MediaService>,
    /// What clients are told and bounded by (`[client]`).
    pub client_config: Arc<config::ClientConfig>,
}

impl Core {
    /// Open the database under `data_dir` and load every service from it.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        data_dir: &Path,
        server_name: &str,
        presence: &PresenceConfig,
        rate_limits: &RateLimitConfig,
        clock: SharedClock,
        peers: &PeersConfig,
        feeds: &FeedsConfig,
        client: &ClientAreas,
    ) -> Result<Self> {
        let db = Db::open(&data_dir.join("tidings.sqlite"))?;
        Self::with_db(db, server_name, presence, rate_limits, clock, peers, feeds, client)
    }

    /// Load every service from `db` (tests hand a temporary database); media files
    /// live in `media/` beside the database file.
    #[allow(clippy::too_many_arguments)]
    pub fn with_db(
        db: Db,
        server_name: &str,
        presence: &PresenceConfig,
        rate_limits: &RateLimitConfig,
        clock: SharedClock,
        peers: &PeersConfig,
        feeds: &FeedsConfig,
        client: &ClientAreas,
    ) -> Result<Self> {
        let floor = db.read_blocking(|s| {
            Ok(s.max_stream_pos()?.max(s.client_state_max_stream_pos()?).max(s.e2ee_max_stream_pos()?))
        })?;
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
        let presence_peers = PresencePeers::new(Arc::clone(&presence_service), Arc::clone(&consent), peers);
        let feeds = FeedService::new(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&positions),
            Arc::clone(&notifier),
            feeds,
            FeedFederation {
                server_name: server_name.to_owned(),
                outbound: Arc::clone(&outbound),
                peer_urls: peers.urls.clone(),
            },
        )?;
        let feed_peers = FeedPeers::new(Arc::clone(&feeds));
        let exchange = Arc::new(Exchange::new(
            server_name,
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&outbound),
            vec![
                Arc::clone(&presence_peers) as Arc<dyn exchange::EduFamily>,
                Arc::clone(&feed_peers) as Arc<dyn exchange::EduFamily>,
            ],
        ));
        let room_service = RoomService::load(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&positions),
            Arc::clone(&notifier),
            server_name,
            &client.rooms,
        )?;
        // Who hears of a user's device changes: the members of their rooms.
        let shared_rooms: Arc<dyn SharedRooms> = Arc::new(rooms_seams::RoomMembers(Arc::clone(&room_service)));
        let accounts = Arc::new(AccountService::new(db.clone(), server_name, Arc::clone(&clock)));
        let account_data =
            AccountDataService::new(db.clone(), Arc::clone(&positions), Arc::clone(&notifier), &client.client);
        let e2ee_marks = Arc::new(E2eeMarks::new(positions.visible()));
        let keys = KeyService::new(
            db.clone(),
            Arc::clone(&positions),
            Arc::clone(&notifier),
            Arc::clone(&shared_rooms),
            server_name,
            &client.e2ee,
            Arc::clone(&e2ee_marks),
        );
        let to_device =
            ToDeviceService::new(db.clone(), Arc::clone(&positions), Arc::clone(&notifier), server_name, &client.e2ee);
        let devices = DeviceService::new(
            db.clone(),
            Arc::clone(&accounts),
            Arc::clone(&positions),
            Arc::clone(&notifier),
            shared_rooms,
            e2ee_marks,
        );
        let media_dir = db.path().parent().map_or_else(|| std::path::PathBuf::from("media"), |d| d.join("media"));
        let media = Arc::new(MediaService::new(db.clone(), Arc::clone(&clock), media_dir, server_name, &client.media)?);
        let filters = Arc::new(FilterService::new(db.clone(), &client.client));
        room_service.set_filter_lookup(Arc::new(rooms_seams::StoredFilters(Arc::clone(&filters))));
        let sync = Arc::new(SyncService::new(
            vec![
                Arc::new(RoomsSource(Arc::clone(&room_service))),
                Arc::new(PresenceSource(Arc::clone(&presence_service))),
                Arc::new(PresenceRequestsSource(Arc::clone(&presence_service))),
                Arc::new(FeedsSource(Arc::clone(&feeds))),
                Arc::new(AccountDataSource(Arc::clone(&account_data), Arc::clone(&room_service))),
                Arc::new(ToDeviceSource(Arc::clone(&to_device))),
                Arc::new(DeviceListsSource(Arc::clone(&keys))),
                Arc::new(KeyCountsSource(Arc::clone(&keys))),
            ],
            Arc::clone(&notifier),
            Arc::clone(&positions),
            Arc::clone(&metrics),
        ));
        Ok(Self {
            server_name: server_name.into(),
            accounts,
            filters,
            push_rules: Arc::new(PushRuleService::new(Arc::clone(&account_data))),
            account_data,
            devices,
            keys,
            to_device,
            media,
            client_config: Arc::new(client.client.clone()),
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
            feed_peers,
            rooms: room_service,
            clock,
            db,
        })
    }

    /// Run core's background tasks (presence timers and write-behind, watchdogs,
    /// batch windows, feed polling) until `shutdown` resolves; presence is flushed at the end.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let peers = tokio::spawn(Arc::clone(&self.presence_peers).run());
        let feeds = tokio::spawn(Arc::clone(&self.feeds).run());
        let feed_peers = tokio::spawn(Arc::clone(&self.feed_peers).run());
        let typing = tokio::spawn(Arc::clone(&self.rooms).run());
        let outbound = Arc::clone(&self.outbound);
        let windows = tokio::spawn(async move { outbound.run().await });
        Arc::clone(&self.presence).run(shutdown).await;
        peers.abort();
        windows.abort();
        feeds.abort();
        feed_peers.abort();
        typing.abort();
    }
}
