//! Scheduled housekeeping, on tokio-cron-scheduler: jobs that run at fixed times of
//! day, whatever the load, and must not be forgotten. Today: forget received txnIds
//! past their retention (a peer retries a transaction for minutes, never for days;
//! the table would otherwise grow by one row per transaction for ever), and feed
//! items stored longer ago than `feeds.item_retention_ms`.

use std::time::Duration;

use tokio_cron_scheduler::{Job, JobScheduler};

use crate::clock::SharedClock;
use crate::storage::Db;

/// How long a received txnId is remembered.
pub const RECEIVED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// When the pruning runs: every hour, at minute 17 (cron with seconds).
const PRUNE_SCHEDULE: &str = "0 17 * * * *";

/// Forget received txnIds older than [`RECEIVED_RETENTION`] now.
pub async fn prune_received(db: &Db, clock: &SharedClock) -> crate::Result<()> {
    let before = clock.now_ms().saturating_sub(RECEIVED_RETENTION.as_millis() as u64);
    db.write(move |s| s.prune_received(before)).await
}

/// Delete feed items stored more than `retention_ms` ago; how many.
pub async fn prune_feed_items(db: &Db, clock: &SharedClock, retention_ms: u64) -> crate::Result<u64> {
    let before = clock.now_ms().saturating_sub(retention_ms);
    db.write(move |s| s.items_prune(before)).await
}

/// Start the scheduled jobs; they run until the returned scheduler is shut down or
/// the process ends.
pub async fn start(db: Db, clock: SharedClock, feed_item_retention_ms: u64) -> Result<JobScheduler, String> {
    let scheduler = JobScheduler::new().await.map_err(|e| format!("cannot start the scheduler: {e}"))?;
    let prune = Job::new_async(PRUNE_SCHEDULE, move |_id, _scheduler| {
        let (db, clock) = (db.clone(), std::sync::Arc::clone(&clock));
        Box::pin(async move {
            match prune_received(&db, &clock).await {
                Ok(()) => tracing::debug!("pruned received txnIds past their retention"),
                Err(e) => tracing::warn!(error = %e, "pruning received txnIds failed; the next run tries again"),
            }
            match prune_feed_items(&db, &clock, feed_item_retention_ms).await {
                Ok(n) => tracing::debug!(items = n, "pruned feed items past their retention"),
                Err(e) => tracing::warn!(error = %e, "pruning feed items failed; the next run tries again"),
            }
        })
    })
    .map_err(|e| format!("bad housekeeping schedule: {e}"))?;
    scheduler.add(prune).await.map_err(|e| format!("cannot schedule housekeeping: {e}"))?;
    scheduler.start().await.map_err(|e| format!("cannot start the scheduler: {e}"))?;
    Ok(scheduler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn prunes_only_what_is_past_retention() {
        let db = crate::storage::memory();
        let day = 24 * 3600 * 1000;
        let clock = Arc::new(ManualClock::new(30 * day));
        db.write(move |s| {
            s.mark_received("peer.test", "old", 30 * day - 8 * day)?;
            s.mark_received("peer.test", "new", 30 * day - day)?;
            Ok(())
        })
        .await
        .expect("write");
        let shared: SharedClock = clock;
        prune_received(&db, &shared).await.expect("prune");
        let (old, new) = db
            .read(|s| Ok((s.was_received("peer.test", "old")?, s.was_received("peer.test", "new")?)))
            .await
            .expect("read");
        assert!(!old, "a txnId past retention is forgotten");
        assert!(new, "a recent txnId is kept");
    }
}
