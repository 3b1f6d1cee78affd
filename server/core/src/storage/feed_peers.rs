//! Feeds across the federation: the peers that subscribe to a feed through us
//! (downstreams, with their watcher counts), what peers announced they mirror, and
//! which peers fetch origins at all.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// One downstream's subscription to a feed through us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downstream {
    /// The peer.
    pub peer: String,
    /// The feed.
    pub feed_id: i64,
    /// How many of the peer's users watch it.
    pub watchers: u64,
}

/// The queries of feed federation.
pub trait FeedPeerStore {
    /// Record (or update) that `peer` subscribes to `feed_id` with `watchers`; `true` if new.
    fn downstream_put(&self, peer: &str, feed_id: i64, watchers: u64, now: u64) -> Result<bool>;
    /// `peer` no longer subscribes to `feed_id` through us; `true` if it did.
    fn downstream_remove(&self, peer: &str, feed_id: i64) -> Result<bool>;
    /// Drop every subscription of `peer` (before it sends its whole set again).
    fn downstream_clear(&self, peer: &str) -> Result<()>;
    /// The peers subscribing to `feed_id` through us.
    fn downstreams_of(&self, feed_id: i64) -> Result<Vec<Downstream>>;
    /// The URLs `peer` subscribes to through us, sorted.
    fn downstream_urls(&self, peer: &str) -> Result<Vec<String>>;
    /// How many feeds `peer` subscribes to through us.
    fn downstream_count(&self, peer: &str) -> Result<u64>;
    /// Every peer with at least one subscription through us.
    fn downstream_peers(&self) -> Result<Vec<String>>;
    /// Watchers of each feed summed over the downstreams.
    fn remote_watcher_counts(&self) -> Result<Vec<(i64, u64)>>;

    /// `peer` announced that it mirrors `url`.
    fn mirror_add(&self, peer: &str, url: &str) -> Result<()>;
    /// `peer` no longer mirrors `url`.
    fn mirror_remove(&self, peer: &str, url: &str) -> Result<()>;
    /// Every (peer, url) announced.
    fn mirrors_all(&self) -> Result<Vec<(String, String)>>;
    /// `peer` told us whether it fetches origins.
    fn peer_mode_put(&self, peer: &str, fetches: bool) -> Result<()>;
    /// What each peer told us of its mode.
    fn peer_modes(&self) -> Result<Vec<(String, bool)>>;
    /// What we last told `peer` of our mode.
    fn told_mode(&self, peer: &str) -> Result<Option<bool>>;
    /// Remember that `peer` was told our mode.
    fn told_mode_put(&self, peer: &str, fetches: bool) -> Result<()>;
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl FeedPeerStore for Connection {
    fn downstream_put(&self, peer: &str, feed_id: i64, watchers: u64, now: u64) -> Result<bool> {
        let existed: bool = self
            .query_row(
                "SELECT 1 FROM feed_downstreams WHERE peer = ?1 AND feed_id = ?2",
                params![peer, feed_id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        self.execute(
            "INSERT INTO feed_downstreams (peer, feed_id, watchers, subscribed_ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(peer, feed_id) DO UPDATE SET watchers = excluded.watchers",
            params![peer, feed_id, to_i64(watchers), to_i64(now)],
        )?;
        Ok(!existed)
    }

    fn downstream_remove(&self, peer: &str, feed_id: i64) -> Result<bool> {
        let n =
            self.execute("DELETE FROM feed_downstreams WHERE peer = ?1 AND feed_id = ?2", params![peer, feed_id])?;
        Ok(n > 0)
    }

    fn downstream_clear(&self, peer: &str) -> Result<()> {
        self.execute("DELETE FROM feed_downstreams WHERE peer = ?1", [peer])?;
        Ok(())
    }

    fn downstreams_of(&self, feed_id: i64) -> Result<Vec<Downstream>> {
        let mut stmt =
            self.prepare_cached("SELECT peer, watchers FROM feed_downstreams WHERE feed_id = ?1 ORDER BY peer")?;
        let rows = stmt
            .query_map([feed_id], |r| {
                Ok(Downstream { peer: r.get(0)?, feed_id, watchers: r.get::<_, i64>(1)?.max(0) as u64 })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn downstream_urls(&self, peer: &str) -> Result<Vec<String>> {
        let mut stmt = self.prepare_cached(
            "SELECT f.url FROM feed_downstreams d JOIN feeds f ON f.feed_id = d.feed_id WHERE d.peer = ?1 ORDER BY f.url",
        )?;
        let rows = stmt.query_map([peer], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn downstream_count(&self, peer: &str) -> Result<u64> {
        let n: i64 = self.query_row("SELECT COUNT(*) FROM feed_downstreams WHERE peer = ?1", [peer], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn downstream_peers(&self) -> Result<Vec<String>> {
        let mut stmt = self.prepare("SELECT DISTINCT peer FROM feed_downstreams ORDER BY peer")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn remote_watcher_counts(&self) -> Result<Vec<(i64, u64)>> {
        let mut stmt = self.prepare("SELECT feed_id, SUM(watchers) FROM feed_downstreams GROUP BY feed_id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn mirror_add(&self, peer: &str, url: &str) -> Result<()> {
        self.execute("INSERT OR IGNORE INTO feed_mirrors (peer, url) VALUES (?1, ?2)", params![peer, url])?;
        Ok(())
    }

    fn mirror_remove(&self, peer: &str, url: &str) -> Result<()> {
        self.execute("DELETE FROM feed_mirrors WHERE peer = ?1 AND url = ?2", params![peer, url])?;
        Ok(())
    }

    fn mirrors_all(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.prepare("SELECT peer, url FROM feed_mirrors ORDER BY peer, url")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn peer_mode_put(&self, peer: &str, fetches: bool) -> Result<()> {
        self.execute(
            "INSERT INTO feed_peer_modes (peer, fetches) VALUES (?1, ?2)
             ON CONFLICT(peer) DO UPDATE SET fetches = excluded.fetches",
            params![peer, i64::from(fetches)],
        )?;
        Ok(())
    }

    fn peer_modes(&self) -> Result<Vec<(String, bool)>> {
        let mut stmt = self.prepare("SELECT peer, fetches FROM feed_peer_modes ORDER BY peer")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn told_mode(&self, peer: &str) -> Result<Option<bool>> {
        let v: Option<i64> =
            self.query_row("SELECT fetches FROM feed_told_modes WHERE peer = ?1", [peer], |r| r.get(0)).optional()?;
        Ok(v.map(|v| v != 0))
    }

    fn told_mode_put(&self, peer: &str, fetches: bool) -> Result<()> {
        self.execute(
            "INSERT INTO feed_told_modes (peer, fetches) VALUES (?1, ?2)
             ON CONFLICT(peer) DO UPDATE SET fetches = excluded.fetches",
            params![peer, i64::from(fetches)],
        )?;
        Ok(())
    }
}
