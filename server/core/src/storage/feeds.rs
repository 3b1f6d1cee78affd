//! Feeds: one row per feed URL, per-user subscriptions, and items with the stream
//! position of their last change.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::Result;

/// One feed as stored: what it is and how its polling went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedRow {
    /// The feed's ID.
    pub feed_id: i64,
    /// The URL subscribed to.
    pub url: String,
    /// Where the document is fetched, when `url` was an HTML page that named its
    /// feed (discovery); otherwise `url` itself.
    pub fetch_url: Option<String>,
    /// The title from the last document, if any.
    pub title: Option<String>,
    /// The origin's ETag, for conditional GET.
    pub etag: Option<String>,
    /// The origin's Last-Modified, for conditional GET.
    pub last_modified: Option<String>,
    /// When the feed was first subscribed to (Unix ms).
    pub created_ts: u64,
    /// When a fetch last succeeded (200 or 304), Unix ms.
    pub last_fetched_ts: Option<u64>,
    /// When the next poll is due, Unix ms.
    pub next_fetch_ts: Option<u64>,
    /// The interval floor the origin asked for (max-age, Expires, ttl), ms.
    pub hint_ms: Option<u64>,
    /// Failures in a row (the backoff).
    pub failures: u32,
    /// Fetches tried.
    pub fetches: u64,
    /// Fetches answered 304.
    pub not_modified: u64,
    /// Fetches that failed.
    pub errors: u64,
    /// The last failure, cleared by a success.
    pub last_error: Option<String>,
    /// Where items come from: `origin` (fetched here), or `peer:<server_name>`.
    pub source: String,
    /// The upstream's stream position of the newest item it sent us.
    pub upstream_pos: u64,
    /// Peers were told that we mirror this feed.
    pub announced: bool,
}

/// One item as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemRow {
    /// The item's ID.
    pub item_id: i64,
    /// Its feed.
    pub feed_id: i64,
    /// Its identity within the feed (`id:`, `link:` or `hash:`).
    pub item_key: String,
    /// A hash of what a client sees, to tell a change.
    pub content_hash: String,
    /// Title (may be empty).
    pub title: String,
    /// Link (may be empty).
    pub link: String,
    /// Summary (may be empty).
    pub summary: String,
    /// Author, if named.
    pub author: Option<String>,
    /// Published, Unix ms.
    pub published_ts: u64,
    /// Last updated, Unix ms.
    pub updated_ts: u64,
    /// When this server stored (or last changed) it, Unix ms.
    pub stored_ts: u64,
    /// Stream position of its last change.
    pub stream_pos: u64,
}

/// The feed queries.
pub trait FeedStore {
    /// The feed with this URL.
    fn feed_by_url(&self, url: &str) -> Result<Option<FeedRow>>;
    /// The feed with this ID.
    fn feed_get(&self, feed_id: i64) -> Result<Option<FeedRow>>;
    /// Create a feed row for `url`; its ID.
    fn feed_insert(&self, url: &str, now: u64) -> Result<i64>;
    /// Every feed.
    fn feeds_all(&self) -> Result<Vec<FeedRow>>;
    /// Write back a feed's fetch state (every column but the URL and creation time).
    fn feed_save(&self, feed: &FeedRow) -> Result<()>;

    /// Subscribe `user` to `feed_id`; whether it is new.
    fn subscription_add(&self, user: &str, feed_id: i64, now: u64) -> Result<bool>;
    /// Unsubscribe; whether there was one.
    fn subscription_remove(&self, user: &str, feed_id: i64) -> Result<bool>;
    /// The user's feeds with when each was subscribed to, by feed ID.
    fn subscriptions_of(&self, user: &str) -> Result<Vec<(FeedRow, u64)>>;
    /// When `user` subscribed to `feed_id`, if they do.
    fn subscribed_ts(&self, user: &str, feed_id: i64) -> Result<Option<u64>>;
    /// How many feeds `user` subscribes to.
    fn subscription_count(&self, user: &str) -> Result<u64>;
    /// Who subscribes to `feed_id`.
    fn subscribers(&self, feed_id: i64) -> Result<Vec<String>>;
    /// Every feed with at least one subscriber, and how many.
    fn subscriber_counts(&self) -> Result<Vec<(i64, u64)>>;

    /// The item of `feed_id` with this identity.
    fn item_by_key(&self, feed_id: i64, key: &str) -> Result<Option<ItemRow>>;
    /// Store a new item, or a changed one at its new position; `false` when an item
    /// with this identity and content is already stored (a repeat writes nothing, so
    /// two writers racing with the same item cannot show it twice).
    fn item_put(&self, item: &ItemRow) -> Result<bool>;
    /// Items of `feed_id` changed after `since`, oldest change first, at most `limit`.
    fn items_after(&self, feed_id: i64, since: u64, limit: u64) -> Result<Vec<ItemRow>>;
    /// The newest `limit` items of `feed_id` (by stream position), oldest first.
    fn items_newest(&self, feed_id: i64, limit: u64) -> Result<Vec<ItemRow>>;
    /// Items of the feeds `user` subscribes to changed in `(since, upto]`, oldest first.
    fn items_changed_for(&self, user: &str, since: u64, upto: u64) -> Result<Vec<ItemRow>>;
    /// Delete items stored before `before`; how many.
    fn items_prune(&self, before: u64) -> Result<u64>;
}

