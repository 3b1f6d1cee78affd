//! Queries for the federation outbox, in-flight transactions, per-peer cursors,
//! peers' interest in our users, and received transaction IDs.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::lanes::Lane;

/// One queued EDU.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Its order in the outbox.
    pub id: i64,
    /// The EDU type.
    pub edu_type: String,
    /// The EDU content, as JSON text.
    pub content: String,
}

/// A transaction stored before it is sent, and resent as it is until acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTxn {
    /// The txnId.
    pub txn_id: String,
    /// The exact body.
    pub body: String,
    /// The presence cursor to commit when it is acknowledged.
    pub presence_upto: u64,
    /// Outbox rows with ids up to this are in it.
    pub outbox_upto: i64,
    /// How many EDUs it carries.
    pub edus: u64,
    /// The lane it travels in (one transaction in flight per destination and lane).
    pub lane: Lane,
}

/// The federation outbox, transactions in flight, cursors, interest and received txnIds.
pub trait FederationStore {
    /// Queue an EDU for `destination`, in the lane of its type ([`Lane::of_edu_type`]).
    fn push_outbox(&self, destination: &str, edu_type: &str, content: &str, now: u64) -> Result<()>;

    /// The oldest `limit` queued EDUs for `destination` in `lane`.
    fn outbox(&self, destination: &str, lane: Lane, limit: usize) -> Result<Vec<OutboxRow>>;

    /// How many EDUs wait in the outbox of `destination`.
    fn outbox_len(&self, destination: &str) -> Result<u64>;

    /// Store the transaction about to be sent to `destination`.
    fn store_txn(&self, destination: &str, txn: &StoredTxn, now: u64) -> Result<()>;

    /// Store `txn` in place of the transaction `old_txn_id` in flight in the same lane
    /// (a newer one that carries everything it did).
    fn replace_txn(&self, destination: &str, old_txn_id: &str, txn: &StoredTxn, now: u64) -> Result<()>;

    /// The transaction in flight to `destination` in `lane`, if any.
    fn pending_txn(&self, destination: &str, lane: Lane) -> Result<Option<StoredTxn>>;

    /// How many EDUs the transactions in flight to `destination` carry, all lanes.
    fn pending_edus(&self, destination: &str) -> Result<u64>;

    /// The peer acknowledged the transaction: drop it and what it carried, advance the cursor.
    fn ack_txn(&self, destination: &str, txn: &StoredTxn) -> Result<()>;

    /// Move `destination`'s presence cursor forward to `pos` (never back).
    fn advance_cursor(&self, destination: &str, pos: u64) -> Result<()>;

    /// How far the presence stream has been sent to `destination`.
    fn cursor(&self, destination: &str) -> Result<u64>;

    /// Record `destination`'s interest in `users` (and forget `removed`).
    fn set_interest(
        &self,
        destination: &str,
        added: &[String],
        removed: &[String],
        replace: bool,
        now: u64,
    ) -> Result<()>;

    /// Every (destination, user) interest.
    fn load_interest(&self) -> Result<Vec<(String, String)>>;

    /// Record a received transaction; `false` if it was seen before.
    fn mark_received(&self, origin: &str, txn_id: &str, now: u64) -> Result<bool>;

    /// Whether a transaction was received before.
    fn was_received(&self, origin: &str, txn_id: &str) -> Result<bool>;

    /// Forget received txnIds older than `before` (a peer never retries that late).
    fn prune_received(&self, before: u64) -> Result<()>;
}

impl FederationStore for Connection {
    fn push_outbox(&self, destination: &str, edu_type: &str, content: &str, now: u64) -> Result<()> {
        self.execute(
            "INSERT INTO federation_outbox (destination, edu_type, content, created_ts, lane) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![destination, edu_type, content, now as i64, Lane::of_edu_type(edu_type).index()],
        )?;
        Ok(())
    }

