//! Feed EDUs to peers, each written into the [`Unit`] of the change that causes it
//! (through the durable outbox), so what a downstream is owed is never lost and
//! never sent for a change that did not land.
//!
//! Who the downstreams of a feed are is read inside the write job, on the writer
//! thread: a poll and a downstream's subscription landing at the same time are
//! applied one after the other, so the new downstream gets the new items either
//! from the poll (it was subscribed first) or from its subscription (it came second).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::edus::{self, ITEMS_PER_EDU, Items, Mirrors, Status, Subscribe, WireItem};
use crate::clock::SharedClock;
use crate::error::Result;
use crate::outbound::{Outbound, Waiting};
use crate::storage::feeds::{FeedRow, ItemRow};
use crate::storage::{Store, Unit};

/// Queues feed EDUs and remembers when each peer was last sent one.
#[derive(Debug)]
pub struct Relay {
    outbound: Arc<Outbound>,
    clock: SharedClock,
    last_queued: Arc<Mutex<HashMap<String, u64>>>,
}

/// EDUs a write job queued, and for whom; woken once the unit committed.
#[derive(Debug, Default)]
pub struct Queued(Vec<String>);

impl Queued {
    /// In a write job: queue `content` as `edu_type` for `peer`.
    pub fn push(&mut self, s: &dyn Store, peer: &str, edu_type: &str, content: &Value, now: u64) -> Result<()> {
        s.push_outbox(peer, edu_type, &content.to_string(), now)?;
        if !self.0.iter().any(|p| p == peer) {
            self.0.push(peer.to_owned());
        }
        Ok(())
    }
}

impl Relay {
    /// A relay through `outbound`.
    pub fn new(outbound: Arc<Outbound>, clock: SharedClock) -> Self {
        Self { outbound, clock, last_queued: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Every configured peer.
    pub fn peers(&self) -> Vec<String> {
        self.outbound.peers()
    }

    /// When a feed EDU was last queued for `peer`.
    pub fn last_queued(&self, peer: &str) -> Option<u64> {
        self.last_queued.lock().unwrap_or_else(|p| p.into_inner()).get(peer).copied()
    }

    /// Add a write job to `unit` that may queue EDUs (through [`Queued::push`]); the
    /// peers it queued for are woken after the commit. Peers not in the peer map are
    /// skipped: there is no route to them.
    pub fn job_in(
        &self,
        unit: &mut Unit,
        job: impl FnOnce(&dyn Store, &mut Queued, u64) -> Result<()> + Send + 'static,
    ) {
        let queued = Arc::new(Mutex::new(Queued::default()));
        let (q, now) = (Arc::clone(&queued), self.clock.now_ms());
        unit.write(move |s| job(s, &mut q.lock().unwrap_or_else(|p| p.into_inner()), now));
        let (outbound, last) = (Arc::clone(&self.outbound), Arc::clone(&self.last_queued));
        unit.after(move |ok| {
            if !ok {
                return;
            }
            let peers = std::mem::take(&mut queued.lock().unwrap_or_else(|p| p.into_inner()).0);
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            for peer in peers {
                last.insert(peer.clone(), now);
                outbound.wake(&peer, Waiting::Bulk);
            }
        });
    }

    /// Queue one EDU for `peer` in `unit`.
    pub fn queue_in(&self, unit: &mut Unit, peer: &str, edu_type: &'static str, content: impl serde::Serialize) {
        let content = serde_json::to_value(content).unwrap_or(Value::Null);
        let peer = peer.to_owned();
        let routed = self.outbound.is_peer(&peer);
        self.job_in(unit, move |s, q, now| if routed { q.push(s, &peer, edu_type, &content, now) } else { Ok(()) });
    }

    /// The new and changed `rows` of `feed` to each of its downstreams but `except`
    /// (the peer they came from), in EDUs of at most [`ITEMS_PER_EDU`] items.
    pub fn items_in(&self, unit: &mut Unit, feed: &FeedRow, except: Option<&str>, rows: &[ItemRow]) {
        if rows.is_empty() {
            return;
        }
        let edus = items_edus(feed, rows);
        let (feed_id, except, outbound) = (feed.feed_id, except.map(str::to_owned), Arc::clone(&self.outbound));
        self.job_in(unit, move |s, q, now| {
            for d in s.downstreams_of(feed_id)? {
                if Some(&d.peer) == except.as_ref() || !outbound.is_peer(&d.peer) {
                    continue;
                }
                for edu in &edus {
                    q.push(s, &d.peer, edus::ITEMS, edu, now)?;
                }
            }
            Ok(())
        });
    }

    /// How the last poll of `feed` went, to each of its downstreams (`error` absent: it works).
    pub fn status_in(&self, unit: &mut Unit, feed: &FeedRow, code: Option<u16>, error: Option<&str>) {
        let status = Status { url: feed.url.clone(), code, error: error.map(str::to_owned) };
        let content = serde_json::to_value(status).unwrap_or(Value::Null);
        let (feed_id, outbound) = (feed.feed_id, Arc::clone(&self.outbound));
        self.job_in(unit, move |s, q, now| {
            for d in s.downstreams_of(feed_id)? {
                if outbound.is_peer(&d.peer) {
                    q.push(s, &d.peer, edus::STATUS, &content, now)?;
                }
            }
            Ok(())
        });
    }

    /// To every peer: this site now mirrors `add` and no longer mirrors `remove`.
    pub fn mirrors_in(&self, unit: &mut Unit, fetches: bool, add: Vec<String>, remove: Vec<String>) {
        let m = Mirrors { fetches, add, remove };
        for peer in self.peers() {
            self.queue_in(unit, &peer, edus::MIRRORS, &m);
        }
    }

    /// To `upstream`: carry (or stop carrying) feeds.
    pub fn subscribe_in(&self, unit: &mut Unit, upstream: &str, sub: &Subscribe) {
        self.queue_in(unit, upstream, edus::SUBSCRIBE, sub);
    }
}

/// `rows` of `feed` as `tidings.feed_items` EDUs, oldest first, each with the
/// position to resume after it.
pub fn items_edus(feed: &FeedRow, rows: &[ItemRow]) -> Vec<Value> {
    let mut sorted: Vec<&ItemRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.stream_pos);
    sorted
        .chunks(ITEMS_PER_EDU)
        .map(|chunk| {
            let items = Items {
                url: feed.url.clone(),
                title: feed.title.clone(),
                fetched_ts: feed.last_fetched_ts,
                upto: chunk.iter().map(|r| r.stream_pos).max().unwrap_or(0),
                items: chunk.iter().map(|r| WireItem::from_row(r)).collect(),
            };
            serde_json::to_value(items).unwrap_or(Value::Null)
        })
        .collect()
}
