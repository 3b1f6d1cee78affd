//! The feed service: subscriptions, the items a subscriber may read, and the
//! polling loop that fetches, parses and stores each watched feed on its own
//! deadline (the one timer idiom, [`Deadlines`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ruma::UserId;
use tokio::sync::Semaphore;

use super::fetch::{FetchError, Fetched, Fetcher, Validators};
use super::guard::{is_public, parse_feed_url};
use super::hosts::{HostGate, host_of};
use super::mirrors::{Mirrors, Upstream};
use super::parse::{ParsedFeed, ParsedItem, parse_blocking};
use super::relay::Relay;
use super::schedule::{Inputs, interval_ms, with_jitter};
use crate::clock::SharedClock;
use crate::config::{FeedFetch, FeedsConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::outbound::Outbound;
use crate::storage::feed_peers::Downstream;
use crate::storage::feeds::{FeedRow, ItemRow};
use crate::storage::{Db, Unit};
use crate::stream::{Notifier, Positions};
use crate::timers::Deadlines;

/// A feed's ID.
pub type FeedId = i64;

/// The error recorded on a feed while `fetch = "peers"` and no mirroring exists.
pub const NO_PEER_MIRROR: &str = "no peer mirrors this feed yet";
/// Polls running at once; the rest wait their turn.
const CONCURRENT_POLLS: usize = 4;
/// Items taken from one document.
const MAX_ITEMS_PER_DOCUMENT: usize = 1000;
/// At start, due feeds are spread over this much time (or `min_interval_ms`, if shorter).
const START_SPREAD_MS: u64 = 60_000;

/// One subscription as the client lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The feed.
    pub feed: FeedRow,
    /// When the user subscribed, Unix ms.
    pub subscribed_ts: u64,
}

/// One feed as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    /// The feed.
    pub feed: FeedRow,
    /// Local subscribers.
    pub subscribers: u64,
    /// Watchers at the peers that subscribe to it through us.
    pub remote_watchers: u64,
    /// When the next poll is due, if one is scheduled.
    pub next_fetch_ts: Option<u64>,
}

/// One poll's answer from the origin, parsed.
enum Polled {
    /// 304: nothing changed.
    NotModified { fresh_ms: Option<u64> },
    /// A document, parsed.
    Parsed { parsed: ParsedFeed, validators: Validators, fresh_ms: Option<u64> },
}

/// Where a feed service sits among its peers.
#[derive(Debug)]
pub struct FeedFederation {
    /// This server's name.
    pub server_name: String,
    /// The queues to peers.
    pub outbound: Arc<Outbound>,
    /// Each peer's HTTP base URL.
    pub peer_urls: BTreeMap<String, String>,
}

/// The cached feed as a LAN mirror serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorDocument {
    /// The Atom document.
    pub body: String,
    /// Its entity tag (changes when an item or the known mirrors change).
    pub etag: String,
    /// When it last changed, Unix ms.
    pub modified_ms: u64,
}

/// Subscriptions and polling of feeds, and where each feed comes from.
#[derive(Debug)]
pub struct FeedService {
    pub(super) db: Db,
    pub(super) clock: SharedClock,
    positions: Arc<Positions>,
    notifier: Arc<Notifier>,
    pub(super) config: FeedsConfig,
    fetcher: Fetcher,
    pub(super) deadlines: Deadlines<FeedId>,
    pub(super) polling: Mutex<HashSet<FeedId>>,
    permits: Arc<Semaphore>,
    /// One request at a time per origin host, spaced.
    hosts: HostGate,
    /// Peers' mirrors and the rule that picks a feed's upstream.
    pub(super) mirrors: Mirrors,
    /// Feed EDUs to peers, queued in the unit of the change that causes them.
    pub(super) relay: Relay,
    /// One placement (deciding where a feed comes from) at a time.
    pub(super) placing: tokio::sync::Mutex<()>,
    /// The watcher count last told to each feed's upstream.
    pub(super) told_watchers: Mutex<HashMap<FeedId, u64>>,
    /// Each peer's HTTP base URL (the mirror document links to theirs).
    peer_urls: BTreeMap<String, String>,
    /// No item has a stream position above this: a sync whose `since` is at or past
    /// it has no feed items to look up, so it does not touch the database. Starts at
    /// the position the stream resumed at (above every item stored before).
    latest_item_pos: Arc<AtomicU64>,
}

