//! Presence: per-device activity, inferred idleness and absence, explicit status,
//! and presence lists with consent. See [`PresenceService`].

mod deadlines;
pub mod lists;
mod remote;
mod service;
pub mod state;

pub use lists::{Edge, PresenceLists, Subscription};
pub use remote::Refusal;
pub use service::{PresenceService, SyncGuard, UserView};
pub use state::{DeviceView, Snapshot, Timings};
