//! `/_tidings/client/v1/feeds`: feed subscriptions, their items, and OPML.

pub mod items;
pub mod list;
pub mod mirror;
pub mod opml;
pub mod subscribe;
pub mod unsubscribe;

use tidings_core::Error;
use tidings_core::feeds::FeedId;

/// A `{feedId}` path segment; one that is not a feed ID names no feed (404).
pub fn parse_feed_id(raw: &str) -> Result<FeedId, Error> {
    raw.parse::<FeedId>().map_err(|_| Error::not_found(format!("there is no feed {raw}")))
}
