//! One `/sync` answer as sources fill it, in ruma's types where Matrix defines the
//! part, and named extensions (`tidings.*`) where it does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3::{Presence, Rooms};
use serde_json::Value;

use super::SyncToken;

/// What one `/sync` answers, before it is written as JSON.
#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    /// The token for the next request.
    pub next_batch: SyncToken,
    /// `presence.events`.
    pub presence: Presence,
    /// `rooms`.
    pub rooms: Rooms,
    /// Top-level keys of Tidings' extensions, such as `tidings.presence_requests`.
    pub extensions: BTreeMap<String, Value>,
    /// The filter the client asked for (`?filter=`); each source honours its parts.
    pub filter: Arc<FilterDefinition>,
}
