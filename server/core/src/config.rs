//! Configuration of the parts that live in core, one small struct per area.
//! The server binary composes them into the whole TOML file; every field has a
//! default and unknown keys are refused, so a typo stops start-up.

use serde::Deserialize;

/// `[presence]`: timings of presence inference and batching.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// A device inactive this long is idle; a user whose devices are all idle is "unavailable".
    pub idle_after_ms: u64,
    /// With no syncing client for this long, a user is "offline".
    pub offline_after_ms: u64,
    /// Changes to one destination wait at most this long before they leave, coalesced per user.
    pub batch_ms: u64,
    /// A user's watch list, and the requests pending for one user, stop here.
    pub max_list_entries: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { idle_after_ms: 300_000, offline_after_ms: 30_000, batch_ms: 10_000, max_list_entries: 1000 }
    }
}

/// The peers core exchanges EDUs with, and the watchdog periods of each (the
/// federation crate reads the rest of `[federation]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeersConfig {
    /// The server names of the configured peers.
    pub names: Vec<String>,
    /// Per peer: reset by anything heard from it.
    pub short_watchdog_ms: u64,
    /// Per peer: reset by a status reminder; expiries are staggered across peers.
    pub long_watchdog_ms: u64,
    /// Each peer's HTTP base URL, as configured (feed mirrors link to theirs).
    pub urls: std::collections::BTreeMap<String, String>,
    /// Peers reached over a line that calls (the link's `sessions` mode): silence
    /// between calls is expected, so their watchdogs follow
    /// [`crate::presence::watchdog::Watchdog::calls`].
    pub calls: std::collections::BTreeSet<String>,
    /// On such a line, how late a due call may come (the link's longest maximum wait
    /// of a short message): added to the silence after which a peer goes stale.
    pub calls_grace_ms: u64,
}

/// One rate: a sustained number of actions per second and a burst allowance.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained actions per second.
    pub per_second: f64,
    /// Actions allowed at once before the sustained rate applies.
    pub burst: u32,
}

/// `[rate_limits]`: per-action limits, generous enough for real clients.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `false` turns every limit off (benchmarks, load tests).
    pub enabled: bool,
    /// Login attempts per client address.
    pub login: Rate,
    /// Registrations per client address.
    pub register: Rate,
    /// Presence and device-status writes per user.
    pub presence: Rate,
    /// Presence-list edits (each naming up to 100 user IDs) per user.
    pub presence_list: Rate,
    /// Answers to presence requests per user.
    pub presence_answer: Rate,
    /// Poll switches (`PUT .../presence/poll`) per user.
    pub presence_poll: Rate,
    /// Room events (messages, state, redactions, memberships) sent per user.
    pub room_send: Rate,
    /// Rooms created per user.
    pub room_create: Rate,
    /// Receipts, read markers and typing notices per user.
    pub room_ephemeral: Rate,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            login: Rate { per_second: 1.0, burst: 10 },
            register: Rate { per_second: 0.5, burst: 10 },
            presence: Rate { per_second: 10.0, burst: 50 },
            presence_list: Rate { per_second: 1.0, burst: 20 },
            presence_answer: Rate { per_second: 5.0, burst: 50 },
            presence_poll: Rate { per_second: 1.0, burst: 10 },
            room_send: Rate { per_second: 10.0, burst: 100 },
            room_create: Rate { per_second: 0.2, burst: 10 },
            room_ephemeral: Rate { per_second: 20.0, burst: 100 },
        }
    }
}

/// `[feeds] fetch`: where feed documents come from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeedFetch {
    /// Fetch origin URLs directly.
    Direct,
    /// Only through peers, never the origin (mirroring is not built yet: such a
    /// feed records the error "no peer mirrors this feed yet").
    Peers,
}

