//! Discovery: a URL subscribed to may be an HTML page that names its feed with
//! `<link rel="alternate" type="application/rss+xml" href="...">` (or Atom, or JSON
//! Feed). The first such link, resolved against the page's URL, is where the feed
//! is fetched from then on.

use url::Url;

const FEED_TYPES: &[&str] =
    &["application/rss+xml", "application/atom+xml", "application/feed+json", "application/rdf+xml"];

/// The first alternate feed link of an HTML page, if it has one.
pub fn alternate_feed(html: &[u8], page: &Url) -> Option<Url> {
    let text = String::from_utf8_lossy(html);
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<link") {
        let start = from + at;
        let end = lower[start..].find('>').map_or(lower.len(), |e| start + e);
        let (tag, tag_lower) = (&text[start..end], &lower[start..end]);
        from = end;
        let rel = attribute(tag_lower, tag_lower, "rel").unwrap_or_default();
        let kind = attribute(tag_lower, tag_lower, "type").unwrap_or_default();
        if rel.split_ascii_whitespace().any(|r| r == "alternate") && FEED_TYPES.contains(&kind.trim()) {
            let href = attribute(tag_lower, tag, "href")?;
            return page.join(href.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        }
    }
    None
}

/// The value of `name` in a tag: found in `lower` (the tag lowercased), read from
/// `source` (the same tag, or its original case).
fn attribute<'a>(lower: &str, source: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = 0;
    while let Some(at) = lower[rest..].find(name) {
        let i = rest + at;
        rest = i + name.len();
        if !lower[..i].ends_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let after = lower[rest..].trim_start();
        let Some(value) = after.strip_prefix('=') else { continue };
        let value = value.trim_start();
        let offset = lower.len() - value.len();
        let quote = value.chars().next()?;
        let (begin, stop) = if quote == '"' || quote == '\'' {
            let close = value[1..].find(quote)? + 1;
            (offset + 1, offset + close)
        } else {
            (offset, offset + value.find(|c: char| c.is_ascii_whitespace() || c == '/').unwrap_or(value.len()))
        };
        return source.get(begin..stop);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("https://blog.example/posts/").expect("url")
    }

    #[test]
    fn finds_the_alternate_feed_and_resolves_it() {
        let html = br#"<html><head><link rel="stylesheet" href="/s.css">
            <LINK REL="alternate" TYPE="application/atom+xml" title="Atom" HREF="/Feed.atom"></head></html>"#;
        assert_eq!(alternate_feed(html, &page()).map(String::from), Some("https://blog.example/Feed.atom".into()));
        let rss = b"<link type='application/rss+xml' rel='alternate home' href='rss.xml'/>";
        assert_eq!(alternate_feed(rss, &page()).map(String::from), Some("https://blog.example/posts/rss.xml".into()));
    }

    #[test]
    fn pages_without_feeds_have_none() {
        assert_eq!(
            alternate_feed(b"<html><link rel=\"alternate\" hreflang=\"de\" href=\"/de\"></html>", &page()),
            None
        );
        assert_eq!(alternate_feed(b"no html at all", &page()), None);
        let js = b"<link rel=\"alternate\" type=\"application/rss+xml\" href=\"javascript:alert(1)\">";
        assert_eq!(alternate_feed(js, &page()), None);
    }
}
