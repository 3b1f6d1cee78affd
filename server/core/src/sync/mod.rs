//! The ordered event stream behind `/sync`.
//!
//! One global counter orders everything a user may see ([`StreamCounter`]); each
//! source (presence, presence requests, and later feeds and posts) records the
//! position of its last change per item. A user's [`Notifier`] head is the highest
//! position that concerns them, so a long poll only has to wait for their head to
//! pass their `since` token, then ask each source for what lies in between
//! ([`SyncService`]).

mod counter;
mod notifier;
mod service;
mod token;

pub use counter::StreamCounter;
pub use notifier::Notifier;
pub use service::{MAX_TIMEOUT, SyncBatch, SyncRequest, SyncService};
pub use token::SyncToken;
