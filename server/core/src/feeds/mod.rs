//! Feeds: per-user subscriptions to RSS, Atom and JSON Feed documents, polled once
//! per feed however many local users subscribe, with items in the `/sync` stream.
//!
//! - `guard.rs`: the SSRF guard (schemes, addresses, the resolver the fetcher uses).
//! - `fetch.rs`: one conditional GET, redirects, the document cap, origin hints.
//! - `hosts.rs`: politeness: one request at a time per host, spaced.
//! - `parse.rs`: documents into items with an identity.
//! - `discover.rs`: an HTML page's `<link rel="alternate">` feed.
//! - `schedule.rs`: when a feed is polled next (pure).
//! - `service.rs`: subscriptions, items, and the polling loop.
//! - `source.rs`: `tidings.feeds` in `/sync`.
//! - `render.rs`, `opml.rs`, `atom.rs`: what clients and LAN feed readers get.
//!
//! Across sites (spec/feeds.md):
//! - `edus.rs`: the `tidings.feed_*` EDUs.
//! - `mirrors.rs`: what peers mirror, and the rule that picks a feed's upstream.
//! - `placement.rs`: acting on that rule when watchers or mirrors change.
//! - `relay.rs`: feed EDUs queued in the unit of the change that causes them.
//! - `federation.rs`: the EDU family: receiving, alive notices, silent mirrors.

pub mod atom;
pub mod discover;
pub mod edus;
pub mod federation;
pub mod fetch;
pub mod guard;
pub mod hosts;
pub mod mirrors;
pub mod opml;
pub mod parse;
pub mod placement;
pub mod relay;
pub mod render;
pub mod schedule;
pub mod service;
pub mod source;

pub use federation::FeedPeers;
pub use service::{FeedFederation, FeedId, FeedService, FeedStatus, MirrorDocument, Subscription};
pub use source::{FEEDS_KEY, FeedsSource};
