//! The parser: RSS 0.9x/1.0/2.0, Atom and JSON Feed (through `feed-rs`) into items
//! with an identity. An item is known by its guid/id, else its link, else a hash of
//! its content; a hash of what a client sees tells a changed item from one seen
//! before.

use sha2::{Digest, Sha256};

/// How much of a summary is kept, in characters.
pub const MAX_SUMMARY_CHARS: usize = 4000;

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFeed {
    /// The feed's title, if any.
    pub title: Option<String>,
    /// RSS `<ttl>` in ms, if given.
    pub ttl_ms: Option<u64>,
    /// Items in document order.
    pub items: Vec<ParsedItem>,
}

/// One item as the document gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedItem {
    /// Identity within the feed: `id:<id>`, `link:<link>` or `hash:<sha256>`.
    pub key: String,
    /// Hash of everything a client sees: a different one under the same key is an update.
    pub content_hash: String,
    /// Title (empty when none).
    pub title: String,
    /// Link (empty when none).
    pub link: String,
    /// Summary, else the content, cut at [`MAX_SUMMARY_CHARS`].
    pub summary: String,
    /// The first author's name.
    pub author: Option<String>,
    /// Published, Unix ms, if the document says.
    pub published_ts: Option<u64>,
    /// Updated, Unix ms, if the document says.
    pub updated_ts: Option<u64>,
}

/// Parse a feed document.
pub fn parse(body: &[u8]) -> Result<ParsedFeed, String> {
    // No generated IDs: the identity rules below are ours, and stable across versions.
    let parser = feed_rs::parser::Builder::new().id_generator(|_, _, _| String::new()).build();
    let feed = parser.parse(body).map_err(|e| format!("not a feed document: {e}"))?;
    let items = feed.entries.into_iter().map(item).collect();
    Ok(ParsedFeed {
        title: feed.title.map(|t| t.content.trim().to_owned()).filter(|t| !t.is_empty()),
        ttl_ms: feed.ttl.map(|minutes| u64::from(minutes) * 60_000),
        items,
    })
}

fn item(e: feed_rs::model::Entry) -> ParsedItem {
    let title = e.title.map(|t| t.content.trim().to_owned()).unwrap_or_default();
    let link = e
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(e.links.first())
        .map(|l| l.href.trim().to_owned())
        .unwrap_or_default();
    let summary = e
        .summary
        .map(|s| s.content)
        .or_else(|| e.content.and_then(|c| c.body))
        .map(|s| s.trim().chars().take(MAX_SUMMARY_CHARS).collect::<String>())
        .unwrap_or_default();
    let author = e.authors.into_iter().map(|p| p.name.trim().to_owned()).find(|n| !n.is_empty());
    let ms = |t: i64| t.max(0) as u64;
    let (published_ts, updated_ts) =
        (e.published.map(|t| ms(t.timestamp_millis())), e.updated.map(|t| ms(t.timestamp_millis())));
    let id = e.id.trim();
    let key = if !id.is_empty() {
        format!("id:{id}")
    } else if !link.is_empty() {
        format!("link:{link}")
    } else {
        format!("hash:{}", hash(&[&title, &summary]))
    };
    let dates = format!("{published_ts:?}/{updated_ts:?}");
    let content_hash = hash(&[&title, &link, &summary, author.as_deref().unwrap_or(""), &dates]);
    ParsedItem { key, content_hash, title, link, summary, author, published_ts, updated_ts }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODCAST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
  <channel>
    <title>Mesh Radio</title>
    <link>https://podcast.example/</link>
    <ttl>60</ttl>
    <item>
      <title>Episode 2: Links that sleep</title>
      <guid isPermaLink="false">mesh-ep-2</guid>
      <link>https://podcast.example/2</link>
      <description>Sessions over thin lines.</description>
      <pubDate>Tue, 01 Feb 2011 14:48:52 GMT</pubDate>
      <enclosure url="https://podcast.example/2.mp3" length="1234" type="audio/mpeg"/>
      <itunes:author>Peter</itunes:author>
    </item>
    <item>
      <title>Episode 1</title>
      <guid>mesh-ep-1</guid>
      <pubDate>Mon, 31 Jan 2011 10:00:00 GMT</pubDate>
      <enclosure url="https://podcast.example/1.mp3" length="99" type="audio/mpeg"/>
    </item>
  </channel>
</rss>"#;

    const YOUTUBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
 <id>yt:channel:UC123</id>
 <title>Community Networks</title>
 <author><name>Community Networks</name></author>
 <entry>
  <id>yt:video:abc123</id>
  <yt:videoId>abc123</yt:videoId>
  <title>Building a mesh</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v=abc123"/>
  <author><name>Community Networks</name></author>
  <published>2024-03-01T12:00:00+00:00</published>
  <updated>2024-03-02T08:30:00+00:00</updated>
  <media:group><media:description>How we wired a village.</media:description></media:group>
 </entry>
</feed>"#;

    const JSON_FEED: &str = r#"{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "Notes",
  "items": [
    {"id": "n-1", "url": "https://notes.example/1", "title": "First", "content_text": "Hello",
     "date_published": "2024-05-01T10:00:00Z", "authors": [{"name": "Ann"}]}
  ]
}"#;

    const RSS1: &str = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://old.example/rss"><title>Old School</title><link>https://old.example/</link></channel>
  <item rdf:about="https://old.example/a">
    <title>An RDF item</title>
    <link>https://old.example/a</link>
    <dc:date>2011-02-01T14:48:52Z</dc:date>
    <dc:creator>Folk</dc:creator>
  </item>
