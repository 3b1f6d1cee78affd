//! Feeds between sites: the `tidings.feed_*` EDU family. A site that fetches a feed
//! from its origin announces that it mirrors it; others subscribe through it with
//! their watcher counts and get only new and changed items; a downstream gives up
//! a mirror that fails or falls silent and takes another (or the origin), and
//! after a restart names its subscription set by a hash instead of resending it.
//!
//! Two timers, on the one timer idiom: per downstream, an alive notice when nothing
//! else went to it for `feeds.alive_interval_ms`; per upstream, the silence after
//! which its mirrors are given up (`feeds.mirror_silence_ms`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::json;

use super::edus::{self, Items, Mirrors, Resume, ResumeAnswer, Status, Subscribe, Wanted, set_hash};
use super::guard::parse_feed_url;
use super::mirrors::{DropReason, Upstream};
use super::parse::MAX_SUMMARY_CHARS;
use super::relay::items_edus;
use super::service::{FeedId, FeedService};
use crate::config::FeedFetch;
use crate::error::Result;
use crate::exchange::{EduFamily, Handled, IncomingEdu};
use crate::storage::Unit;
use crate::storage::feeds::FeedRow;
use crate::sync::BoxFuture;
use crate::timers::Deadlines;

/// Items sent to a downstream that subscribes without saying what it has.
const FIRST_ITEMS: u64 = 50;
/// Items sent at most to a downstream that resumes.
const RESUME_ITEMS: u64 = 500;
/// The longest title kept from a peer, in characters.
const MAX_TITLE_CHARS: usize = 1000;

/// The feed EDU family.
#[derive(Debug)]
pub struct FeedPeers {
    service: Arc<FeedService>,
    /// Per downstream: when to send an alive notice.
    alive: Arc<Deadlines<String>>,
    /// Per upstream: when its mirrors are given up for silence.
    silence: Deadlines<String>,
}

fn decode<T: DeserializeOwned>(edu: IncomingEdu) -> std::result::Result<T, Handled> {
    serde_json::from_value(edu.content).map_err(|e| Handled::Refused(format!("malformed {}: {e}", edu.edu_type)))
}

impl FeedPeers {
    /// The family over `service`.
    pub fn new(service: Arc<FeedService>) -> Arc<Self> {
        Arc::new(Self { service, alive: Arc::new(Deadlines::new()), silence: Deadlines::new() })
    }

