//! The cached feed as an Atom document, for feed readers on the site's LAN
//! (`GET /_tidings/mirror/{url}`), with `<link rel="cache">` to the other mirrors
//! known (seed 002's HTTP proxy strawman). Item IDs are the item identities, so a
//! reader that switches between the origin and a mirror sees the same items.

use std::fmt::Write;

use crate::storage::feeds::{FeedRow, ItemRow};

/// Items in one mirror document, the newest.
pub const MIRROR_ITEMS: u64 = 100;

/// `text` with XML's five special characters escaped, and characters XML 1.0
/// cannot carry dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 in UTC for Unix ms (the proleptic Gregorian calendar, from days since
/// the epoch by Howard Hinnant's `civil_from_days`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The Atom document of `feed` with `items` (oldest first, as stored), linking to
/// `mirrors` (base URLs to which a reader appends the url-encoded feed URL).
pub fn document(feed: &FeedRow, items: &[ItemRow], mirrors: &[String]) -> String {
    let title = feed.title.as_deref().unwrap_or(&feed.url);
    let updated = items.iter().map(|i| i.updated_ts).max().or(feed.last_fetched_ts).unwrap_or(feed.created_ts);
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(out, "  <id>{}</id>", escape(&feed.url));
    let _ = writeln!(out, "  <title>{}</title>", escape(title));
    let _ = writeln!(out, "  <updated>{}</updated>", rfc3339(updated));
    let _ = writeln!(out, "  <link rel=\"self\" href=\"{}\"/>", escape(&feed.url));
    let _ = writeln!(out, "  <generator version=\"{}\">Tidings</generator>", env!("CARGO_PKG_VERSION"));
    for m in mirrors {
        let _ = writeln!(out, "  <link rel=\"cache\" href=\"{}\" title=\"Caching Proxy\"/>", escape(m));
    }
    for i in items.iter().rev() {
        out.push_str("  <entry>\n");
        let id = i.item_key.split_once(':').map_or(i.item_key.as_str(), |(_, id)| id);
        let _ = writeln!(out, "    <id>{}</id>", escape(id));
        let _ = writeln!(out, "    <title>{}</title>", escape(&i.title));
        if !i.link.is_empty() {
            let _ = writeln!(out, "    <link rel=\"alternate\" href=\"{}\"/>", escape(&i.link));
        }
        let _ = writeln!(out, "    <published>{}</published>", rfc3339(i.published_ts));
        let _ = writeln!(out, "    <updated>{}</updated>", rfc3339(i.updated_ts));
        if let Some(a) = &i.author {
            let _ = writeln!(out, "    <author><name>{}</name></author>", escape(a));
        }
        if !i.summary.is_empty() {
            let _ = writeln!(out, "    <summary>{}</summary>", escape(&i.summary));
        }
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::parse::parse;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_296_571_732_999), "2011-02-01T14:48:52Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_mirror_document_parses_back_to_the_same_items() {
        let feed = FeedRow {
            url: "http://news.example/feed?a=1&b=2".into(),
            title: Some("News <&>".into()),
            ..FeedRow::default()
        };
        let item = |key: &str, title: &str, pos| ItemRow {
            item_id: pos as i64,
            feed_id: 1,
            item_key: key.into(),
            content_hash: String::new(),
            title: title.into(),
            link: format!("http://news.example/{pos}"),
            summary: "a \u{1} b & c".into(),
            author: Some("Ann".into()),
            published_ts: 1_296_571_732_000,
            updated_ts: 1_296_571_732_000 + pos,
            stored_ts: 0,
            stream_pos: pos,
        };
        let items = vec![item("id:first", "First", 1), item("link:http://x/2", "Second \"quoted\"", 2)];
        let doc = document(&feed, &items, &["http://peer.example/_tidings/mirror/".into()]);
        assert!(doc.contains("rel=\"cache\" href=\"http://peer.example/_tidings/mirror/\""), "{doc}");
        let parsed = parse(doc.as_bytes()).expect("valid Atom");
        assert_eq!(parsed.title.as_deref(), Some("News <&>"));
        let titles: Vec<_> = parsed.items.iter().map(|i| i.title.as_str()).collect();
        assert_eq!(titles, vec!["Second \"quoted\"", "First"], "newest first, as documents list them");
        assert_eq!(parsed.items[1].key, "id:first", "the identity survives the mirror");
        assert_eq!(parsed.items[1].summary, "a  b & c");
    }
}
