//! Account data (`/user/{userId}/account_data/{type}` and
//! `/user/{userId}/rooms/{roomId}/account_data/{type}`): private JSON a user's
//! clients keep on the server, global or per room, each entry at the stream position
//! of its last change, and a `/sync` source over it. Push rules are the global entry
//! `m.push_rules` ([`crate::push_rules`]); clients may not write that one directly.

mod service;
mod source;

pub use service::{AccountDataService, PUSH_RULES};
pub use source::AccountDataSource;
