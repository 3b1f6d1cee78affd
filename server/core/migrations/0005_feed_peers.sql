-- Feeds across the federation: where each feed comes from, who subscribes through
-- us, and what peers told us they mirror.

-- 'origin' (fetched here) or 'peer:<server_name>' (subscribed through that peer).
ALTER TABLE feeds ADD COLUMN source TEXT NOT NULL DEFAULT 'origin';
-- The upstream's stream position of the newest item it sent us: where to resume.
ALTER TABLE feeds ADD COLUMN upstream_pos INTEGER NOT NULL DEFAULT 0;
-- 1 once peers were told that we mirror this feed (fetched from its origin).
ALTER TABLE feeds ADD COLUMN announced INTEGER NOT NULL DEFAULT 0;

-- Peers that subscribe to a feed through us, with how many of their users watch it.
CREATE TABLE feed_downstreams (
    peer          TEXT NOT NULL,
    feed_id       INTEGER NOT NULL REFERENCES feeds(feed_id),
    watchers      INTEGER NOT NULL,
    subscribed_ts INTEGER NOT NULL,
    PRIMARY KEY (peer, feed_id)
) STRICT;
CREATE INDEX feed_downstreams_feed ON feed_downstreams(feed_id);

-- Feeds a peer announced that it fetches from the origin (and so mirrors).
CREATE TABLE feed_mirrors (
    peer TEXT NOT NULL,
    url  TEXT NOT NULL,
    PRIMARY KEY (peer, url)
) STRICT;

-- Whether a peer fetches origins at all (feeds.fetch = "direct"), as it told us.
CREATE TABLE feed_peer_modes (
    peer    TEXT PRIMARY KEY,
    fetches INTEGER NOT NULL
) STRICT;

-- What we last told each peer about our own mode, so it is told once and on change.
CREATE TABLE feed_told_modes (
    peer    TEXT PRIMARY KEY,
    fetches INTEGER NOT NULL
) STRICT;
