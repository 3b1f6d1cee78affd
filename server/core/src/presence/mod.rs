//! Presence: per-device activity, inferred idleness and absence, explicit status,
//! presence lists with consent, and the same across servers. See [`PresenceService`]
//! and, for peers, [`PresencePeers`].

mod consent;
pub mod edus;
mod fanout;
mod federation;
pub mod lists;
pub mod render;
mod service;
mod sources;
pub mod state;
mod watchdog;

pub use consent::Consent;
pub use federation::{PresencePeers, WatchdogDue, subscription_change};
pub use lists::{Edge, PresenceLists, Subscription};
pub use service::{PresenceService, SyncGuard, UserView};
pub use sources::{PresenceRequestsSource, PresenceSource};
pub use state::{DeviceView, Snapshot, Timings};
pub use watchdog::{Due, Watchdog, short_factor, stagger as watchdog_stagger};

/// The longest `status_msg`, in bytes, from a local client or from a peer.
pub const MAX_STATUS_MSG_BYTES: usize = 1024;
