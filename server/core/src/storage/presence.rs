//! Queries for presence rows and presence-list subscriptions.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// A persisted presence record.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    /// Whose presence.
    pub user_id: String,
    /// "online", "unavailable" or "offline".
    pub state: String,
    /// Free text status.
    pub status_msg: Option<String>,
    /// The state last set by an explicit PUT, still in force.
    pub explicit_state: Option<String>,
    /// When the user was last active.
    pub last_active_ts: u64,
    /// When a client of the user last synced or made a request.
    pub last_seen_ts: u64,
    /// Stream position of the last visible change.
    pub stream_pos: u64,
    /// The devices watchers saw, as JSON `[[device_id, kind, idle], ...]`.
    pub devices: String,
}

/// A subscription row: `watcher` asked to see `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    /// Who watches.
    pub watcher: String,
    /// Who is watched.
    pub target: String,
    /// "pending", "accepted" or "denied".
    pub state: String,
    /// When the request was made or last answered.
    pub ts: u64,
    /// Stream position of the last change of this row.
    pub stream_pos: u64,
}

/// Presence rows and presence-list subscriptions: the presence service's storage.
pub trait PresenceStore {
    /// Write presence rows (each change, and the write-behind of last-seen times).
    fn upsert_many(&self, rows: &[PresenceRow]) -> Result<()>;

    /// Every presence row.
    fn load_all(&self) -> Result<Vec<PresenceRow>>;

    /// Insert or replace one subscription.
    fn put_subscription(&self, row: &SubscriptionRow) -> Result<()>;

    /// Remove a subscription.
    fn delete_subscription(&self, watcher: &str, target: &str) -> Result<()>;

    /// Every subscription.
    fn load_subscriptions(&self) -> Result<Vec<SubscriptionRow>>;

    /// The state of edge watcher → target, if it exists (as written so far, in this
    /// transaction too).
    fn subscription_state(&self, watcher: &str, target: &str) -> Result<Option<String>>;

    /// The highest stream position stored in any table (a floor for the counter at start).
    fn max_stream_pos(&self) -> Result<u64>;
}

impl PresenceStore for Connection {
    fn upsert_many(&self, rows: &[PresenceRow]) -> Result<()> {
        {
            let mut stmt = self.prepare_cached(
                "INSERT INTO presence (user_id, state, status_msg, explicit_state, last_active_ts, last_seen_ts, stream_pos,
                                       devices)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                   explicit_state = excluded.explicit_state, last_active_ts = excluded.last_active_ts,
                   last_seen_ts = excluded.last_seen_ts, stream_pos = excluded.stream_pos, devices = excluded.devices",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.user_id,
                    r.state,
                    r.status_msg,
                    r.explicit_state,
                    r.last_active_ts as i64,
                    r.last_seen_ts as i64,
                    r.stream_pos as i64,
                    r.devices
                ])?;
            }
        }
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<PresenceRow>> {
        let mut stmt = self.prepare(
            "SELECT user_id, state, status_msg, explicit_state, last_active_ts, last_seen_ts, stream_pos, devices
             FROM presence",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PresenceRow {
                user_id: r.get(0)?,
                state: r.get(1)?,
                status_msg: r.get(2)?,
                explicit_state: r.get(3)?,
                last_active_ts: r.get::<_, i64>(4)? as u64,
                last_seen_ts: r.get::<_, i64>(5)? as u64,
                stream_pos: r.get::<_, i64>(6)? as u64,
                devices: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_subscription(&self, row: &SubscriptionRow) -> Result<()> {
        self.execute(
            "INSERT INTO presence_subscriptions (watcher, target, state, ts, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(watcher, target) DO UPDATE SET state = excluded.state, ts = excluded.ts,
                 stream_pos = excluded.stream_pos",
            params![row.watcher, row.target, row.state, row.ts as i64, row.stream_pos as i64],
        )?;
        Ok(())
    }

    fn delete_subscription(&self, watcher: &str, target: &str) -> Result<()> {
        self.execute(
            "DELETE FROM presence_subscriptions WHERE watcher = ?1 AND target = ?2",
            params![watcher, target],
        )?;
        Ok(())
    }

    fn load_subscriptions(&self) -> Result<Vec<SubscriptionRow>> {
        let mut stmt = self.prepare("SELECT watcher, target, state, ts, stream_pos FROM presence_subscriptions")?;
        let rows = stmt.query_map([], |r| {
            Ok(SubscriptionRow {
                watcher: r.get(0)?,
                target: r.get(1)?,
                state: r.get(2)?,
                ts: r.get::<_, i64>(3)? as u64,
                stream_pos: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn subscription_state(&self, watcher: &str, target: &str) -> Result<Option<String>> {
        Ok(self
            .query_row(
                "SELECT state FROM presence_subscriptions WHERE watcher = ?1 AND target = ?2",
                params![watcher, target],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn max_stream_pos(&self) -> Result<u64> {
        let a: i64 = self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM presence", [], |r| r.get(0))?;
        let b: i64 =
            self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM presence_subscriptions", [], |r| r.get(0))?;
        let c: i64 = self.query_row("SELECT COALESCE(MAX(stream_pos), 0) FROM feed_items", [], |r| r.get(0))?;
        Ok(a.max(b).max(c) as u64)
    }
}
