//! Feeds: per-user subscriptions to RSS, Atom and JSON Feed documents, polled once
//! per feed however many local users subscribe, with items in the `/sync` stream.
//!
//! - `guard.rs`: the SSRF guard (schemes, addresses, the resolver the fetcher uses).
//! - `fetch.rs`: one conditional GET, redirects, the document cap, origin hints.
//! - `parse.rs`: documents into items with an identity.
//! - `discover.rs`: an HTML page's `<link rel="alternate">` feed.
//! - `schedule.rs`: when a feed is polled next (pure).
//! - `service.rs`: subscriptions, items, and the polling loop.
//! - `source.rs`: `tidings.feeds` in `/sync`.
//! - `render.rs`, `opml.rs`: what clients get.
//!
//! Federation mirroring (`fetch = "peers"`) is not built yet: see spec/feeds.md.

pub mod discover;
pub mod fetch;
pub mod guard;
pub mod opml;
pub mod parse;
pub mod render;
pub mod schedule;
pub mod service;
pub mod source;

pub use service::{FeedId, FeedService, FeedStatus, Subscription};
pub use source::{FEEDS_KEY, FeedsSource};
