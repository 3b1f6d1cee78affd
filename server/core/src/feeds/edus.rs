//! The feed EDUs between sites: typed contents and their `tidings.feed_*` names.
//! They travel in ordinary transactions over any transport; the link puts them in
//! its bulk class.
//!
//! - `tidings.feed_mirrors` (to every peer, on change): whether this site fetches
//!   origins, and the feeds it now mirrors (fetches itself) or no longer mirrors.
//! - `tidings.feed_subscribe` (downstream to upstream): feeds to carry, with the
//!   downstream's watcher count and where to resume; feeds to stop; or the whole set.
//! - `tidings.feed_items` (upstream to downstream): new and changed items only.
//! - `tidings.feed_status` (upstream to downstream): a poll failed, or works again.
//! - `tidings.feed_alive` (upstream to downstream, when nothing else went for a while).
//! - `tidings.feed_resume` / `tidings.feed_resume_answer`: a downstream names its whole
//!   set by a hash; the upstream answers whether it holds that set.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::parse::ParsedItem;
use crate::storage::feeds::ItemRow;

/// `tidings.feed_mirrors`.
pub const MIRRORS: &str = "tidings.feed_mirrors";
/// `tidings.feed_subscribe`.
pub const SUBSCRIBE: &str = "tidings.feed_subscribe";
/// `tidings.feed_items`.
pub const ITEMS: &str = "tidings.feed_items";
/// `tidings.feed_status`.
pub const STATUS: &str = "tidings.feed_status";
/// `tidings.feed_alive`.
pub const ALIVE: &str = "tidings.feed_alive";
/// `tidings.feed_resume`.
pub const RESUME: &str = "tidings.feed_resume";
/// `tidings.feed_resume_answer`.
pub const RESUME_ANSWER: &str = "tidings.feed_resume_answer";

/// Every feed EDU type.
pub const ALL: &[&str] = &[MIRRORS, SUBSCRIBE, ITEMS, STATUS, ALIVE, RESUME, RESUME_ANSWER];

/// Items per `tidings.feed_items` EDU: with summaries cut at 4,000 characters an EDU
/// stays well under a transaction's byte budget.
pub const ITEMS_PER_EDU: usize = 20;

/// `tidings.feed_mirrors`: what this site mirrors changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirrors {
    /// Whether the sender fetches origins (`feeds.fetch = "direct"`).
    pub fetches: bool,
    /// Feeds it now mirrors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Feeds it no longer mirrors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// One feed a downstream wants carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    /// The feed's URL.
    pub url: String,
    /// How many of the downstream's users watch it (the upstream weights its polling by it).
    pub watchers: u64,
    /// The upstream's position of the newest item the downstream has from this
    /// upstream; absent: send the newest items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// `tidings.feed_subscribe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Feeds to carry, or whose watcher count changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<Wanted>,
    /// Feeds to stop carrying.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// `feeds` is the whole set: drop every other subscription of the sender.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// One item on the wire: the identity and content hash travel, so every site keeps
/// the same identity and a repeat is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireItem {
    /// Identity within the feed.
    pub key: String,
    /// Hash of what a client sees.
    pub hash: String,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Link.
    #[serde(default)]
    pub link: String,
    /// Summary.
    #[serde(default)]
    pub summary: String,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Published, Unix ms.
    pub published_ts: u64,
    /// Updated, Unix ms.
    pub updated_ts: u64,
}

impl WireItem {
    /// An item as stored upstream.
    pub fn from_row(i: &ItemRow) -> Self {
        Self {
            key: i.item_key.clone(),
            hash: i.content_hash.clone(),
            title: i.title.clone(),
            link: i.link.clone(),
            summary: i.summary.clone(),
            author: i.author.clone(),
            published_ts: i.published_ts,
            updated_ts: i.updated_ts,
        }
    }

    /// The item as if parsed here (its dates are the upstream's, kept as given).
    pub fn into_parsed(self) -> ParsedItem {
        ParsedItem {
            key: self.key,
            content_hash: self.hash,
            title: self.title,
            link: self.link,
            summary: self.summary,
            author: self.author,
            published_ts: Some(self.published_ts),
            updated_ts: Some(self.updated_ts),
        }
    }
}

/// `tidings.feed_items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Items {
    /// The feed's URL.
    pub url: String,
    /// The feed's title, when the upstream knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When the upstream last fetched it (or heard of it), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_ts: Option<u64>,
    /// The upstream's position of the newest item here: where to resume from.
    pub upto: u64,
    /// New and changed items, oldest first.
    pub items: Vec<WireItem>,
}

/// `tidings.feed_status`: how the upstream's last poll went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The feed's URL.
    pub url: String,
    /// The HTTP status of the failed poll (absent: not an HTTP answer, or success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// What went wrong; absent when the feed works again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tidings.feed_resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// [`set_hash`] of the URLs the sender subscribes to through the recipient.
    pub hash: String,
}

/// `tidings.feed_resume_answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeAnswer {
    /// The hash asked about.
    pub hash: String,
    /// `true`: the upstream holds exactly that set ("ok"); `false`: send the whole set ("no").
    pub ok: bool,
}

/// The hash that names a subscription set: SHA-256 over the sorted URLs, each ended
/// by a newline, hex, first 32 characters.
pub fn set_hash(urls: &[String]) -> String {
    let mut sorted: Vec<&String> = urls.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut h = Sha256::new();
    for u in sorted {
        h.update(u.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_hash_ignores_order_and_repeats() {
        let a = set_hash(&["http://b/".into(), "http://a/".into()]);
        assert_eq!(a, set_hash(&["http://a/".into(), "http://b/".into(), "http://a/".into()]));
        assert_ne!(a, set_hash(&["http://a/".into()]));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn empty_fields_stay_off_the_wire() {
        let s =
            serde_json::to_string(&Subscribe { feeds: vec![], remove: vec!["u".into()], full: false }).expect("json");
        assert_eq!(s, r#"{"remove":["u"]}"#);
        let m: Mirrors = serde_json::from_str(r#"{"fetches":true}"#).expect("parse");
        assert!(m.add.is_empty() && m.fetches);
    }
}
