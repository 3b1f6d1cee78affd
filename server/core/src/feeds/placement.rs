//! Where each feed comes from: the origin (polled here) or a peer that mirrors it.
//! [`FeedService::place`] applies [`super::mirrors::Mirrors::choose`] whenever the
//! watchers of a feed or the known mirrors change, and tells the peers concerned in
//! one unit: the new upstream (subscribe, with the watcher count), the old one
//! (stop), and every peer when this site stops mirroring a feed.

use super::edus::{Subscribe, Wanted};
use super::mirrors::Upstream;
use super::service::{FeedId, FeedService, NO_PEER_MIRROR};
use crate::error::Result;
use crate::storage::Unit;

/// Write what placement decides (source, resume position, announcement, and the
/// error when `with_error`) onto the row as it is at commit time: a poll that lands
/// meanwhile keeps its title, validators and counters.
fn save_placement(unit: &mut Unit, placed: crate::storage::feeds::FeedRow, with_error: bool) {
    unit.write(move |s| {
        let Some(mut f) = s.feed_get(placed.feed_id)? else { return Ok(()) };
        f.source = placed.source;
        f.upstream_pos = placed.upstream_pos;
        f.announced = placed.announced;
        if with_error {
            f.last_error = placed.last_error;
        }
        s.feed_save(&f)
    });
}

impl FeedService {
    /// Decide again where `feed_id` comes from, and act on it.
    pub async fn place(&self, feed_id: FeedId) -> Result<()> {
        let _one_at_a_time = self.placing.lock().await;
        let Some(mut feed) = self.db.read(move |s| s.feed_get(feed_id)).await? else { return Ok(()) };
        let (local, downstreams) = self.watchers(feed_id).await?;
        let watchers = local.len() as u64 + downstreams.iter().map(|d| d.watchers).sum::<u64>();
        let current = match Upstream::from_source(&feed.source) {
            Upstream::Origin if feed.fetches == 0 && !feed.announced => None,
            u => Some(u),
        };
        let now = self.clock.now_ms();
        let mut unit = Unit::new();
        let told = self.told(feed_id);
        if watchers == 0 {
            self.deadlines.schedule(&feed_id, None);
            if let Some(Upstream::Peer(p)) = &current {
                self.relay.subscribe_in(
                    &mut unit,
                    p,
                    &Subscribe { remove: vec![feed.url.clone()], ..Subscribe::default() },
                );
            }
            if feed.announced {
                feed.announced = false;
                self.relay.mirrors_in(&mut unit, true, Vec::new(), vec![feed.url.clone()]);
            }
            self.set_told(feed_id, None);
            save_placement(&mut unit, feed, false);
            return self.db.submit_unit(unit).wait().await;
        }
        let chosen = self.mirrors.choose(&feed.url, current.as_ref());
        let mut error_changed = false;
        // Scheduled once the new source is on disk, so the poll reads it.
        let mut poll_at = None;
        if chosen != current {
            tracing::info!(feed_id, url = %feed.url, from = ?current, to = ?chosen, "a feed changes upstream");
        }
        if let Some(Upstream::Peer(old)) = &current
            && chosen.as_ref() != current.as_ref()
        {
            let stop = Subscribe { remove: vec![feed.url.clone()], ..Subscribe::default() };
            self.relay.subscribe_in(&mut unit, old, &stop);
            self.set_told(feed_id, None);
        }
        match chosen {
            None => {
                feed.last_error = Some(NO_PEER_MIRROR.to_owned());
                error_changed = true;
                self.deadlines.schedule(&feed_id, None);
            }
            Some(Upstream::Origin) => {
                feed.source = Upstream::Origin.as_source();
                if self.deadlines.get(&feed_id).is_none() && !self.polling().contains(&feed_id) {
                    let at = match (current, feed.next_fetch_ts) {
                        (Some(Upstream::Origin), Some(next)) => next.max(now),
                        _ => now,
                    };
                    poll_at = Some(at);
                }
            }
            Some(Upstream::Peer(p)) => {
                self.deadlines.schedule(&feed_id, None);
                let moved = current.as_ref() != Some(&Upstream::Peer(p.clone()));
                if moved {
                    feed.source = Upstream::Peer(p.clone()).as_source();
                    feed.upstream_pos = 0;
                    feed.last_error = None;
                    error_changed = true;
                    if feed.announced {
                        feed.announced = false;
                        self.relay.mirrors_in(&mut unit, true, Vec::new(), vec![feed.url.clone()]);
                    }
                }
                if moved || told != Some(watchers) {
                    let since = (!moved && feed.upstream_pos > 0).then_some(feed.upstream_pos);
                    let want = Wanted { url: feed.url.clone(), watchers, since };
                    self.relay.subscribe_in(&mut unit, &p, &Subscribe { feeds: vec![want], ..Subscribe::default() });
                    self.set_told(feed_id, Some(watchers));
                }
            }
        }
        save_placement(&mut unit, feed, error_changed);
        self.db.submit_unit(unit).wait().await?;
        if let Some(at) = poll_at {
            self.deadlines.schedule_no_later(&feed_id, at);
        }
        Ok(())
    }

    /// Place every feed someone here or downstream watches whose URL is in `urls`
    /// (all watched feeds when `urls` is `None`).
    pub async fn place_all(&self, urls: Option<&[String]>) -> Result<()> {
        let feeds = self.db.read(|s| s.feeds_all()).await?;
        for f in feeds.into_iter().filter(|f| urls.is_none_or(|u| u.contains(&f.url))) {
            let (local, downstreams) = self.watchers(f.feed_id).await?;
            if !local.is_empty() || !downstreams.is_empty() {
                self.place(f.feed_id).await?;
            }
        }
        Ok(())
    }

    fn told(&self, feed_id: FeedId) -> Option<u64> {
        self.told_watchers.lock().unwrap_or_else(|p| p.into_inner()).get(&feed_id).copied()
    }

    fn set_told(&self, feed_id: FeedId, watchers: Option<u64>) {
        let mut told = self.told_watchers.lock().unwrap_or_else(|p| p.into_inner());
        match watchers {
            Some(w) => told.insert(feed_id, w),
            None => told.remove(&feed_id),
        };
    }
}
