-- Feeds: one row per feed URL, shared by every local subscriber; who subscribes;
-- and the items, one row per item identity, whose stream position moves when the
-- item changes (so /sync shows a changed title once, as an update).

CREATE TABLE feeds (
    feed_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL UNIQUE,
    -- the feed document found on an HTML page subscribed to (<link rel="alternate">)
    fetch_url       TEXT,
    title           TEXT,
    etag            TEXT,
    last_modified   TEXT,
    created_ts      INTEGER NOT NULL,
    last_fetched_ts INTEGER,
    next_fetch_ts   INTEGER,
    -- floor on the interval the origin asked for (Cache-Control max-age, Expires, RSS ttl)
    hint_ms         INTEGER,
    failures        INTEGER NOT NULL DEFAULT 0,
    fetches         INTEGER NOT NULL DEFAULT 0,
    not_modified    INTEGER NOT NULL DEFAULT 0,
    errors          INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
) STRICT;

CREATE TABLE feed_subscriptions (
    user_id       TEXT NOT NULL,
    feed_id       INTEGER NOT NULL REFERENCES feeds(feed_id),
    subscribed_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, feed_id)
) STRICT;
CREATE INDEX feed_subscriptions_feed ON feed_subscriptions(feed_id);

-- item_key is the identity: "id:<guid or id>", else "link:<link>", else "hash:<sha256>".
-- content_hash tells a changed item from one seen before.
CREATE TABLE feed_items (
    item_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    feed_id      INTEGER NOT NULL REFERENCES feeds(feed_id),
    item_key     TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    title        TEXT NOT NULL,
    link         TEXT NOT NULL,
    summary      TEXT NOT NULL,
    author       TEXT,
    published_ts INTEGER NOT NULL,
    updated_ts   INTEGER NOT NULL,
    stored_ts    INTEGER NOT NULL,
    stream_pos   INTEGER NOT NULL,
    UNIQUE (feed_id, item_key)
) STRICT;
CREATE INDEX feed_items_pos ON feed_items(feed_id, stream_pos);