    /// Tell peers our mode once (and on change), resume with each upstream by hash,
    /// then run the two timers for ever.
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.start().await {
            tracing::warn!(error = %e, "cannot resume feed federation; it starts from what arrives");
        }
        let clock = Arc::clone(&self.service.clock);
        let me = Arc::clone(&self);
        let alive = self.alive.run(Arc::clone(&clock), move |due| {
            let me = Arc::clone(&me);
            async move {
                for peer in due {
                    if let Err(e) = me.alive_due(&peer).await {
                        tracing::warn!(%peer, error = %e, "cannot send a feed alive notice");
                    }
                }
            }
        });
        let me = Arc::clone(&self);
        let silence = self.silence.run(clock, move |due| {
            let me = Arc::clone(&me);
            async move {
                for peer in due {
                    if let Err(e) = me.silent(&peer).await {
                        tracing::warn!(%peer, error = %e, "cannot give up a silent mirror");
                    }
                }
            }
        });
        tokio::join!(alive, silence);
    }

    async fn start(&self) -> Result<()> {
        let svc = &self.service;
        let fetches = svc.config.fetch == FeedFetch::Direct;
        let (feeds, downstream_peers) = svc.db.read(|s| Ok((s.feeds_all()?, s.downstream_peers()?))).await?;
        let now = svc.clock.now_ms();
        let announced: Vec<String> = feeds.iter().filter(|f| f.announced).map(|f| f.url.clone()).collect();
        let mut upstreams: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &feeds {
            if let Upstream::Peer(p) = Upstream::from_source(&f.source) {
                upstreams.entry(p).or_default().push(f.url.clone());
            }
        }
        let mut unit = Unit::new();
        let peers = svc.relay.peers();
        svc.relay.job_in(&mut unit, move |s, q, now| {
            // Peers assume a site fetches until told otherwise, and learn what it
            // mirrors as it starts to: a direct site with nothing mirrored says nothing.
            let nothing_to_say = fetches && announced.is_empty();
            for peer in &peers {
                let told = s.told_mode(peer)?;
                if told != Some(fetches) && !(nothing_to_say && told.is_none()) {
                    let m = Mirrors { fetches, add: announced.clone(), remove: Vec::new() };
                    q.push(s, peer, edus::MIRRORS, &json!(m), now)?;
                    s.told_mode_put(peer, fetches)?;
                }
            }
            Ok(())
        });
        for (peer, urls) in &upstreams {
            svc.relay.queue_in(&mut unit, peer, edus::RESUME, Resume { hash: set_hash(urls) });
            self.silence.schedule(peer, Some(now + svc.config.mirror_silence_ms));
        }
        svc.db.submit_unit(unit).wait().await?;
        for peer in downstream_peers {
            self.alive.schedule(&peer, Some(now + svc.config.alive_interval_ms));
        }
        if svc.config.fetch == FeedFetch::Peers {
            svc.place_all(None).await?;
        }
        Ok(())
    }

    /// Nothing went to `peer` for a while: say we are here, while it subscribes through us.
    async fn alive_due(&self, peer: &str) -> Result<()> {
        let svc = &self.service;
        let p = peer.to_owned();
        if svc.db.read(move |s| s.downstream_count(&p)).await? == 0 {
            return Ok(());
        }
        let (now, every) = (svc.clock.now_ms(), svc.config.alive_interval_ms);
        let last = svc.relay.last_queued(peer).unwrap_or(0);
        if last + every <= now {
            let mut unit = Unit::new();
            svc.relay.queue_in(&mut unit, peer, edus::ALIVE, json!({}));
            svc.db.submit_unit(unit).wait().await?;
            self.alive.schedule(&peer.to_owned(), Some(now + every));
        } else {
            self.alive.schedule(&peer.to_owned(), Some(last + every));
        }
        Ok(())
    }

    /// Nothing was heard from `peer` for `mirror_silence_ms`: give it up as the
    /// mirror of every feed it carries for us.
    async fn silent(&self, peer: &str) -> Result<()> {
        let svc = &self.service;
        let source = Upstream::Peer(peer.to_owned()).as_source();
        let carried: Vec<FeedRow> =
            svc.db.read(|s| s.feeds_all()).await?.into_iter().filter(|f| f.source == source).collect();
        for f in carried {
            tracing::warn!(%peer, url = %f.url, "a mirror fell silent; giving it up");
            svc.mirrors.drop_mirror(peer, &f.url, DropReason::Silence);
            svc.place(f.feed_id).await?;
        }
        Ok(())
    }

    fn on_mirrors(&self, origin: &str, m: Mirrors, unit: &mut Unit) -> Handled {
        let (o, add, remove, fetches) = (origin.to_owned(), m.add.clone(), m.remove.clone(), m.fetches);
        unit.write(move |s| {
            s.peer_mode_put(&o, fetches)?;
            for url in &add {
                s.mirror_add(&o, url)?;
            }
            for url in &remove {
                s.mirror_remove(&o, url)?;
            }
            Ok(())
        });
        let (svc, o) = (Arc::clone(&self.service), origin.to_owned());
        // After-commit steps run on the writer thread: spawn on the runtime we came from.
        let runtime = tokio::runtime::Handle::current();
        unit.after(move |ok| {
            if !ok {
                return;
            }
            svc.mirrors.announce(&o, m.fetches, &m.add, &m.remove);
            runtime.spawn(async move {
                let urls: Vec<String> = m.add.into_iter().chain(m.remove).collect();
                let all = svc.config.fetch == FeedFetch::Peers;
                if let Err(e) = svc.place_all(if all { None } else { Some(&urls) }).await {
                    tracing::warn!(error = %e, "cannot place feeds after an announcement");
                }
            });
        });
        Handled::Applied
    }

    fn on_subscribe(&self, origin: &str, sub: Subscribe, unit: &mut Unit) -> Handled {
        let svc = &self.service;
        let cap = svc.config.max_peer_feeds;
        let wanted: Vec<Wanted> = sub
            .feeds
            .into_iter()
            .filter_map(|w| match parse_feed_url(&w.url) {
                Ok(u) => Some(Wanted { url: u.to_string(), ..w }),
                Err(e) => {
                    tracing::info!(%origin, url = %w.url, error = %e, "refused a feed a peer asked for");
                    None
                }
            })
            .collect();
        let (o, remove, full) = (origin.to_owned(), sub.remove, sub.full);
        let touched = Arc::new(std::sync::Mutex::new(Vec::<FeedId>::new()));
        let t = Arc::clone(&touched);
        svc.relay.job_in(unit, move |s, q, now| {
            let mut touched = t.lock().unwrap_or_else(|p| p.into_inner());
            if full {
                for url in s.downstream_urls(&o)? {
                    if let Some(f) = s.feed_by_url(&url)? {
                        touched.push(f.feed_id);
                    }
                }
                s.downstream_clear(&o)?;
            }
            for url in &remove {
                if let Some(f) = s.feed_by_url(url)?
                    && s.downstream_remove(&o, f.feed_id)?
                {
                    touched.push(f.feed_id);
                }
            }
            let mut count = s.downstream_count(&o)?;
            for w in &wanted {
                let feed = match s.feed_by_url(&w.url)? {
                    Some(f) => f,
                    None if count < cap => {
                        let id = s.feed_insert(&w.url, now)?;
                        FeedRow { feed_id: id, url: w.url.clone(), ..FeedRow::default() }
                    }
                    None => {
                        tracing::info!(peer = %o, url = %w.url, "a peer asks for more feeds than feeds.max_peer_feeds");
                        continue;
                    }
                };
                let known = s.downstreams_of(feed.feed_id)?.iter().any(|d| d.peer == o);
                if !known && count >= cap {
                    tracing::info!(peer = %o, url = %w.url, "a peer asks for more feeds than feeds.max_peer_feeds");
                    continue;
                }
                if s.downstream_put(&o, feed.feed_id, w.watchers, now)? {
                    count += 1;
                }
                touched.push(feed.feed_id);
                if known && w.since.is_none() {
                    continue; // a watcher count changed: nothing more to send
                }
                let rows = match w.since {
                    Some(since) => s.items_after(feed.feed_id, since, RESUME_ITEMS)?,
                    None => s.items_newest(feed.feed_id, FIRST_ITEMS)?,
                };
                for edu in items_edus(&feed, &rows) {
                    q.push(s, &o, edus::ITEMS, &edu, now)?;
                }
            }
            Ok(())
        });
        let me_svc = Arc::clone(&self.service);
        let (alive, o, every) = (Arc::clone(&self.alive), origin.to_owned(), svc.config.alive_interval_ms);
        // After-commit steps run on the writer thread: spawn on the runtime we came from.
        let runtime = tokio::runtime::Handle::current();
        unit.after(move |ok| {
            if !ok {
                return;
            }
            alive.schedule_no_later(&o, me_svc.clock.now_ms() + every);
            let feeds: Vec<FeedId> = std::mem::take(&mut *touched.lock().unwrap_or_else(|p| p.into_inner()));
            let unique: Vec<FeedId> = feeds.into_iter().collect::<HashSet<_>>().into_iter().collect();
            runtime.spawn(async move {
                for feed_id in unique {
                    if let Err(e) = me_svc.place(feed_id).await {
                        tracing::warn!(feed_id, error = %e, "cannot place a feed a peer asked for");
                    }
                }
            });
        });
        Handled::Applied
    }

    async fn on_items(&self, origin: &str, items: Items, unit: &mut Unit) -> Result<Handled> {
        let svc = &self.service;
        let url = items.url.clone();
        let Some(feed) = svc.db.read(move |s| s.feed_by_url(&url)).await? else {
            return Ok(Handled::Refused("items of a feed nobody here subscribes to".into()));
        };
        let (local, downstreams) = svc.watchers(feed.feed_id).await?;
        if local.is_empty() && downstreams.is_empty() {
            return Ok(Handled::Refused("items of a feed nobody here subscribes to".into()));
        }
        let from_upstream = feed.source == Upstream::Peer(origin.to_owned()).as_source();
        let parsed = items
            .items
            .into_iter()
            .map(|w| {
                let mut p = w.into_parsed();
                p.summary = p.summary.chars().take(MAX_SUMMARY_CHARS).collect();
                p.title = p.title.chars().take(MAX_TITLE_CHARS).collect();
                p
            })
            .rev() // the EDU lists the oldest first; documents, which stage_items expects, the newest
            .collect();
        let now = svc.clock.now_ms();
        let staged = svc.stage_items(unit, feed.feed_id, parsed, now).await?;
        svc.relay.items_in(unit, &feed, Some(origin), &staged);
        svc.publish_in(unit, local, &staged);
        let (feed_id, title, upto, fetched) = (
            feed.feed_id,
            items.title.map(|t| t.chars().take(MAX_TITLE_CHARS).collect()),
            items.upto,
            items.fetched_ts,
        );
        unit.write(move |s| {
            let Some(mut f) = s.feed_get(feed_id)? else { return Ok(()) };
            f.title = title.or(f.title);
            f.last_fetched_ts = fetched.or(f.last_fetched_ts);
            if from_upstream {
                f.upstream_pos = f.upstream_pos.max(upto);
                f.last_error = None;
            }
            s.feed_save(&f)
        });
        if from_upstream {
            svc.mirrors.succeeded(origin, &feed.url);
        }
        Ok(Handled::Applied)
    }

    async fn on_status(&self, origin: &str, status: Status, unit: &mut Unit) -> Result<Handled> {
        let svc = &self.service;
        let url = status.url.clone();
        let Some(feed) = svc.db.read(move |s| s.feed_by_url(&url)).await? else {
            return Ok(Handled::Refused("the status of a feed nobody here subscribes to".into()));
        };
        if feed.source != Upstream::Peer(origin.to_owned()).as_source() {
            return Ok(Handled::Applied); // not our upstream for it (any more)
        }
        let dropped = match &status.error {
            None => {
                svc.mirrors.succeeded(origin, &feed.url);
                None
            }
            Some(_) => svc.mirrors.failed(origin, &feed.url, status.code),
        };
        let (feed_id, error) = (feed.feed_id, status.error.clone());
        unit.write(move |s| {
            let Some(mut f) = s.feed_get(feed_id)? else { return Ok(()) };
            f.last_error = error;
            s.feed_save(&f)
        });
        if let Some(why) = dropped {
            tracing::warn!(peer = %origin, url = %feed.url, ?why, "giving up a failing mirror");
            let (svc, feed_id) = (Arc::clone(&self.service), feed.feed_id);
            // After-commit steps run on the writer thread: spawn on the runtime we came from.
            let runtime = tokio::runtime::Handle::current();
            unit.after(move |ok| {
                if ok {
                    runtime.spawn(async move {
                        if let Err(e) = svc.place(feed_id).await {
                            tracing::warn!(feed_id, error = %e, "cannot place a feed");
                        }
                    });
                }
            });
        }
        Ok(Handled::Applied)
    }

    fn on_resume(&self, origin: &str, resume: Resume, unit: &mut Unit) -> Handled {
        let o = origin.to_owned();
        self.service.relay.job_in(unit, move |s, q, now| {
            let ok = set_hash(&s.downstream_urls(&o)?) == resume.hash;
            q.push(s, &o, edus::RESUME_ANSWER, &json!(ResumeAnswer { hash: resume.hash, ok }), now)
        });
        Handled::Applied
    }

    fn on_resume_answer(&self, origin: &str, answer: ResumeAnswer, unit: &mut Unit) -> Handled {
        if answer.ok {
            return Handled::Applied;
        }
        tracing::info!(peer = %origin, "the upstream does not hold our feed set; sending all of it");
        let (o, source) = (origin.to_owned(), Upstream::Peer(origin.to_owned()).as_source());
        self.service.relay.job_in(unit, move |s, q, now| {
            let mut feeds = Vec::new();
            for f in s.feeds_all()?.into_iter().filter(|f| f.source == source) {
                let local = s.subscribers(f.feed_id)?.len() as u64;
                let remote: u64 = s.downstreams_of(f.feed_id)?.iter().map(|d| d.watchers).sum();
                if local + remote > 0 {
                    let since = (f.upstream_pos > 0).then_some(f.upstream_pos);
                    feeds.push(Wanted { url: f.url, watchers: local + remote, since });
                }
            }
            q.push(s, &o, edus::SUBSCRIBE, &json!(Subscribe { feeds, remove: Vec::new(), full: true }), now)
        });
        Handled::Applied
    }
}