/// `[feeds]`: polling, limits and the SSRF guard of feed subscriptions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeedsConfig {
    /// Where documents come from.
    pub fetch: FeedFetch,
    /// Never poll one feed more often than this.
    pub min_interval_ms: u64,
    /// Never poll a watched feed less often than this.
    pub max_interval_ms: u64,
    /// Larger documents are refused (checked while the body streams in).
    pub max_document_bytes: u64,
    /// `true` lets feed URLs resolve to loopback, private or link-local addresses.
    pub allow_private_addresses: bool,
    /// One user subscribes to at most this many feeds.
    pub max_subscriptions_per_user: u64,
    /// Items older than this (by when they were stored) are pruned hourly.
    pub item_retention_ms: u64,
    /// A mirror heard from not at all for this long is given up (seed 002: 40 minutes).
    pub mirror_silence_ms: u64,
    /// An upstream tells each downstream it is alive when nothing else went to it for
    /// this long (seed 002: every 10 minutes), so a quiet feed is not a silent mirror.
    pub alive_interval_ms: u64,
    /// One peer subscribes to at most this many feeds through us.
    pub max_peer_feeds: u64,
    /// More CA certificates (PEM) trusted for `https://` feeds, beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// One fetch (its redirects and the whole body included) is given up after this.
    pub fetch_timeout_ms: u64,
    /// Requests to one host go one at a time, this far apart (0: no limit per host).
    pub host_spacing_ms: u64,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            fetch: FeedFetch::Direct,
            min_interval_ms: 300_000,
            max_interval_ms: 86_400_000,
            max_document_bytes: 5_242_880,
            allow_private_addresses: false,
            max_subscriptions_per_user: 500,
            item_retention_ms: 90 * 86_400_000,
            mirror_silence_ms: 2_400_000,
            alive_interval_ms: 600_000,
            max_peer_feeds: 10_000,
            ca_file: None,
            fetch_timeout_ms: 60_000,
            host_spacing_ms: 1_000,
        }
    }
}

/// `[rooms]`: bounds of what one user can make the server hold in rooms.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// A user may be joined to or invited into at most this many rooms at once.
    pub max_rooms_per_user: usize,
    /// A room holds at most this many aliases.
    pub max_aliases_per_room: usize,
    /// A typing notice lasts at most this long, whatever the client asks.
    pub max_typing_timeout_ms: u64,
    /// One room has at most this many members (joined and invited).
    pub max_members_per_room: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            max_rooms_per_user: 1000,
            max_aliases_per_room: 20,
            max_typing_timeout_ms: 120_000,
            max_members_per_room: 10_000,
        }
    }
}

/// `[client]`: what clients keep on the server (filters, account data) and how they
/// find it (`/.well-known/matrix/client`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The base URL clients should use, announced in `/.well-known/matrix/client`;
    /// absent: `http://` and the listener's address.
    pub base_url: Option<String>,
    /// One user stores at most this many distinct filters.
    pub max_filters_per_user: u64,
    /// One user stores at most this many account-data entries (global and per room).
    pub max_account_data_per_user: u64,
    /// One account-data entry (or filter) is at most this many bytes of JSON.
    pub max_account_data_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            max_filters_per_user: 100,
            max_account_data_per_user: 1000,
            max_account_data_bytes: 65_536,
        }
    }
}

/// `[e2ee]`: bounds of what devices keep on the server for end-to-end encryption.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct E2eeConfig {
    /// One device holds at most this many unclaimed one-time keys.
    pub max_one_time_keys_per_device: u64,
    /// At most this many to-device messages wait for one device; more are refused (429).
    pub max_to_device_queue: u64,
    /// One to-device message's content is at most this many bytes of JSON.
    pub max_to_device_bytes: usize,
    /// One device's signed device keys (or one cross-signing key) are at most this many bytes of JSON.
    pub max_device_keys_bytes: usize,
    /// One device or master key carries at most this many uploaded signatures.
    pub max_signatures_per_key: u64,
}

impl Default for E2eeConfig {
    fn default() -> Self {
        Self {
            max_one_time_keys_per_device: 1000,
            max_to_device_queue: 1000,
            max_to_device_bytes: 65_536,
            max_device_keys_bytes: 16_384,
            max_signatures_per_key: 100,
        }
    }
}

/// `[media]`: uploads (`max_upload_bytes` itself is a top-level key; the server
/// copies it here).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Bytes one user may have uploaded in total; an upload past it gets 413 `M_TOO_LARGE`.
    pub quota_bytes_per_user: u64,
    /// An image file larger than this is not thumbnailed (413 `M_TOO_LARGE`).
    pub max_thumbnail_source_bytes: u64,
    /// An image whose header declares more pixels (width × height) than this is not
    /// decoded for a thumbnail (413 `M_TOO_LARGE`); it bounds a thumbnail's memory.
    pub max_thumbnail_source_pixels: u64,
    /// Larger uploads get 413 `M_TOO_LARGE` (top-level `max_upload_bytes`).
    #[serde(skip)]
    pub max_upload_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            quota_bytes_per_user: 1_073_741_824,
            max_thumbnail_source_bytes: 20_971_520,
            max_thumbnail_source_pixels: 16_777_216,
            max_upload_bytes: 52_428_800,
        }
    }
}

/// The client-state areas together, as `Core` takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientAreas {
    /// `[client]`.
    pub client: ClientConfig,
    /// `[e2ee]`.
    pub e2ee: E2eeConfig,
    /// `[media]` and `max_upload_bytes`.
    pub media: MediaConfig,
    /// `[rooms]`.
    pub rooms: RoomsConfig,
}
