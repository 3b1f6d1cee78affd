//! One `/sync` answer as sources fill it, in ruma's types where Matrix defines the
//! part, and named extensions (`tidings.*`) where it does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::api::client::sync::sync_events::v3::{GlobalAccountData, Presence, Rooms, ToDevice};
use ruma::{OneTimeKeyAlgorithm, UInt};
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
    /// `account_data`: the user's global account data.
    pub account_data: GlobalAccountData,
    /// `to_device`: messages for the syncing device.
    pub to_device: ToDevice,
    /// `device_lists`: whose devices changed.
    pub device_lists: DeviceLists,
    /// `device_one_time_keys_count` of the syncing device.
    pub device_one_time_keys_count: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    /// `device_unused_fallback_key_types` of the syncing device.
    pub device_unused_fallback_key_types: Option<Vec<OneTimeKeyAlgorithm>>,
    /// Top-level keys of Tidings' extensions, such as `tidings.presence_requests`.
    pub extensions: BTreeMap<String, Value>,
    /// The filter the client asked for (`?filter=`); each source honours its parts.
    pub filter: Arc<FilterDefinition>,
}
