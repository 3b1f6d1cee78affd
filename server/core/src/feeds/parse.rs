//! The parser: RSS 0.9x/1.0/2.0, Atom and JSON Feed (through `feed-rs`) into items
//! with an identity. An item is known by its guid/id, else its link, else a hash of
//! its content; a hash of what a client sees tells a changed item from one seen
//! before.

use sha2::{Digest, Sha256};

/// Elements nested deeper than this are refused: real feeds nest a few dozen deep,
/// and the XML reader beneath feed-rs overflows a counter on hundreds of thousands.
pub const MAX_DEPTH: usize = 512;

/// How much of a summary is kept, in characters.
pub const MAX_SUMMARY_CHARS: usize = 4000;

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFeed {
    /// The feed's title, if any.
    pub title: Option<String>,
    /// How often the document says to poll it, in ms: RSS `<ttl>` or the syndication
    /// module's `sy:updatePeriod` / `sy:updateFrequency` (the longer), if given.
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

/// Parse a feed document (refused first when [`check_document`] refuses it).
pub fn parse(body: &[u8]) -> Result<ParsedFeed, String> {
    check_document(body)?;
    // No generated IDs: the identity rules below are ours, and stable across versions.
    let parser = feed_rs::parser::Builder::new().id_generator(|_, _, _| String::new()).build();
    let feed = parser.parse(body).map_err(|e| format!("not a feed document: {e}"))?;
    let items = feed.entries.into_iter().map(item).collect();
    let ttl_ms = feed.ttl.map(|minutes| u64::from(minutes) * 60_000);
    Ok(ParsedFeed {
        title: feed.title.map(|t| t.content.trim().to_owned()).filter(|t| !t.is_empty()),
        ttl_ms: ttl_ms.max(update_period_ms(body)),
        items,
    })
}

/// The syndication module's hint (RSS 1.0, and RSS 2.0 as WordPress writes it):
/// `<sy:updatePeriod>` (hourly, daily, weekly, monthly, yearly) divided by
/// `<sy:updateFrequency>` (default 1). feed-rs does not read the module, so its two
/// elements are found by name, whatever the namespace prefix.
fn update_period_ms(body: &[u8]) -> Option<u64> {
    let text = |name: &str| -> Option<String> {
        let (open, prefixed) = (format!("<{name}>"), format!(":{name}>"));
        let at = find(body, open.as_bytes()).map(|i| i + open.len()).or_else(|| {
            let i = find(body, prefixed.as_bytes())?;
            // `:name>` must close a start tag `<prefix:name>`, not an end tag.
            let start = body[..i].iter().rposition(|b| *b == b'<')?;
            (body.get(start + 1) != Some(&b'/')).then_some(i + prefixed.len())
        })?;
        let end = body[at..].iter().position(|b| *b == b'<')?;
        Some(String::from_utf8_lossy(&body[at..at + end]).trim().to_ascii_lowercase())
    };
    const HOUR: u64 = 3_600_000;
    let period = match text("updatePeriod")?.as_str() {
        "hourly" => HOUR,
        "daily" => 24 * HOUR,
        "weekly" => 7 * 24 * HOUR,
        "monthly" => 30 * 24 * HOUR,
        "yearly" => 365 * 24 * HOUR,
        _ => return None,
    };
    let frequency = text("updateFrequency").and_then(|f| f.parse::<u64>().ok()).filter(|f| *f > 0).unwrap_or(1);
    Some(period / frequency)
}

/// [`parse`] on the blocking pool: a large document does not hold up the runtime,
/// and should the parser panic on a hostile document, that is the document's error,
/// not the end of the feed's polling.
pub async fn parse_blocking(body: std::sync::Arc<Vec<u8>>) -> Result<ParsedFeed, String> {
    tokio::task::spawn_blocking(move || parse(&body))
        .await
        .unwrap_or_else(|e| Err(format!("not a feed document: the parser failed on it ({e})")))
}

/// Refuse what no honest feed needs and hostile ones use: entity declarations in a
/// DOCTYPE (expansion bombs: feed-rs would not expand them, but a document that
/// declares them is not read at all), and bytes that are not valid UTF-8 when the
/// document is UTF-8 (declared, or by default, as JSON always is).
pub fn check_document(body: &[u8]) -> Result<(), String> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    if body.starts_with(b"\xff\xfe") || body.starts_with(b"\xfe\xff") {
        return Ok(()); // UTF-16, with its byte-order mark: the parser decodes it
    }
    let declared = declared_encoding(body);
    if declared.as_deref().is_none_or(|e| e == "utf-8" || e == "utf8") && std::str::from_utf8(body).is_err() {
        return Err("not a feed document: the bytes are not valid UTF-8".into());
    }
    if let Some(doctype) = find(body, b"<!DOCTYPE")
        && first_element(body).is_none_or(|root| doctype < root)
    {
        let subset = &body[doctype..first_element(&body[doctype..]).map_or(body.len(), |r| doctype + r)];
        if find(subset, b"<!ENTITY").is_some() {
            return Err("not read: the document declares entities (an expansion bomb?)".into());
        }
    }
    let json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !json && nested_deeper_than(body, MAX_DEPTH) {
        return Err(format!("not read: elements nested more than {MAX_DEPTH} deep"));
    }
    Ok(())
}

