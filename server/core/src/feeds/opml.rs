//! OPML 2.0: export a user's subscriptions, and read the feed URLs out of an import.

use super::service::Subscription;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The subscriptions as an OPML 2.0 document.
pub fn export(subscriptions: &[Subscription]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<opml version=\"2.0\">\n  <head><title>Tidings subscriptions</title></head>\n  <body>\n",
    );
    for s in subscriptions {
        let title = escape(s.feed.title.as_deref().unwrap_or(&s.feed.url));
        out.push_str(&format!(
            "    <outline type=\"rss\" text=\"{title}\" title=\"{title}\" xmlUrl=\"{}\"/>\n",
            escape(&s.feed.url)
        ));
    }
    out.push_str("  </body>\n</opml>\n");
    out
}

/// The `xmlUrl` of every outline in an OPML document (nested outlines too).
pub fn feed_urls(doc: &str) -> Result<Vec<String>, String> {
    if !doc.contains("<opml") {
        return Err("not an OPML document".into());
    }
    let mut urls = Vec::new();
    for outline in doc.split("<outline").skip(1) {
        let tag = outline.split('>').next().unwrap_or("");
        if let Some(url) = attribute(tag, "xmlUrl") {
            urls.push(url);
        }
    }
    Ok(urls)
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(at) = rest.find(name) {
        let after = &rest[at + name.len()..];
        let preceded = rest[..at].chars().last().is_some_and(char::is_whitespace);
        if let Some(value) = after.trim_start().strip_prefix('=').map(str::trim_start)
            && preceded
        {
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let body = &value[1..];
                let end = body.find(quote)?;
                return Some(unescape(&body[..end]));
            }
        }
        rest = after;
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::feeds::FeedRow;

    #[test]
    fn export_then_import_round_trips() {
        let subs = vec![Subscription {
            feed: FeedRow {
                feed_id: 1,
                url: "https://a.example/feed?x=1&y=2".into(),
                title: Some("A & B".into()),
                ..FeedRow::default()
            },
            subscribed_ts: 5,
        }];
        let doc = export(&subs);
        assert!(doc.contains("x=1&amp;y=2") && doc.contains("A &amp; B"));
        assert_eq!(feed_urls(&doc).expect("opml"), vec!["https://a.example/feed?x=1&y=2".to_owned()]);
    }

    #[test]
    fn nested_outlines_and_single_quotes() {
        let doc = "<opml version='1.0'><body><outline text='Tech'>\
                   <outline type='rss' xmlUrl='https://b.example/rss'/></outline></body></opml>";
        assert_eq!(feed_urls(doc).expect("opml"), vec!["https://b.example/rss".to_owned()]);
        assert!(feed_urls("<html/>").is_err());
    }
}
