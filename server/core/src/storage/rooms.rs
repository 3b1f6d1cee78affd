//! Rooms: the room list, the append-only event log (ordered by stream position),
//! the current-state cache, redactions, transaction IDs, aliases and receipts.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::Result;

/// One room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    /// The room ID.
    pub room_id: String,
    /// The room version (`"10"`).
    pub room_version: String,
    /// Who created it.
    pub creator: String,
    /// When, Unix ms.
    pub created_ts: u64,
    /// Listed in the public room directory.
    pub published: bool,
}

/// One event as stored, with the redaction that hit it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRow {
    /// Its stream position (also its order in the room).
    pub pos: u64,
    /// Its depth in the room: 1 for the create event.
    pub depth: u64,
    /// Its room.
    pub room_id: String,
    /// Its ID (`$` + reference hash).
    pub event_id: String,
    /// `type`.
    pub event_type: String,
    /// `state_key`, for state events.
    pub state_key: Option<String>,
    /// `sender`.
    pub sender: String,
    /// `content.m.relates_to.rel_type`.
    pub rel_type: Option<String>,
    /// `content.m.relates_to.event_id`.
    pub relates_to: Option<String>,
    /// The sending device, for events sent with a transaction ID.
    pub txn_device: Option<String>,
    /// The client's transaction ID.
    pub txn_id: Option<String>,
    /// The event as built, without `event_id`.
    pub json: String,
    /// The redaction event that redacted it.
    pub redacted_by: Option<String>,
}

/// One receipt: the newest of one user, type and thread in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// The room.
    pub room_id: String,
    /// Whose receipt.
    pub user_id: String,
    /// `m.read`, `m.read.private` or `m.fully_read`.
    pub receipt_type: String,
    /// The thread, `""` when unthreaded.
    pub thread_id: String,
    /// The event read up to.
    pub event_id: String,
    /// When, Unix ms.
    pub ts: u64,
    /// Its stream position.
    pub pos: u64,
}

/// One page of events: which way and where it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPage {
    /// Only events above this position.
    pub above: u64,
    /// Only events at or below this position.
    pub upto: u64,
    /// Newest first (`true`) or oldest first.
    pub backwards: bool,
    /// At most this many.
    pub limit: u32,
}