/// Whether XML elements in `body` nest deeper than `max`: a scan of tags that skips
/// comments, CDATA, processing instructions, declarations and quoted attributes.
fn nested_deeper_than(body: &[u8], max: usize) -> bool {
    let past = |from: usize, end: &[u8]| find(&body[from..], end).map_or(body.len(), |i| from + i + end.len());
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(off) = body[i..].iter().position(|b| *b == b'<') {
        let at = i + off;
        let rest = &body[at..];
        i = if rest.starts_with(b"<!--") {
            past(at, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            past(at, b"]]>")
        } else if rest.starts_with(b"<?") {
            past(at, b"?>")
        } else if rest.starts_with(b"<!") {
            let subset = rest.iter().position(|b| *b == b'[').filter(|s| find(rest, b">").is_none_or(|g| *s < g));
            if subset.is_some() { past(at, b"]>") } else { past(at, b">") }
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            past(at, b">")
        } else if rest.get(1).is_some_and(u8::is_ascii_alphabetic) {
            let end = tag_end(body, at);
            if body.get(end.saturating_sub(2)) != Some(&b'/') {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            end
        } else {
            at + 1
        };
    }
    false
}

/// Just past the `>` that ends the start tag at `at`, quotes respected.
fn tag_end(body: &[u8], at: usize) -> usize {
    let mut quote = None;
    for (i, b) in body.iter().enumerate().skip(at) {
        match (quote, *b) {
            (None, b'"' | b'\'') => quote = Some(*b),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return i + 1,
            _ => {}
        }
    }
    body.len()
}

/// The `encoding` of the XML declaration, lower-cased.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = body.get(..body.len().min(256))?;
    let decl = head.strip_prefix(b"<?xml")?;
    let decl = &decl[..find(decl, b"?>")?];
    let at = find(decl, b"encoding")?;
    let rest = std::str::from_utf8(&decl[at + 8..]).ok()?;
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = rest[1..].split(quote).next()?;
    Some(value.trim().to_ascii_lowercase())
}

/// Where the first element's start tag (`<` and a letter) is.
fn first_element(body: &[u8]) -> Option<usize> {
    body.windows(2).position(|w| w[0] == b'<' && w[1].is_ascii_alphabetic())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
    fn entity_declarations_and_invalid_utf8_are_refused() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE rss [<!ENTITY a \"haha\"><!ENTITY b \"&a;&a;\">]>\
                    <rss version=\"2.0\"><channel><title>&b;</title></channel></rss>";
        assert!(parse(bomb.as_bytes()).unwrap_err().contains("declares entities"));
        let about_xml = "<rss version=\"2.0\"><channel><title>XML</title><item><guid>x</guid>\
                         <description><![CDATA[write <!DOCTYPE x [<!ENTITY a \"b\">]> to declare]]></description>\
                         </item></channel></rss>";
        assert_eq!(parse(about_xml.as_bytes()).expect("text about entities is fine").items.len(), 1);
        let plain_doctype = "<!DOCTYPE rss PUBLIC \"-//Netscape Communications//DTD RSS 0.91//EN\" \"x\">\
                             <rss version=\"0.91\"><channel><title>Old</title></channel></rss>";
        assert!(check_document(plain_doctype.as_bytes()).is_ok(), "a DOCTYPE without entities is fine");

        let mut bad = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>".to_vec();
        bad.extend_from_slice(b"\xff\xfe\xc3\x28</title></channel></rss>");
        assert!(parse(&bad).unwrap_err().contains("not valid UTF-8"));
        assert!(parse(&bad[38..]).unwrap_err().contains("not valid UTF-8"), "UTF-8 is the default");
        let latin1 = b"<?xml version='1.0' encoding='ISO-8859-1'?><rss version=\"2.0\"><channel><title>Caf\xe9</title></channel></rss>";
        assert!(check_document(latin1).is_ok(), "a declared single-byte encoding is the parser's to decode");
        assert!(check_document(b"\xef\xbb\xbf<rss version=\"2.0\"></rss>").is_ok(), "a UTF-8 BOM is fine");
    }

    #[test]
    fn deep_nesting_is_refused_and_ordinary_nesting_is_not() {
        let deep = |n: usize| {
            format!(
                "<rss version=\"2.0\"><channel><title>D</title>{}{}</channel></rss>",
                "<x>".repeat(n),
                "</x>".repeat(n)
            )
        };
        assert!(parse(deep(100_000).as_bytes()).unwrap_err().contains("nested more than"));
        // rss and channel are two levels.
        assert!(parse(deep(MAX_DEPTH - 2).as_bytes()).is_ok(), "at the limit it is read");
        assert!(parse(deep(MAX_DEPTH - 1).as_bytes()).is_err(), "one deeper is not");
        let flat = format!(
            "<rss version=\"2.0\"><channel><title a=\"x>y\">T</title>{}<!-- <a><b><c> --><![CDATA[<d><e>]]></channel></rss>",
            "<item><guid>g</guid><br/><enclosure url=\"u\"/></item>".repeat(2000)
        );
        assert!(!nested_deeper_than(flat.as_bytes(), 4), "siblings, self-closing tags, comments and CDATA do not nest");
        for doc in [PODCAST, YOUTUBE, RSS1, NO_IDS] {
            assert!(!nested_deeper_than(doc.as_bytes(), 8), "real shapes nest shallowly");
        }
    }

    #[test]
    fn the_syndication_module_is_a_hint_like_ttl() {
        let wordpress = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel><title>Blog</title>
  <sy:updatePeriod>
	hourly	</sy:updatePeriod>
  <sy:updateFrequency>
	4	</sy:updateFrequency>
  <item><guid>w1</guid><title>Hello</title></item></channel></rss>"#;
        assert_eq!(parse(wordpress.as_bytes()).expect("parse").ttl_ms, Some(900_000), "an hour / 4");
        let daily = RSS1.replace("</channel>", "<syn:updatePeriod>daily</syn:updatePeriod></channel>");
        assert_eq!(parse(daily.as_bytes()).expect("parse").ttl_ms, Some(86_400_000), "any prefix, frequency 1");
        let both = PODCAST.replace(
            "</channel>",
            "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency></channel>",
        );
        assert_eq!(parse(both.as_bytes()).expect("parse").ttl_ms, Some(3_600_000), "the longer of ttl and the module");
        let odd = PODCAST.replace("</channel>", "<sy:updatePeriod>fortnightly</sy:updatePeriod></channel>");
        assert_eq!(parse(odd.as_bytes()).expect("parse").ttl_ms, Some(3_600_000), "an unknown period is no hint");
    }

    #[test]
    fn broken_documents_are_errors() {
        assert!(parse(b"<html><body>not a feed</body></html>").is_err());
        assert!(parse(b"\x00\x01 binary").is_err());
    }
}
