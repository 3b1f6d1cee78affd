//! Assembling one `/sync` answer: wait until the user's head passes `since`, then
//! ask each source for what lies between `since` and the position read before
//! asking, so nothing that lands meanwhile is skipped.

use std::sync::Arc;
use std::time::Duration;

use ruma::OwnedUserId;
use ruma::presence::PresenceState;

use super::{Notifier, StreamCounter, SyncToken};
use crate::accounts::Device;
use crate::metrics::Metrics;
use crate::presence::{Edge, PresenceService, UserView};

/// How long a long poll may wait at the most, whatever the client asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// What a client asked of one /sync.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The `since` token, if any.
    pub since: Option<SyncToken>,
    /// How long to wait for something new.
    pub timeout: Duration,
    /// `set_presence`.
    pub set_presence: Option<PresenceState>,
    /// `full_state`: answer with everything, at once.
    pub full_state: bool,
}

/// One /sync answer, before it is turned into JSON.
#[derive(Debug, Clone)]
pub struct SyncBatch {
    /// The token to send back next time.
    pub next_batch: SyncToken,
    /// Presence the user may see that changed.
    pub presence: Vec<UserView>,
    /// New presence requests waiting for the user's answer.
    pub presence_requests: Vec<(OwnedUserId, Edge)>,
}

/// Builds sync batches from the stream sources.
#[derive(Debug)]
pub struct SyncService {
    presence: Arc<PresenceService>,
    notifier: Arc<Notifier>,
    counter: Arc<StreamCounter>,
    metrics: Arc<Metrics>,
}

impl SyncService {
    /// The sync service over its sources.
    pub fn new(
        presence: Arc<PresenceService>,
        notifier: Arc<Notifier>,
        counter: Arc<StreamCounter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { presence, notifier, counter, metrics }
    }

    /// Answer a /sync for `device`: at once for an initial or full-state sync, else
    /// when something the user may see changes, or at the timeout.
    pub async fn sync(&self, device: &Device, request: SyncRequest) -> SyncBatch {
        let user = &device.user_id;
        let _syncing = self.presence.sync_started(user, &device.device_id, request.set_presence.clone());
        let since = match request.since {
            Some(SyncToken(pos)) if !request.full_state => pos,
            _ => 0,
        };
        if since > 0 {
            self.metrics.syncs_waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let timeout = request.timeout.min(MAX_TIMEOUT);
            self.notifier.wait_past(user, since, timeout).await;
            self.metrics.syncs_waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        let upto = self.counter.current().max(since);
        let batch = SyncBatch {
            next_batch: SyncToken(upto),
            presence: self.presence.changes_for(user, since, upto),
            presence_requests: self.presence.requests_for(user, since, upto),
        };
        Metrics::inc(&self.metrics.syncs);
        batch
    }
}
