//! Feeds as a `/sync` source: items of the user's subscriptions that are new or
//! changed in the range, under `"tidings.feeds"` as `{"<feed_id>": {"items": [...]}}`.
//! An initial sync carries none (a client reads the backlog from the items
//! endpoint), so it stays small however many feeds a user has.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::UserId;
use serde_json::{Value, json};

use super::render;
use super::service::FeedService;
use crate::error::Result;
use crate::sync::{BoxFuture, Source, SyncRange, SyncResponse};

/// The top-level key of feed items in `/sync`.
pub const FEEDS_KEY: &str = "tidings.feeds";

/// `tidings.feeds`.
#[derive(Debug)]
pub struct FeedsSource(pub Arc<FeedService>);

impl Source for FeedsSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(since) = range.since else { return Ok(()) };
            if since >= range.upto {
                return Ok(());
            }
            let items = self.0.changes_for(user, since, range.upto).await?;
            if items.is_empty() {
                return Ok(());
            }
            let mut by_feed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for i in &items {
                by_feed.entry(i.feed_id.to_string()).or_default().push(render::item(i));
            }
            let feeds: serde_json::Map<String, Value> =
                by_feed.into_iter().map(|(id, items)| (id, json!({ "items": items }))).collect();
            out.extensions.insert(FEEDS_KEY.to_owned(), Value::Object(feeds));
            Ok(())
        })
    }
}