impl FeedService {
    /// A service over `db`, in `federation`; [`Self::run`] starts polling.
    pub fn new(
        db: Db,
        clock: SharedClock,
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        config: &FeedsConfig,
        federation: FeedFederation,
    ) -> Result<Arc<Self>> {
        let FeedFederation { server_name, outbound, peer_urls } = federation;
        let server_name = server_name.as_str();
        let ca_pem =
            match &config.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    crate::Error::internal(format!("feeds.ca_file: cannot read {}: {e}", path.display()))
                })?),
                None => None,
            };
        let mirrors = Mirrors::new(server_name, config.fetch, &outbound.peers());
        let (known, modes) = db.read_blocking(|s| Ok((s.mirrors_all()?, s.peer_modes()?)))?;
        mirrors.load(known, modes);
        Ok(Arc::new(Self {
            relay: Relay::new(outbound, Arc::clone(&clock)),
            peer_urls,
            mirrors,
            placing: tokio::sync::Mutex::new(()),
            told_watchers: Mutex::new(HashMap::new()),
            latest_item_pos: Arc::new(AtomicU64::new(positions.current())),
            fetcher: Fetcher::new(
                config.max_document_bytes,
                config.allow_private_addresses,
                config.fetch_timeout_ms,
                ca_pem.as_deref(),
            )?,
            hosts: HostGate::new(config.host_spacing_ms),
            db,
            clock,
            positions,
            notifier,
            config: config.clone(),
            deadlines: Deadlines::new(),
            polling: Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(CONCURRENT_POLLS)),
        }))
    }

    pub(super) fn polling(&self) -> std::sync::MutexGuard<'_, HashSet<FeedId>> {
        self.polling.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe `user` to the feed at `url` (subscribing twice is harmless); the
    /// feed's ID. A feed never fetched is polled at once.
    pub async fn subscribe(&self, user: &UserId, url: &str) -> Result<FeedId> {
        let url = parse_feed_url(url)?;
        self.refuse_private_host(&url).await?;
        let (url, user_id, now, cap) =
            (url.to_string(), user.to_string(), self.clock.now_ms(), self.config.max_subscriptions_per_user);
        let feed_id = self
            .db
            .write(move |s| {
                let feed = match s.feed_by_url(&url)? {
                    Some(f) => f,
                    None => FeedRow { feed_id: s.feed_insert(&url, now)?, ..FeedRow::default() },
                };
                if s.subscribed_ts(&user_id, feed.feed_id)?.is_none() && s.subscription_count(&user_id)? >= cap {
                    return Err(Error::new(
                        ErrorKind::LimitExceeded { retry_after_ms: 0 },
                        format!("one user subscribes to at most {cap} feeds (feeds.max_subscriptions_per_user)"),
                    ));
                }
                s.subscription_add(&user_id, feed.feed_id, now)?;
                Ok(feed.feed_id)
            })
            .await?;
        self.place(feed_id).await?;
        Ok(feed_id)
    }

    /// A name that resolves only to addresses the guard refuses is refused at once
    /// (the fetcher checks again, on every fetch and redirect).
    async fn refuse_private_host(&self, url: &url::Url) -> Result<()> {
        if self.config.allow_private_addresses {
            return Ok(());
        }
        super::guard::check_literal_host(url, false)?;
        if let Some(url::Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(80);
            if let Ok(found) = tokio::net::lookup_host((name, port)).await {
                let ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                if !ips.is_empty() && !ips.iter().any(|ip| is_public(*ip)) {
                    return Err(Error::invalid_param(format!(
                        "{name} resolves only to private, loopback or link-local addresses \
                         (feeds.allow_private_addresses is false)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Unsubscribe; a feed nobody subscribes to any more is no longer polled.
    pub async fn unsubscribe(&self, user: &UserId, feed_id: FeedId) -> Result<()> {
        let user_id = user.to_string();
        self.db
            .write(move |s| if s.subscription_remove(&user_id, feed_id)? { Ok(()) } else { Err(not_subscribed()) })
            .await?;
        self.place(feed_id).await
    }

    /// The user's subscriptions.
    pub async fn list(&self, user: &UserId) -> Result<Vec<Subscription>> {
        let user_id = user.to_string();
        let rows = self.db.read(move |s| s.subscriptions_of(&user_id)).await?;
        Ok(rows.into_iter().map(|(feed, subscribed_ts)| Subscription { feed, subscribed_ts }).collect())
    }

    /// Items of a feed the user subscribes to: after `since` (a stream position),
    /// oldest first, at most `limit`; without `since`, the newest `limit`. The token
    /// for the next page is the position of the last item (or `since`).
    pub async fn items(
        &self,
        user: &UserId,
        feed_id: FeedId,
        since: Option<u64>,
        limit: u64,
    ) -> Result<(Vec<ItemRow>, u64)> {
        let user_id = user.to_string();
        self.db
            .read(move |s| {
                if s.subscribed_ts(&user_id, feed_id)?.is_none() {
                    return Err(not_subscribed());
                }
                let items = match since {
                    Some(since) => s.items_after(feed_id, since, limit)?,
                    None => s.items_newest(feed_id, limit)?,
                };
                let next = items.iter().map(|i| i.stream_pos).max().or(since).unwrap_or(0);
                Ok((items, next))
            })
            .await
    }

    /// Items of the user's feeds changed in `(since, upto]`, oldest change first.
    pub async fn changes_for(&self, user: &UserId, since: u64, upto: u64) -> Result<Vec<ItemRow>> {
        if self.latest_item_pos.load(Ordering::SeqCst) <= since {
            return Ok(Vec::new());
        }
        let user_id = user.to_string();
        self.db.read(move |s| s.items_changed_for(&user_id, since, upto)).await
    }

    /// The cached feed at `url` for LAN readers, if someone here subscribes to it.
    /// It never fetches: a feed nobody here watches is `None`, however it is asked.
    pub async fn mirror(&self, url: &str) -> Result<Option<MirrorDocument>> {
        let Ok(url) = parse_feed_url(url) else { return Ok(None) };
        let url = url.to_string();
        let found = self
            .db
            .read(move |s| {
                let Some(feed) = s.feed_by_url(&url)? else { return Ok(None) };
                if s.subscribers(feed.feed_id)?.is_empty() {
                    return Ok(None);
                }
                let items = s.items_newest(feed.feed_id, super::atom::MIRROR_ITEMS)?;
                Ok(Some((feed, items)))
            })
            .await?;
        let Some((feed, items)) = found else { return Ok(None) };
        let bases: Vec<String> = self
            .mirrors
            .mirrors_of(&feed.url)
            .iter()
            .filter_map(|p| self.peer_urls.get(p))
            .map(|u| format!("{}/_tidings/mirror/", u.trim_end_matches('/')))
            .collect();
        let newest = items.iter().map(|i| i.stream_pos).max().unwrap_or(0);
        let modified_ms = items.iter().map(|i| i.stored_ts).max().or(feed.last_fetched_ts).unwrap_or(feed.created_ts);
        let etag = format!("\"{}-{newest}-{}\"", feed.feed_id, super::edus::set_hash(&bases));
        Ok(Some(MirrorDocument { body: super::atom::document(&feed, &items, &bases), etag, modified_ms }))
    }

    /// Every feed with its subscribers and next poll (the admin API).
    pub async fn status(&self) -> Result<Vec<FeedStatus>> {
        let (feeds, counts, remote) =
            self.db.read(|s| Ok((s.feeds_all()?, s.subscriber_counts()?, s.remote_watcher_counts()?))).await?;
        let counts: HashMap<FeedId, u64> = counts.into_iter().collect();
        let remote: HashMap<FeedId, u64> = remote.into_iter().collect();
        Ok(feeds
            .into_iter()
            .map(|feed| FeedStatus {
                subscribers: counts.get(&feed.feed_id).copied().unwrap_or(0),
                remote_watchers: remote.get(&feed.feed_id).copied().unwrap_or(0),
                next_fetch_ts: self.deadlines.get(&feed.feed_id),
                feed,
            })
            .collect())
    }

    /// When `feed_id` is next polled, if it is scheduled.
    pub fn next_poll(&self, feed_id: FeedId) -> Option<u64> {
        self.deadlines.get(&feed_id)
    }

    /// Poll watched feeds on their deadlines, for ever. At start each watched feed
    /// resumes at its stored deadline; overdue ones are spread over a minute.
    pub async fn run(self: Arc<Self>) {
        match self.db.read(|s| Ok((s.feeds_all()?, s.subscriber_counts()?))).await {
            Ok((feeds, counts)) => {
                let now = self.clock.now_ms();
                let watched: HashSet<FeedId> = counts.into_iter().map(|(id, _)| id).collect();
                let spread = START_SPREAD_MS.min(self.config.min_interval_ms).max(1);
                for f in feeds.into_iter().filter(|f| watched.contains(&f.feed_id)) {
                    let at = match f.next_fetch_ts {
                        Some(at) if at > now => at,
                        _ => now + rand::random::<u64>() % spread,
                    };
                    self.deadlines.schedule_no_later(&f.feed_id, at);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot load the feeds to poll; polling only new subscriptions"),
        }
        let me = Arc::clone(&self);
        self.deadlines
            .run(Arc::clone(&self.clock), move |due| {
                for feed_id in due {
                    if !me.polling().insert(feed_id) {
                        continue;
                    }
                    let svc = Arc::clone(&me);
                    tokio::spawn(async move {
                        if let Err(e) = svc.poll(feed_id).await {
                            tracing::warn!(feed_id, error = %e, "polling a feed failed; it is tried again later");
                            let retry = svc.clock.now_ms() + svc.config.min_interval_ms;
                            svc.deadlines.schedule_no_later(&feed_id, retry);
                        }
                        svc.polling().remove(&feed_id);
                    });
                }
                std::future::ready(())
            })
            .await;
    }

    /// Fetch, parse and store one feed now, then schedule its next poll. What it
    /// found goes to the peers that subscribe to it through us, in the same unit.
    pub async fn poll(&self, feed_id: FeedId) -> Result<()> {
        let (feed, subscribers, downstreams) = self
            .db
            .read(move |s| Ok((s.feed_get(feed_id)?, s.subscribers(feed_id)?, s.downstreams_of(feed_id)?)))
            .await?;
        let Some(mut feed) = feed else { return Ok(()) };
        if subscribers.is_empty() && downstreams.is_empty() {
            return Ok(()); // nobody watches it: not polled until someone subscribes
        }
        if self.config.fetch == FeedFetch::Peers || Upstream::from_source(&feed.source) != Upstream::Origin {
            return Ok(()); // it comes from a peer: placement decides, and schedules a poll if that changes
        }
        // The host's turn first, then a permit: a poll waiting for its host holds none.
        let turn = self.hosts.turn(&host_of(feed.fetch_url.as_deref().unwrap_or(&feed.url))).await;
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        let now = self.clock.now_ms();
        feed.fetches += 1;
        let failed_before = feed.failures > 0;
        let mut retry_after_ms = None;
        let mut unit = Unit::new();
        let mut staged = Vec::new();
        let fetched = self.fetch_discovering(&mut feed, now).await;
        drop(turn);
        let outcome = match fetched {
            Ok(Polled::Parsed { parsed, validators, fresh_ms }) => {
                staged = self.stage_items(&mut unit, feed_id, parsed.items, now).await?;
                feed.title = parsed.title.clone().or(feed.title);
                feed.etag = validators.etag;
                feed.last_modified = validators.last_modified;
                feed.hint_ms = fresh_ms.max(parsed.ttl_ms);
                Ok(())
            }
            Ok(Polled::NotModified { fresh_ms }) => {
                feed.not_modified += 1;
                feed.hint_ms = fresh_ms.or(feed.hint_ms);
                Ok(())
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                feed.last_fetched_ts = Some(now);
                feed.failures = 0;
                feed.last_error = None;
                if failed_before {
                    self.relay.status_in(&mut unit, &feed, None, None);
                }
                if !feed.announced {
                    // A mirror announces a feed only once it holds it.
                    feed.announced = true;
                    self.relay.mirrors_in(&mut unit, true, vec![feed.url.clone()], Vec::new());
                }
            }
            Err(e) => {
                tracing::info!(feed_id, error = %e.message, "a feed fetch failed");
                self.relay.status_in(&mut unit, &feed, e.code, Some(&e.message));
                feed.errors += 1;
                feed.failures = feed.failures.saturating_add(1);
                feed.last_error = Some(e.message);
                retry_after_ms = e.retry_after_ms;
            }
        }
        let watchers = subscribers.len() as u64 + downstreams.iter().map(|d| d.watchers).sum::<u64>();
        let inputs = Inputs { subscribers: watchers, hint_ms: feed.hint_ms, failures: feed.failures, retry_after_ms };
        let next = now
            + with_jitter(
                interval_ms(self.config.min_interval_ms, self.config.max_interval_ms, inputs),
                rand::random::<f64>(),
            );
        feed.next_fetch_ts = Some(next);
        self.relay.items_in(&mut unit, &feed, None, &staged);
        self.publish_in(&mut unit, subscribers, &staged);
        unit.write(move |s| {
            // Where the feed comes from is placement's: keep what it decided meanwhile.
            if let Some(now) = s.feed_get(feed_id)?
                && now.source != feed.source
            {
                feed.source = now.source;
                feed.upstream_pos = now.upstream_pos;
                feed.announced = now.announced;
            }
            s.feed_save(&feed)
        });
        self.db.submit_unit(unit).wait().await?;
        // An unsubscription meanwhile cleared nothing we are about to set: check again.
        let still_watched = self
            .db
            .read(move |s| Ok(!s.subscribers(feed_id)?.is_empty() || !s.downstreams_of(feed_id)?.is_empty()))
            .await?;
        if still_watched {
            self.deadlines.schedule_no_later(&feed_id, next);
        }
        Ok(())
    }

    /// After `unit` commits, wake `subscribers` for the items staged in it.
    pub(super) fn publish_in(&self, unit: &mut Unit, subscribers: Vec<String>, staged: &[ItemRow]) {
        let Some(pos) = staged.iter().map(|i| i.stream_pos).max() else { return };
        let notifier = Arc::clone(&self.notifier);
        unit.after(move |ok| {
            if ok {
                for user in subscribers.iter().filter_map(|u| UserId::parse(u.as_str()).ok()) {
                    notifier.bump(&user, pos);
                }
            }
        });
    }

    /// Watchers of a feed: local subscribers and the downstreams' counts.
    pub(super) async fn watchers(&self, feed_id: FeedId) -> Result<(Vec<String>, Vec<Downstream>)> {
        self.db.read(move |s| Ok((s.subscribers(feed_id)?, s.downstreams_of(feed_id)?))).await
    }

    /// Fetch and parse the feed's document. When the URL gives an HTML page that names
    /// its feed (and no feed was found before), the feed is fetched instead, once, and
    /// fetched from there on.
    async fn fetch_discovering(&self, feed: &mut FeedRow, now: u64) -> std::result::Result<Polled, FetchError> {
        let validators = Validators { etag: feed.etag.clone(), last_modified: feed.last_modified.clone() };
        let from = feed.fetch_url.clone().unwrap_or_else(|| feed.url.clone());
        let (body, validators, fresh_ms) = match self.fetcher.fetch(&from, &validators, now).await? {
            Fetched::NotModified { fresh_ms } => return Ok(Polled::NotModified { fresh_ms }),
            Fetched::Document { body, validators, fresh_ms } => (Arc::new(body), validators, fresh_ms),
        };
        let parsed = parse_blocking(Arc::clone(&body)).await;
        if parsed.is_ok() || feed.fetch_url.is_some() {
            return Ok(Polled::Parsed { parsed: parsed.map_err(FetchError::new)?, validators, fresh_ms });
        }
        let page = url::Url::parse(&feed.url).map_err(|e| FetchError::new(e.to_string()))?;
        let Some(found) = super::discover::alternate_feed(&body, &page) else {
            return Err(FetchError::new(parsed.err().unwrap_or_default()));
        };
        tracing::info!(feed_id = feed.feed_id, found = %found, "the page names its feed; fetching that");
        feed.fetch_url = Some(found.to_string());
        match self.fetcher.fetch(found.as_str(), &Validators::default(), now).await? {
            Fetched::NotModified { fresh_ms } => Ok(Polled::NotModified { fresh_ms }),
            Fetched::Document { body, validators, fresh_ms } => {
                let parsed = parse_blocking(Arc::new(body)).await.map_err(FetchError::new)?;
                Ok(Polled::Parsed { parsed, validators, fresh_ms })
            }
        }
    }

    /// Add the new and changed ones of `items` (in document order, newest first) to
    /// `unit`, each at a new stream position, the oldest first; the rows staged.
    pub(super) async fn stage_items(
        &self,
        unit: &mut Unit,
        feed_id: FeedId,
        items: Vec<ParsedItem>,
        now: u64,
    ) -> Result<Vec<ItemRow>> {
        let mut seen = HashSet::new();
        let fresh: Vec<_> =
            items.into_iter().filter(|i| seen.insert(i.key.clone())).take(MAX_ITEMS_PER_DOCUMENT).collect();
        let keys: Vec<String> = fresh.iter().map(|i| i.key.clone()).collect();
        let existing: Vec<Option<ItemRow>> =
            self.db.read(move |s| keys.iter().map(|k| s.item_by_key(feed_id, k)).collect()).await?;
        let mut staged = Vec::new();
        // Documents list the newest first; the oldest gets the lowest position.
        for (item, old) in fresh.into_iter().zip(existing).rev() {
            if old.as_ref().is_some_and(|o| o.content_hash == item.content_hash) {
                continue;
            }
            let published_ts =
                item.published_ts.or(old.as_ref().map(|o| o.published_ts)).or(item.updated_ts).unwrap_or(now);
            let updated_ts = item.updated_ts.unwrap_or(if old.is_some() { now } else { published_ts });
            let row = ItemRow {
                item_id: old.as_ref().map_or(0, |o| o.item_id),
                feed_id,
                item_key: item.key,
                content_hash: item.content_hash,
                title: item.title,
                link: item.link,
                summary: item.summary,
                author: item.author,
                published_ts,
                updated_ts,
                stored_ts: now,
                stream_pos: self.positions.reserve_in(unit),
            };
            let stored = row.clone();
            unit.write(move |s| s.item_put(&stored).map(|_| ()));
            staged.push(row);
        }
        if let Some(last) = staged.iter().map(|i| i.stream_pos).max() {
            let latest = Arc::clone(&self.latest_item_pos);
            unit.after(move |ok| {
                if ok {
                    latest.fetch_max(last, Ordering::SeqCst);
                }
            });
        }
        Ok(staged)
    }
}

fn not_subscribed() -> Error {
    Error::not_found("you do not subscribe to this feed")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::TokioClock;

    /// One subscriber polls every 4 × this (without failures).
    const MIN: u64 = 1_000;
    const MAX: u64 = 60_000;

    fn service(fetch: FeedFetch) -> Arc<FeedService> {
        let config = FeedsConfig {
            fetch,
            min_interval_ms: MIN,
            max_interval_ms: MAX,
            allow_private_addresses: true,
            ..FeedsConfig::default()
        };
        with_config(&config)
    }

    fn with_config(config: &FeedsConfig) -> Arc<FeedService> {
        let clock: SharedClock = Arc::new(TokioClock::new());
        let positions = Arc::new(Positions::in_memory(0));
        let db = crate::storage::memory();
        let outbound = Arc::new(Outbound::load(db.clone(), Arc::clone(&clock), 100, Vec::new()).expect("outbound"));
        let federation = FeedFederation { server_name: "hs.test".into(), outbound, peer_urls: BTreeMap::new() };
        FeedService::new(db, clock, positions, Arc::new(Notifier::new()), config, federation).expect("service")
    }

    fn user(name: &str) -> ruma::OwnedUserId {
        UserId::parse(format!("@{name}:hs.test")).expect("user id")
    }

    async fn fetches(svc: &FeedService, id: FeedId) -> (u64, Option<String>) {
        let s = svc.status().await.expect("status");
        let f = s.iter().find(|s| s.feed.feed_id == id).expect("feed");
        (f.feed.fetches, f.feed.last_error.clone())
    }

    /// Under tokio's paused clock: a failing feed is polled at once, then backs off
    /// (doubling, within the jitter) up to `max_interval_ms` but never stops; once
    /// nobody subscribes it is not polled at all.
    #[tokio::test(start_paused = true)]
    async fn failing_feeds_back_off_and_unwatched_feeds_stop() {
        let svc = service(FeedFetch::Direct);
        let alice = user("alice");
        // Loopback's discard port: nothing listens, every fetch is refused at once.
        let url = "http://127.0.0.1:9/feed.xml";
        let id = svc.subscribe(&alice, url).await.expect("subscribe");
        assert_eq!(svc.subscribe(&alice, url).await.expect("again"), id);
        let runner = tokio::spawn(Arc::clone(&svc).run());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (n, error) = fetches(&svc, id).await;
        assert_eq!(n, 1, "a new feed is polled at once");
        assert!(error.is_some(), "the failure is recorded");
        let mut expected = 4 * MIN;
        for round in 2..=8u64 {
            expected = (expected * 2).min(MAX);
            let now = svc.clock.now_ms();
            let due = svc.next_poll(id).expect("a failing feed stays scheduled");
            let wait = due - now;
            // The poll's own connect may let the paused clock run a few ms.
            assert!(
                (expected - 50..=expected + expected / 10).contains(&wait),
                "round {round}: waits {wait}, not ~{expected}"
            );
            tokio::time::sleep(Duration::from_millis(wait - 1)).await;
            assert_eq!(fetches(&svc, id).await.0, round - 1, "not before its deadline");
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(fetches(&svc, id).await.0, round);
        }
        svc.unsubscribe(&alice, id).await.expect("unsubscribe");
        assert_eq!(svc.next_poll(id), None);
        tokio::time::sleep(Duration::from_millis(10 * MAX)).await;
        assert_eq!(fetches(&svc, id).await.0, 8, "an unwatched feed is not polled");
        assert!(svc.unsubscribe(&alice, id).await.is_err(), "not subscribed any more");
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_subscription_cap_names_its_key() {
        let svc = with_config(&FeedsConfig { max_subscriptions_per_user: 1, ..FeedsConfig::default() });
        let bob = user("bob");
        svc.subscribe(&bob, "http://93.184.216.34/a").await.expect("first");
        svc.subscribe(&bob, "http://93.184.216.34/a").await.expect("the same one again is not a new one");
        let e = svc.subscribe(&bob, "http://93.184.216.34/b").await.expect_err("over the cap");
        assert!(e.message().contains("feeds.max_subscriptions_per_user"), "{}", e.message());
        let e = svc.subscribe(&bob, "http://10.0.0.1/feed").await.expect_err("private");
        assert_eq!(e.kind(), ErrorKind::InvalidParam);
    }

    const V1: &str = r#"<rss version="2.0"><channel><title>T</title>
        <item><guid>b</guid><title>Second</title></item>
        <item><guid>a</guid><title>First</title></item></channel></rss>"#;

    async fn store(svc: &FeedService, id: FeedId, doc: &str, now: u64) -> Option<u64> {
        let parsed = crate::feeds::parse::parse(doc.as_bytes()).expect("parse");
        let mut unit = Unit::new();
        let staged = svc.stage_items(&mut unit, id, parsed.items, now).await.expect("stage");
        svc.db.submit_unit(unit).wait().await.expect("commit");
        staged.iter().map(|i| i.stream_pos).max()
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_title_is_an_update_at_a_new_position() {
        let svc = service(FeedFetch::Peers);
        let carol = user("carol");
        let id = svc.subscribe(&carol, "http://93.184.216.34/feed").await.expect("subscribe");
        assert_eq!(store(&svc, id, V1, 1_000).await, Some(2));
        let (items, next) = svc.items(&carol, id, None, 10).await.expect("items");
        let titles: Vec<_> = items.iter().map(|i| i.title.as_str()).collect();
        assert_eq!((titles, next), (vec!["First", "Second"], 2), "oldest in the document first");
        assert_eq!(store(&svc, id, V1, 2_000).await, None, "an unchanged document writes nothing");
        let first_id = items[0].item_id;
        assert_eq!(store(&svc, id, &V1.replace("First", "First, corrected"), 3_000).await, Some(3));
        let (changed, next) = svc.items(&carol, id, Some(2), 10).await.expect("items");
        assert_eq!(changed.len(), 1);
        assert_eq!((changed[0].item_id, changed[0].title.as_str(), next), (first_id, "First, corrected", 3));
        assert_eq!(changed[0].published_ts, 1_000, "first seen, kept");
        assert_eq!(changed[0].updated_ts, 3_000, "changed now");
        let in_sync = svc.changes_for(&carol, 2, 3).await.expect("sync");
        assert_eq!(in_sync.len(), 1);
        assert!(svc.changes_for(&user("dave"), 0, 3).await.expect("sync").is_empty(), "only subscribers see items");
        assert!(svc.items(&user("dave"), id, None, 10).await.is_err(), "not subscribed: 404");
    }
}