impl EduFamily for FeedPeers {
    fn edu_types(&self) -> &'static [&'static str] {
        edus::ALL
    }

    fn receive<'a>(&'a self, origin: &'a str, edu: IncomingEdu, unit: &'a mut Unit) -> BoxFuture<'a, Result<Handled>> {
        Box::pin(async move {
            let edu_type = edu.edu_type.clone();
            Ok(match edu_type.as_str() {
                edus::MIRRORS => decode(edu).map_or_else(|r| r, |m| self.on_mirrors(origin, m, unit)),
                edus::SUBSCRIBE => decode(edu).map_or_else(|r| r, |m| self.on_subscribe(origin, m, unit)),
                edus::ITEMS => match decode(edu) {
                    Ok(items) => self.on_items(origin, items, unit).await?,
                    Err(refused) => refused,
                },
                edus::STATUS => match decode(edu) {
                    Ok(status) => self.on_status(origin, status, unit).await?,
                    Err(refused) => refused,
                },
                edus::ALIVE => Handled::Applied,
                edus::RESUME => decode(edu).map_or_else(|r| r, |m| self.on_resume(origin, m, unit)),
                edus::RESUME_ANSWER => decode(edu).map_or_else(|r| r, |m| self.on_resume_answer(origin, m, unit)),
                other => Handled::Refused(format!("not a feed EDU: {other}")),
            })
        })
    }

    fn gather<'a>(
        &'a self,
        _destination: &'a str,
        _batch: &'a mut crate::exchange::Batch,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) }) // everything goes through the outbox, written with its cause
    }

    fn heard(&self, peer: &str, now: u64) {
        self.silence.schedule(&peer.to_owned(), Some(now + self.service.config.mirror_silence_ms));
        if self.service.mirrors.heard_again(peer) {
            let svc = Arc::clone(&self.service);
            tokio::spawn(async move {
                if let Err(e) = svc.place_all(None).await {
                    tracing::warn!(error = %e, "cannot place feeds after a mirror came back");
                }
            });
        }
    }
}