const FEED_COLUMNS: &str = "feed_id, url, title, etag, last_modified, created_ts, last_fetched_ts, next_fetch_ts, \
                            hint_ms, failures, fetches, not_modified, errors, last_error, fetch_url, \
                            source, upstream_pos, announced";
const ITEM_COLUMNS: &str = "item_id, feed_id, item_key, content_hash, title, link, summary, author, published_ts, \
                            updated_ts, stored_ts, stream_pos";

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

fn feed_row(r: &Row<'_>) -> rusqlite::Result<FeedRow> {
    Ok(FeedRow {
        feed_id: r.get(0)?,
        url: r.get(1)?,
        title: r.get(2)?,
        etag: r.get(3)?,
        last_modified: r.get(4)?,
        created_ts: r.get::<_, i64>(5)?.max(0) as u64,
        last_fetched_ts: opt_u64(r.get(6)?),
        next_fetch_ts: opt_u64(r.get(7)?),
        hint_ms: opt_u64(r.get(8)?),
        failures: r.get::<_, i64>(9)?.clamp(0, i64::from(u32::MAX)) as u32,
        fetches: r.get::<_, i64>(10)?.max(0) as u64,
        not_modified: r.get::<_, i64>(11)?.max(0) as u64,
        errors: r.get::<_, i64>(12)?.max(0) as u64,
        last_error: r.get(13)?,
        fetch_url: r.get(14)?,
        source: r.get(15)?,
        upstream_pos: r.get::<_, i64>(16)?.max(0) as u64,
        announced: r.get::<_, i64>(17)? != 0,
    })
}