/// The queries of the rooms domain.
pub trait RoomStore {
    /// Add a room.
    fn room_insert(&self, room: &RoomRow) -> Result<()>;
    /// Every room (start-up loads them).
    fn rooms_all(&self) -> Result<Vec<RoomRow>>;
    /// List or unlist a room in the public directory.
    fn room_set_published(&self, room_id: &str, published: bool) -> Result<()>;
    /// Append an event; a state event also becomes the current state of its key.
    fn room_event_insert(&self, event: &EventRow) -> Result<()>;
    /// Record that `redaction_id` (at `pos`) redacted `event_id`.
    fn room_redaction_insert(&self, event_id: &str, redaction_id: &str, pos: u64) -> Result<()>;
    /// One event by ID.
    fn room_event(&self, event_id: &str) -> Result<Option<EventRow>>;
    /// The current state of a room.
    fn room_current_state(&self, room_id: &str) -> Result<Vec<EventRow>>;
    /// The state of a room just after position `at`: the newest state event per key at or below it.
    fn room_state_at(&self, room_id: &str, at: u64) -> Result<Vec<EventRow>>;
    /// The state events of a room in `(above, upto]`.
    fn room_state_changes(&self, room_id: &str, above: u64, upto: u64) -> Result<Vec<EventRow>>;
    /// A page of a room's events.
    fn room_events(&self, room_id: &str, page: EventPage) -> Result<Vec<EventRow>>;
    /// How many events of a room lie in `(above, upto]`.
    fn room_event_count(&self, room_id: &str, above: u64, upto: u64) -> Result<u64>;
    /// Events that relate to `event_id`, oldest first, optionally of one rel_type and event type.
    fn room_relations(
        &self,
        event_id: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        page: EventPage,
    ) -> Result<Vec<EventRow>>;
    /// Thread roots of a room ordered by their newest reply (newest first), below
    /// the reply position `before`; only those `participant` sent or replied in, if given.
    fn room_thread_roots(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: u64,
        limit: u32,
    ) -> Result<Vec<(EventRow, u64)>>;
    /// The member events of `user_id` in a room, oldest first, as (pos, membership).
    fn room_membership_history(&self, room_id: &str, user_id: &str) -> Result<Vec<(u64, String)>>;
    /// The history visibility settings of a room, oldest first, as (pos, visibility).
    fn room_visibility_history(&self, room_id: &str) -> Result<Vec<(u64, String)>>;
    /// For each of `event_ids` that others relate to: (event_id, rel_type, count, newest pos).
    fn room_relation_counts(&self, event_ids: &[String]) -> Result<Vec<(String, String, u64, u64)>>;
    /// The event at a stream position.
    fn room_event_at(&self, pos: u64) -> Result<Option<EventRow>>;
    /// Whether `user_id` replied in the thread of `root`.
    fn room_thread_participated(&self, root: &str, user_id: &str) -> Result<bool>;
    /// The event ID a device's transaction to the endpoint `scope` produced.
    fn room_txn(&self, user_id: &str, device_id: &str, scope: &str, txn_id: &str) -> Result<Option<String>>;
    /// Remember the event ID a device's transaction to the endpoint `scope` produced.
    fn room_txn_insert(&self, user_id: &str, device_id: &str, scope: &str, txn_id: &str, event_id: &str) -> Result<()>;
    /// The room an alias names.
    fn room_alias(&self, alias: &str) -> Result<Option<(String, String)>>;
    /// Add an alias; `false` if it is taken.
    fn room_alias_insert(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool>;
    /// Remove an alias.
    fn room_alias_delete(&self, alias: &str) -> Result<()>;
    /// How many aliases a room has.
    fn room_aliases_of(&self, room_id: &str) -> Result<usize>;
    /// Store a receipt (replacing the older one of the same user, type and thread).
    fn room_receipt_put(&self, receipt: &ReceiptRow) -> Result<()>;
    /// A room's receipts in `(above, upto]`.
    fn room_receipts(&self, room_id: &str, above: u64, upto: u64) -> Result<Vec<ReceiptRow>>;
    /// The position of the event a user's newest unthreaded read receipt names.
    fn room_read_up_to(&self, room_id: &str, user_id: &str) -> Result<Option<u64>>;
    /// Messages of others in `(above, upto]` whose JSON contains `needle` (ASCII,
    /// lower case; matched case-blind), the newest `limit`: the candidates for the
    /// highlight count, found without reading every unread event into the server.
    fn room_unread_containing(
        &self,
        room_id: &str,
        user_id: &str,
        needle: &str,
        above: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>>;
    /// How many redactions a room has in `(above, upto]`.
    fn room_redactions_between(&self, room_id: &str, above: u64, upto: u64) -> Result<u64>;
    /// How many messages of others lie in `(above, upto]`.
    fn room_unread_count(&self, room_id: &str, user_id: &str, above: u64, upto: u64) -> Result<u64>;
    /// Forget a room for a user.
    fn room_forget(&self, user_id: &str, room_id: &str) -> Result<()>;
    /// Whether a user forgot a room.
    fn room_is_forgotten(&self, user_id: &str, room_id: &str) -> Result<bool>;
}

const EVENT_COLUMNS: &str = "e.pos, e.depth, e.room_id, e.event_id, e.event_type, e.state_key, e.sender, e.rel_type,
     e.relates_to, e.txn_device, e.txn_id, e.json, r.redaction_id";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        pos: r.get::<_, i64>(0)? as u64,
        depth: r.get::<_, i64>(1)? as u64,
        room_id: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        state_key: r.get(5)?,
        sender: r.get(6)?,
        rel_type: r.get(7)?,
        relates_to: r.get(8)?,
        txn_device: r.get(9)?,
        txn_id: r.get(10)?,
        json: r.get(11)?,
        redacted_by: r.get(12)?,
    })
}

fn receipt_row(r: &Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        room_id: r.get(0)?,
        user_id: r.get(1)?,
        receipt_type: r.get(2)?,
        thread_id: r.get(3)?,
        event_id: r.get(4)?,
        ts: r.get::<_, i64>(5)? as u64,
        pos: r.get::<_, i64>(6)? as u64,
    })
}