</rdf:RDF>"#;

    const NO_IDS: &str = r#"<rss version="0.92"><channel><title>Bare</title>
      <item><title>Only a link</title><link>https://bare.example/x</link></item>
      <item><title>Nothing at all</title><description>just text</description></item>
    </channel></rss>"#;

    #[test]
    fn podcast_rss2_with_enclosures() {
        let f = parse(PODCAST.as_bytes()).expect("parse");
        assert_eq!(f.title.as_deref(), Some("Mesh Radio"));
        assert_eq!(f.ttl_ms, Some(3_600_000));
        assert_eq!(f.items.len(), 2);
        let ep2 = &f.items[0];
        assert_eq!(ep2.key, "id:mesh-ep-2");
        assert_eq!(ep2.link, "https://podcast.example/2");
        assert_eq!(ep2.summary, "Sessions over thin lines.");
        assert_eq!(ep2.published_ts, Some(1_296_571_732_000));
        assert_eq!(f.items[1].key, "id:mesh-ep-1");
    }

    #[test]
    fn youtube_style_atom() {
        let f = parse(YOUTUBE.as_bytes()).expect("parse");
        let v = &f.items[0];
        assert_eq!(v.key, "id:yt:video:abc123");
        assert_eq!(v.link, "https://www.youtube.com/watch?v=abc123");
        assert_eq!(v.author.as_deref(), Some("Community Networks"));
        assert!(v.updated_ts > v.published_ts);
    }

    #[test]
    fn json_feed() {
        let f = parse(JSON_FEED.as_bytes()).expect("parse");
        let n = &f.items[0];
        assert_eq!((n.key.as_str(), n.title.as_str(), n.summary.as_str()), ("id:n-1", "First", "Hello"));
        assert_eq!(n.author.as_deref(), Some("Ann"));
    }

    #[test]
    fn rss1_with_dc_date() {
        let f = parse(RSS1.as_bytes()).expect("parse");
        let i = &f.items[0];
        assert_eq!(i.link, "https://old.example/a");
        assert_eq!(i.published_ts.or(i.updated_ts), Some(1_296_571_732_000));
    }

    #[test]
    fn without_ids_link_then_content_hash() {
        let f = parse(NO_IDS.as_bytes()).expect("parse");
        assert_eq!(f.items[0].key, "link:https://bare.example/x");
        assert!(f.items[1].key.starts_with("hash:"));
        let again = parse(NO_IDS.as_bytes()).expect("parse");
        assert_eq!(f.items, again.items, "identity and hash are stable across fetches");
    }

    #[test]
    fn a_changed_title_keeps_the_identity_and_changes_the_hash() {
        let before = parse(PODCAST.as_bytes()).expect("parse");
        let after = parse(PODCAST.replace("Links that sleep", "Links that wake").as_bytes()).expect("parse");
        assert_eq!(before.items[0].key, after.items[0].key);
        assert_ne!(before.items[0].content_hash, after.items[0].content_hash);
        assert_eq!(before.items[1], after.items[1]);
    }

    #[test]
    fn broken_documents_are_errors() {
        assert!(parse(b"<html><body>not a feed</body></html>").is_err());
        assert!(parse(b"\x00\x01 binary").is_err());
    }
}