    fn outbox(&self, destination: &str, lane: Lane, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut stmt = self.prepare_cached(
            "SELECT id, edu_type, content FROM federation_outbox WHERE destination = ?1 AND lane = ?3 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![destination, limit as i64, lane.index()], |r| {
            Ok(OutboxRow { id: r.get(0)?, edu_type: r.get(1)?, content: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn outbox_len(&self, destination: &str) -> Result<u64> {
        let n: i64 =
            self.query_row("SELECT COUNT(*) FROM federation_outbox WHERE destination = ?1", [destination], |r| {
                r.get(0)
            })?;
        Ok(n as u64)
    }

    fn store_txn(&self, destination: &str, txn: &StoredTxn, now: u64) -> Result<()> {
        self.execute(
            "INSERT INTO federation_txns (destination, txn_id, body, presence_upto, outbox_upto, edus, created_ts, lane)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                destination,
                txn.txn_id,
                txn.body,
                txn.presence_upto as i64,
                txn.outbox_upto,
                txn.edus as i64,
                now as i64,
                txn.lane.index()
            ],
        )?;
        Ok(())
    }

    fn replace_txn(&self, destination: &str, old_txn_id: &str, txn: &StoredTxn, now: u64) -> Result<()> {
        self.execute(
            "DELETE FROM federation_txns WHERE destination = ?1 AND txn_id = ?2 AND lane = ?3",
            params![destination, old_txn_id, txn.lane.index()],
        )?;
        self.store_txn(destination, txn, now)
    }

    fn pending_txn(&self, destination: &str, lane: Lane) -> Result<Option<StoredTxn>> {
        Ok(self
            .query_row(
                "SELECT txn_id, body, presence_upto, outbox_upto, edus FROM federation_txns
                 WHERE destination = ?1 AND lane = ?2",
                params![destination, lane.index()],
                |r| {
                    Ok(StoredTxn {
                        txn_id: r.get(0)?,
                        body: r.get(1)?,
                        presence_upto: r.get::<_, i64>(2)? as u64,
                        outbox_upto: r.get(3)?,
                        edus: r.get::<_, i64>(4)? as u64,
                        lane,
                    })
                },
            )
            .optional()?)
    }

    fn pending_edus(&self, destination: &str) -> Result<u64> {
        let n: i64 = self.query_row(
            "SELECT COALESCE(SUM(edus), 0) FROM federation_txns WHERE destination = ?1",
            [destination],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn ack_txn(&self, destination: &str, txn: &StoredTxn) -> Result<()> {
        self.execute(
            "DELETE FROM federation_txns WHERE destination = ?1 AND txn_id = ?2 AND lane = ?3",
            params![destination, txn.txn_id, txn.lane.index()],
        )?;
        self.execute(
            "DELETE FROM federation_outbox WHERE destination = ?1 AND id <= ?2 AND lane = ?3",
            params![destination, txn.outbox_upto, txn.lane.index()],
        )?;
        self.execute(
            "INSERT INTO federation_cursors (destination, presence_pos) VALUES (?1, ?2)
             ON CONFLICT(destination) DO UPDATE SET presence_pos = MAX(presence_pos, excluded.presence_pos)",
            params![destination, txn.presence_upto as i64],
        )?;
        Ok(())
    }

    fn advance_cursor(&self, destination: &str, pos: u64) -> Result<()> {
        self.execute(
            "INSERT INTO federation_cursors (destination, presence_pos) VALUES (?1, ?2)
             ON CONFLICT(destination) DO UPDATE SET presence_pos = MAX(presence_pos, excluded.presence_pos)",
            params![destination, pos as i64],
        )?;
        Ok(())
    }

    fn cursor(&self, destination: &str) -> Result<u64> {
        let pos: Option<i64> = self
            .query_row("SELECT presence_pos FROM federation_cursors WHERE destination = ?1", [destination], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(pos.unwrap_or(0) as u64)
    }

    fn set_interest(
        &self,
        destination: &str,
        added: &[String],
        removed: &[String],
        replace: bool,
        now: u64,
    ) -> Result<()> {
        if replace {
            self.execute("DELETE FROM federation_interest WHERE destination = ?1", [destination])?;
        }
        for user in removed {
            self.execute(
                "DELETE FROM federation_interest WHERE destination = ?1 AND user_id = ?2",
                params![destination, user],
            )?;
        }
        for user in added {
            self.execute(
                "INSERT INTO federation_interest (destination, user_id, ts) VALUES (?1, ?2, ?3)
                 ON CONFLICT(destination, user_id) DO NOTHING",
                params![destination, user, now as i64],
            )?;
        }
        Ok(())
    }

    fn load_interest(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.prepare("SELECT destination, user_id FROM federation_interest")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark_received(&self, origin: &str, txn_id: &str, now: u64) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO federation_received (origin, txn_id, ts) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![origin, txn_id, now as i64],
        )?;
        Ok(n == 1)
    }

    fn was_received(&self, origin: &str, txn_id: &str) -> Result<bool> {
        Ok(self
            .query_row(
                "SELECT 1 FROM federation_received WHERE origin = ?1 AND txn_id = ?2",
                params![origin, txn_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn prune_received(&self, before: u64) -> Result<()> {
        self.execute("DELETE FROM federation_received WHERE ts < ?1", [before as i64])?;
        Ok(())
    }
}