fn events_query(conn: &Connection, sql_tail: &str, args: impl rusqlite::Params) -> Result<Vec<EventRow>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM room_events e LEFT JOIN room_redactions r ON r.event_id = e.event_id {sql_tail}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, event_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl RoomStore for Connection {
    fn room_insert(&self, room: &RoomRow) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, published) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            room.room_id,
            room.room_version,
            room.creator,
            room.created_ts as i64,
            room.published
        ])?;
        Ok(())
    }

    fn rooms_all(&self) -> Result<Vec<RoomRow>> {
        let mut stmt =
            self.prepare_cached("SELECT room_id, room_version, creator, created_ts, published FROM rooms")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RoomRow {
                    room_id: r.get(0)?,
                    room_version: r.get(1)?,
                    creator: r.get(2)?,
                    created_ts: r.get::<_, i64>(3)? as u64,
                    published: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_set_published(&self, room_id: &str, published: bool) -> Result<()> {
        self.prepare_cached("UPDATE rooms SET published = ?2 WHERE room_id = ?1")?
            .execute(params![room_id, published])?;
        Ok(())
    }

    fn room_event_insert(&self, e: &EventRow) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO room_events (pos, room_id, depth, event_id, event_type, state_key, sender, rel_type, relates_to,
                                      txn_device, txn_id, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            e.pos as i64,
            e.room_id,
            e.depth as i64,
            e.event_id,
            e.event_type,
            e.state_key,
            e.sender,
            e.rel_type,
            e.relates_to,
            e.txn_device,
            e.txn_id,
            e.json
        ])?;
        if let Some(key) = &e.state_key {
            self.prepare_cached(
                "INSERT INTO room_state (room_id, event_type, state_key, event_id, pos) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos",
            )?
            .execute(params![e.room_id, e.event_type, key, e.event_id, e.pos as i64])?;
        }
        Ok(())
    }

    fn room_redaction_insert(&self, event_id: &str, redaction_id: &str, pos: u64) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO room_redactions (event_id, redaction_id, pos) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![event_id, redaction_id, pos as i64])?;
        Ok(())
    }

    fn room_event(&self, event_id: &str) -> Result<Option<EventRow>> {
        Ok(events_query(self, "WHERE e.event_id = ?1", params![event_id])?.into_iter().next())
    }

    fn room_current_state(&self, room_id: &str) -> Result<Vec<EventRow>> {
        events_query(
            self,
            "JOIN room_state s ON s.event_id = e.event_id WHERE s.room_id = ?1 ORDER BY e.pos",
            params![room_id],
        )
    }

    fn room_state_at(&self, room_id: &str, at: u64) -> Result<Vec<EventRow>> {
        events_query(
            self,
            "JOIN (SELECT MAX(pos) AS p FROM room_events WHERE room_id = ?1 AND state_key IS NOT NULL AND pos <= ?2
                   GROUP BY event_type, state_key) m ON m.p = e.pos ORDER BY e.pos",
            params![room_id, at as i64],
        )
    }

    fn room_state_changes(&self, room_id: &str, above: u64, upto: u64) -> Result<Vec<EventRow>> {
        events_query(
            self,
            "WHERE e.room_id = ?1 AND e.state_key IS NOT NULL AND e.pos > ?2 AND e.pos <= ?3 ORDER BY e.pos",
            params![room_id, above as i64, upto as i64],
        )
    }

    fn room_events(&self, room_id: &str, page: EventPage) -> Result<Vec<EventRow>> {
        let order = if page.backwards { "DESC" } else { "ASC" };
        events_query(
            self,
            &format!("WHERE e.room_id = ?1 AND e.pos > ?2 AND e.pos <= ?3 ORDER BY e.pos {order} LIMIT ?4"),
            params![room_id, page.above as i64, page.upto as i64, page.limit],
        )
    }

    fn room_event_count(&self, room_id: &str, above: u64, upto: u64) -> Result<u64> {
        let n: i64 = self
            .prepare_cached("SELECT COUNT(*) FROM room_events WHERE room_id = ?1 AND pos > ?2 AND pos <= ?3")?
            .query_row(params![room_id, above as i64, upto as i64], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn room_relations(
        &self,
        event_id: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        page: EventPage,
    ) -> Result<Vec<EventRow>> {
        let order = if page.backwards { "DESC" } else { "ASC" };
        events_query(
            self,
            &format!(
                "WHERE e.relates_to = ?1 AND (?2 IS NULL OR e.rel_type = ?2) AND (?3 IS NULL OR e.event_type = ?3)
                   AND e.pos > ?4 AND e.pos <= ?5 ORDER BY e.pos {order} LIMIT ?6"
            ),
            params![event_id, rel_type, event_type, page.above as i64, page.upto as i64, page.limit],
        )
    }

    fn room_thread_roots(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: u64,
        limit: u32,
    ) -> Result<Vec<(EventRow, u64)>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, t.latest FROM room_events e LEFT JOIN room_redactions r ON r.event_id = e.event_id
             JOIN (SELECT relates_to AS root, MAX(pos) AS latest FROM room_events
                   WHERE room_id = ?1 AND rel_type = 'm.thread' GROUP BY relates_to) t ON t.root = e.event_id
             WHERE t.latest < ?3 AND (?2 IS NULL OR e.sender = ?2 OR EXISTS (
                 SELECT 1 FROM room_events x WHERE x.relates_to = e.event_id AND x.rel_type = 'm.thread' AND x.sender = ?2))
             ORDER BY t.latest DESC LIMIT ?4"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![room_id, participant, before as i64, limit], |r| {
                Ok((event_row(r)?, r.get::<_, i64>(13)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_membership_history(&self, room_id: &str, user_id: &str) -> Result<Vec<(u64, String)>> {
        let mut stmt = self.prepare_cached(
            "SELECT pos, json_extract(json, '$.content.membership') FROM room_events
             WHERE room_id = ?1 AND event_type = 'm.room.member' AND state_key = ?2 ORDER BY pos",
        )?;
        let rows = stmt
            .query_map(params![room_id, user_id], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_visibility_history(&self, room_id: &str) -> Result<Vec<(u64, String)>> {
        let mut stmt = self.prepare_cached(
            "SELECT pos, json_extract(json, '$.content.history_visibility') FROM room_events
             WHERE room_id = ?1 AND event_type = 'm.room.history_visibility' AND state_key = '' ORDER BY pos",
        )?;
        let rows = stmt
            .query_map(params![room_id], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_relation_counts(&self, event_ids: &[String]) -> Result<Vec<(String, String, u64, u64)>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; event_ids.len()].join(",");
        let sql = format!(
            "SELECT e.relates_to, e.rel_type, COUNT(*), MAX(e.pos) FROM room_events e
             LEFT JOIN room_redactions r ON r.event_id = e.event_id
             WHERE e.relates_to IN ({marks}) AND e.rel_type IS NOT NULL AND r.redaction_id IS NULL
             GROUP BY e.relates_to, e.rel_type"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(event_ids.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_event_at(&self, pos: u64) -> Result<Option<EventRow>> {
        Ok(events_query(self, "WHERE e.pos = ?1", params![pos as i64])?.into_iter().next())
    }

    fn room_thread_participated(&self, root: &str, user_id: &str) -> Result<bool> {
        Ok(self
            .prepare_cached(
                "SELECT 1 FROM room_events WHERE relates_to = ?1 AND rel_type = 'm.thread' AND sender = ?2 LIMIT 1",
            )?
            .query_row(params![root, user_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn room_txn(&self, user_id: &str, device_id: &str, scope: &str, txn_id: &str) -> Result<Option<String>> {
        Ok(self
            .prepare_cached(
                "SELECT event_id FROM room_txns WHERE user_id = ?1 AND device_id = ?2 AND scope = ?3 AND txn_id = ?4",
            )?
            .query_row(params![user_id, device_id, scope, txn_id], |r| r.get(0))
            .optional()?)
    }

    fn room_txn_insert(&self, user_id: &str, device_id: &str, scope: &str, txn_id: &str, event_id: &str) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO room_txns (user_id, device_id, scope, txn_id, event_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![user_id, device_id, scope, txn_id, event_id])?;
        Ok(())
    }

    fn room_alias(&self, alias: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .prepare_cached("SELECT room_id, creator FROM room_aliases WHERE alias = ?1")?
            .query_row(params![alias], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn room_alias_insert(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool> {
        let n = self
            .prepare_cached(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![alias, room_id, creator])?;
        Ok(n == 1)
    }

    fn room_alias_delete(&self, alias: &str) -> Result<()> {
        self.prepare_cached("DELETE FROM room_aliases WHERE alias = ?1")?.execute(params![alias])?;
        Ok(())
    }

    fn room_aliases_of(&self, room_id: &str) -> Result<usize> {
        let n: i64 = self
            .prepare_cached("SELECT COUNT(*) FROM room_aliases WHERE room_id = ?1")?
            .query_row(params![room_id], |r| r.get(0))?;
        Ok(n as usize)
    }

    fn room_receipt_put(&self, r: &ReceiptRow) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO room_receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, pos)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (room_id, user_id, receipt_type, thread_id)
             DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos",
        )?
        .execute(params![
            r.room_id,
            r.user_id,
            r.receipt_type,
            r.thread_id,
            r.event_id,
            r.ts as i64,
            r.pos as i64
        ])?;
        Ok(())
    }

    fn room_receipts(&self, room_id: &str, above: u64, upto: u64) -> Result<Vec<ReceiptRow>> {
        let mut stmt = self.prepare_cached(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, pos FROM room_receipts
             WHERE room_id = ?1 AND pos > ?2 AND pos <= ?3 ORDER BY pos",
        )?;
        let rows = stmt
            .query_map(params![room_id, above as i64, upto as i64], receipt_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn room_read_up_to(&self, room_id: &str, user_id: &str) -> Result<Option<u64>> {
        let pos: Option<i64> = self
            .prepare_cached(
                "SELECT MAX(e.pos) FROM room_receipts r JOIN room_events e ON e.event_id = r.event_id
                 WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.receipt_type IN ('m.read', 'm.read.private')",
            )?
            .query_row(params![room_id, user_id], |r| r.get(0))?;
        Ok(pos.map(|p| p as u64))
    }

    fn room_unread_containing(
        &self,
        room_id: &str,
        user_id: &str,
        needle: &str,
        above: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        events_query(
            self,
            "WHERE e.room_id = ?1 AND e.sender != ?2 AND e.pos > ?3 AND e.pos <= ?4
               AND e.event_type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND r.redaction_id IS NULL
               AND instr(lower(e.json), ?6) > 0
             ORDER BY e.pos DESC LIMIT ?5",
            params![room_id, user_id, above as i64, upto as i64, limit, needle],
        )
    }

    fn room_redactions_between(&self, room_id: &str, above: u64, upto: u64) -> Result<u64> {
        let n: i64 = self
            .prepare_cached(
                "SELECT COUNT(*) FROM room_events
                 WHERE room_id = ?1 AND pos > ?2 AND pos <= ?3 AND event_type = 'm.room.redaction'",
            )?
            .query_row(params![room_id, above as i64, upto as i64], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn room_unread_count(&self, room_id: &str, user_id: &str, above: u64, upto: u64) -> Result<u64> {
        let n: i64 = self
            .prepare_cached(
                "SELECT COUNT(*) FROM room_events e LEFT JOIN room_redactions r ON r.event_id = e.event_id
                 WHERE e.room_id = ?1 AND e.sender != ?2 AND e.pos > ?3 AND e.pos <= ?4
                   AND e.event_type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND r.redaction_id IS NULL",
            )?
            .query_row(params![room_id, user_id, above as i64, upto as i64], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn room_forget(&self, user_id: &str, room_id: &str) -> Result<()> {
        self.prepare_cached("INSERT INTO room_forgotten (user_id, room_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
            .execute(params![user_id, room_id])?;
        Ok(())
    }

    fn room_is_forgotten(&self, user_id: &str, room_id: &str) -> Result<bool> {
        Ok(self
            .prepare_cached("SELECT 1 FROM room_forgotten WHERE user_id = ?1 AND room_id = ?2")?
            .query_row(params![user_id, room_id], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
