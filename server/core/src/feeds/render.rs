//! Feeds and items as clients see them (`/_tidings/client/v1/feeds`, `/sync`):
//! optional fields are left out, never `null`.

use serde_json::{Value, json};

use super::service::Subscription;
use crate::storage::feeds::ItemRow;

/// One item: `{"item_id", "title", "link", "summary", "published_ts", "updated_ts", "author"?}`.
pub fn item(i: &ItemRow) -> Value {
    let mut v = json!({
        "item_id": i.item_id.to_string(),
        "title": i.title,
        "link": i.link,
        "summary": i.summary,
        "published_ts": i.published_ts,
        "updated_ts": i.updated_ts,
    });
    if let (Some(author), Some(map)) = (&i.author, v.as_object_mut()) {
        map.insert("author".into(), json!(author));
    }
    v
}

/// One subscription: `{"feed_id", "url", "title", "subscribed_ts", "last_fetched_ts",
/// "source", "error"?}`; `title` is the URL until a document named one, and
/// `last_fetched_ts` is `null` until a fetch succeeded.
pub fn subscription(s: &Subscription) -> Value {
    let f = &s.feed;
    let mut v = json!({
        "feed_id": f.feed_id.to_string(),
        "url": f.url,
        "title": f.title.as_deref().unwrap_or(&f.url),
        "subscribed_ts": s.subscribed_ts,
        "last_fetched_ts": f.last_fetched_ts,
        "source": f.source,
    });
    if let (Some(error), Some(map)) = (&f.last_error, v.as_object_mut()) {
        map.insert("error".into(), json!(error));
    }
    v
}
