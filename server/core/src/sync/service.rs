//! Assembling one `/sync` answer: wait until the user's head passes `since`, wait
//! until that head is visible (committed), read the visible position once, then ask
//! every source for what lies in `(since, upto]`. A change that lands meanwhile has a
//! position above `upto`; it bumped the head, so the next sync returns at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ruma::{OwnedDeviceId, UserId};

use super::{Source, SyncRange, SyncResponse, SyncToken};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::stream::{Notifier, Positions};

/// How long a long poll may wait at the most, whatever the client asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a sync waits for a change it was woken for to be committed.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// What a client asked of one /sync.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The `since` token, if any.
    pub since: Option<SyncToken>,
    /// How long to wait for something new.
    pub timeout: Duration,
    /// `full_state`: answer with everything, at once.
    pub full_state: bool,
    /// The device syncing, for the sources that answer per device (to-device
    /// messages, key counts); `None` asks only what is per user.
    pub device: Option<OwnedDeviceId>,
    /// The filter (`?filter=`), resolved.
    pub filter: Arc<ruma::api::client::filter::FilterDefinition>,
}

/// Builds sync answers from the sources.
#[derive(Debug)]
pub struct SyncService {
    sources: Vec<Arc<dyn Source>>,
    notifier: Arc<Notifier>,
    positions: Arc<Positions>,
    metrics: Arc<Metrics>,
}

impl SyncService {
    /// The sync service over `sources`, asked in this order.
    pub fn new(
        sources: Vec<Arc<dyn Source>>,
        notifier: Arc<Notifier>,
        positions: Arc<Positions>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { sources, notifier, positions, metrics }
    }

    /// Answer a /sync of `user`: at once for an initial or full-state sync, else when
    /// something the user may see changes, or at the timeout. A token from the future
    /// (not issued by this server) is refused with `M_INVALID_PARAM`.
    pub async fn sync(&self, user: &UserId, request: SyncRequest) -> Result<SyncResponse> {
        let since = match request.since {
            Some(SyncToken(pos)) if !request.full_state => Some(pos),
            _ => None,
        };
        if let Some(since) = since {
            if since > self.positions.visible() {
                return Err(Error::invalid_param(format!(
                    "'{}' is not a sync token this server issued",
                    SyncToken(since)
                )));
            }
            self.metrics.syncs_waiting.fetch_add(1, Ordering::Relaxed);
            let timeout = request.timeout.min(MAX_TIMEOUT);
            let head = self.notifier.wait_past(user, since, timeout).await;
            self.metrics.syncs_waiting.fetch_sub(1, Ordering::Relaxed);
            if let Some(head) = head {
                self.positions.wait_visible(head, COMMIT_WAIT).await;
            }
        }
        let upto = self.positions.visible().max(since.unwrap_or(0));
        let range = SyncRange { since, upto };
        let mut out = SyncResponse { next_batch: SyncToken(upto), filter: request.filter, ..SyncResponse::default() };
        for source in &self.sources {
            match request.device.as_deref() {
                Some(device) => source.collect_for(user, device, range, &mut out).await?,
                None => source.collect(user, range, &mut out).await?,
            }
        }
        Metrics::inc(&self.metrics.syncs);
        Ok(out)
    }
}