fn item_row(r: &Row<'_>) -> rusqlite::Result<ItemRow> {
    Ok(ItemRow {
        item_id: r.get(0)?,
        feed_id: r.get(1)?,
        item_key: r.get(2)?,
        content_hash: r.get(3)?,
        title: r.get(4)?,
        link: r.get(5)?,
        summary: r.get(6)?,
        author: r.get(7)?,
        published_ts: r.get::<_, i64>(8)?.max(0) as u64,
        updated_ts: r.get::<_, i64>(9)?.max(0) as u64,
        stored_ts: r.get::<_, i64>(10)?.max(0) as u64,
        stream_pos: r.get::<_, i64>(11)?.max(0) as u64,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl FeedStore for Connection {
    fn feed_by_url(&self, url: &str) -> Result<Option<FeedRow>> {
        let sql = format!("SELECT {FEED_COLUMNS} FROM feeds WHERE url = ?1");
        Ok(self.query_row(&sql, [url], feed_row).optional()?)
    }

    fn feed_get(&self, feed_id: i64) -> Result<Option<FeedRow>> {
        let sql = format!("SELECT {FEED_COLUMNS} FROM feeds WHERE feed_id = ?1");
        Ok(self.query_row(&sql, [feed_id], feed_row).optional()?)
    }

    fn feed_insert(&self, url: &str, now: u64) -> Result<i64> {
        self.execute("INSERT INTO feeds (url, created_ts) VALUES (?1, ?2)", params![url, to_i64(now)])?;
        Ok(self.last_insert_rowid())
    }

    fn feeds_all(&self) -> Result<Vec<FeedRow>> {
        let sql = format!("SELECT {FEED_COLUMNS} FROM feeds ORDER BY feed_id");
        let mut stmt = self.prepare(&sql)?;
        let rows = stmt.query_map([], feed_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn feed_save(&self, f: &FeedRow) -> Result<()> {
        self.execute(
            "UPDATE feeds SET title = ?2, etag = ?3, last_modified = ?4, last_fetched_ts = ?5, next_fetch_ts = ?6,
               hint_ms = ?7, failures = ?8, fetches = ?9, not_modified = ?10, errors = ?11, last_error = ?12,
               fetch_url = ?13, source = ?14, upstream_pos = ?15, announced = ?16
             WHERE feed_id = ?1",
            params![
                f.feed_id,
                f.title,
                f.etag,
                f.last_modified,
                f.last_fetched_ts.map(to_i64),
                f.next_fetch_ts.map(to_i64),
                f.hint_ms.map(to_i64),
                i64::from(f.failures),
                to_i64(f.fetches),
                to_i64(f.not_modified),
                to_i64(f.errors),
                f.last_error,
                f.fetch_url,
                f.source,
                to_i64(f.upstream_pos),
                i64::from(f.announced),
            ],
        )?;
        Ok(())
    }

    fn subscription_add(&self, user: &str, feed_id: i64, now: u64) -> Result<bool> {
        let n = self.execute(
            "INSERT OR IGNORE INTO feed_subscriptions (user_id, feed_id, subscribed_ts) VALUES (?1, ?2, ?3)",
            params![user, feed_id, to_i64(now)],
        )?;
        Ok(n > 0)
    }

    fn subscription_remove(&self, user: &str, feed_id: i64) -> Result<bool> {
        let n =
            self.execute("DELETE FROM feed_subscriptions WHERE user_id = ?1 AND feed_id = ?2", params![user, feed_id])?;
        Ok(n > 0)
    }

    fn subscriptions_of(&self, user: &str) -> Result<Vec<(FeedRow, u64)>> {
        let cols = FEED_COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {cols}, s.subscribed_ts FROM feed_subscriptions s JOIN feeds f ON f.feed_id = s.feed_id
             WHERE s.user_id = ?1 ORDER BY f.feed_id"
        );
        let mut stmt = self.prepare(&sql)?;
        let rows = stmt
            .query_map([user], |r| Ok((feed_row(r)?, r.get::<_, i64>(18)?.max(0) as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn subscribed_ts(&self, user: &str, feed_id: i64) -> Result<Option<u64>> {
        let ts: Option<i64> = self
            .query_row(
                "SELECT subscribed_ts FROM feed_subscriptions WHERE user_id = ?1 AND feed_id = ?2",
                params![user, feed_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(opt_u64(ts))
    }

    fn subscription_count(&self, user: &str) -> Result<u64> {
        let n: i64 =
            self.query_row("SELECT COUNT(*) FROM feed_subscriptions WHERE user_id = ?1", [user], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn subscribers(&self, feed_id: i64) -> Result<Vec<String>> {
        let mut stmt = self.prepare_cached("SELECT user_id FROM feed_subscriptions WHERE feed_id = ?1")?;
        let rows = stmt.query_map([feed_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn subscriber_counts(&self) -> Result<Vec<(i64, u64)>> {
        let mut stmt = self.prepare("SELECT feed_id, COUNT(*) FROM feed_subscriptions GROUP BY feed_id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn item_by_key(&self, feed_id: i64, key: &str) -> Result<Option<ItemRow>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM feed_items WHERE feed_id = ?1 AND item_key = ?2");
        Ok(self.prepare_cached(&sql)?.query_row(params![feed_id, key], item_row).optional()?)
    }

    fn item_put(&self, i: &ItemRow) -> Result<bool> {
        let n = self
            .prepare_cached(
                "INSERT INTO feed_items (feed_id, item_key, content_hash, title, link, summary, author, published_ts,
                                     updated_ts, stored_ts, stream_pos)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(feed_id, item_key) DO UPDATE SET content_hash = excluded.content_hash,
               title = excluded.title, link = excluded.link, summary = excluded.summary, author = excluded.author,
               published_ts = excluded.published_ts, updated_ts = excluded.updated_ts,
               stored_ts = excluded.stored_ts, stream_pos = excluded.stream_pos
             WHERE feed_items.content_hash <> excluded.content_hash",
            )?
            .execute(params![
                i.feed_id,
                i.item_key,
                i.content_hash,
                i.title,
                i.link,
                i.summary,
                i.author,
                to_i64(i.published_ts),
                to_i64(i.updated_ts),
                to_i64(i.stored_ts),
                to_i64(i.stream_pos),
            ])?;
        Ok(n > 0)
    }

    fn items_after(&self, feed_id: i64, since: u64, limit: u64) -> Result<Vec<ItemRow>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM feed_items WHERE feed_id = ?1 AND stream_pos > ?2 ORDER BY stream_pos LIMIT ?3"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![feed_id, to_i64(since), to_i64(limit)], item_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn items_newest(&self, feed_id: i64, limit: u64) -> Result<Vec<ItemRow>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM feed_items WHERE feed_id = ?1 ORDER BY stream_pos DESC LIMIT ?2");
        let mut stmt = self.prepare_cached(&sql)?;
        let mut rows =
            stmt.query_map(params![feed_id, to_i64(limit)], item_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    fn items_changed_for(&self, user: &str, since: u64, upto: u64) -> Result<Vec<ItemRow>> {
        let cols = ITEM_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {cols} FROM feed_items i JOIN feed_subscriptions s ON s.feed_id = i.feed_id
             WHERE s.user_id = ?1 AND i.stream_pos > ?2 AND i.stream_pos <= ?3 ORDER BY i.stream_pos"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![user, to_i64(since), to_i64(upto)], item_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn items_prune(&self, before: u64) -> Result<u64> {
        let n = self.execute("DELETE FROM feed_items WHERE stored_ts < ?1", [to_i64(before)])?;
        Ok(n as u64)
    }
}
