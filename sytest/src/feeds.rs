//! What the feed tests ask of a server through the feed extension of the client API
//! (INTERFACE.md, "Feeds").

use serde_json::{Value, json};

use crate::Session;

/// Subscribe `s` to `url`; the feed's ID.
///
/// # Panics
///
/// When the server does not answer 200 with a `feed_id`.
pub async fn subscribe(s: &Session, url: &str) -> String {
    let (status, body) = s.post("/_tidings/client/v1/feeds", json!({ "url": url })).await;
    assert_eq!(status, 200, "subscribe {url}: {body}");
    body["feed_id"].as_str().unwrap_or_else(|| panic!("no feed_id: {body}")).to_owned()
}

/// `feed_id` as `s`'s feed list shows it (`Null` when it is not listed).
///
/// # Panics
///
/// When the list does not answer 200.
pub async fn my_feed(s: &Session, feed_id: &str) -> Value {
    let (status, body) = s.get("/_tidings/client/v1/feeds").await;
    assert_eq!(status, 200, "{body}");
    body["feeds"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["feed_id"] == json!(feed_id)).cloned())
        .unwrap_or(Value::Null)
}

/// The titles of every feed item in one `/sync` answer (`tidings.feeds`), all feeds.
pub fn synced_titles(sync: &Value) -> Vec<String> {
    let Some(feeds) = sync["tidings.feeds"].as_object() else { return Vec::new() };
    feeds
        .values()
        .flat_map(|f| f["items"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["title"].as_str().map(str::to_owned))
        .collect()
}
