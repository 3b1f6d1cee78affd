//! The newest events of one room, in memory, so that a long poll woken by a new
//! message reads its timeline and unread counts without a trip to the database.
//!
//! A woken `/sync` wants the few events after its token. Reading them from SQLite
//! (on the reader pool, a thread hop and a query per room) once per member made each
//! message cost ten reads in a room of ten. The window holds, per room, every event
//! above its `floor`: events are pushed in their order once their write committed and
//! before their positions become visible (the room's order lock makes them commit one
//! at a time), so for any visible position `upto`, the window holds exactly the
//! room's events in `(floor, upto]`. A range that starts below the floor is not held
//! and the caller reads the database as before.
//!
//! Bounds: at most [`MAX_EVENTS`] events and [`MAX_BYTES`] of event JSON per room;
//! past either the oldest go and the floor rises. A room loaded at start-up starts
//! with an empty window whose floor is its newest event.

use std::collections::VecDeque;

use crate::storage::rooms::EventRow;

/// Events kept per room at most.
pub const MAX_EVENTS: usize = 64;
/// Bytes of event JSON kept per room at most.
pub const MAX_BYTES: usize = 64 * 1024;

/// The event types that count as unread messages.
pub const UNREAD_TYPES: [&str; 3] = ["m.room.message", "m.room.encrypted", "m.sticker"];

/// One room's newest events.
#[derive(Debug, Default)]
pub struct Recent {
    /// Every event of the room above this position is in `events`.
    floor: u64,
    /// Oldest first.
    events: VecDeque<EventRow>,
    /// Bytes of JSON in `events`.
    bytes: usize,
    /// An upper bound on the position of the newest event that relates to another
    /// (threads, edits, annotations): the room's newest position at start-up, then
    /// raised by each relating event pushed.
    newest_relation: u64,
}

impl Recent {
    /// A window holding nothing, for a room whose newest event is at `head` (0 for
    /// a room not created yet).
    pub fn new(head: u64) -> Self {
        Self { floor: head, newest_relation: head, ..Self::default() }
    }

    /// Add the room's next event (committed, not yet visible).
    pub fn push(&mut self, row: EventRow) {
        if row.relates_to.is_some() {
            self.newest_relation = self.newest_relation.max(row.pos);
        }
        self.bytes += row.json.len();
        self.events.push_back(row);
        while self.events.len() > MAX_EVENTS || (self.bytes > MAX_BYTES && self.events.len() > 1) {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.json.len();
                self.floor = old.pos;
            }
        }
    }

    /// `target` was redacted by `by`.
    pub fn redacted(&mut self, target: &str, by: &str) {
        if let Some(row) = self.events.iter_mut().find(|r| r.event_id == target) {
            row.redacted_by = Some(by.to_owned());
        }
    }

    /// Whether every event of the room in `(above, upto]` is held.
    pub fn holds(&self, above: u64) -> bool {
        above >= self.floor
    }

    /// The events in `(above, upto]`, oldest first, if all of them are held.
    pub fn range(&self, above: u64, upto: u64) -> Option<impl DoubleEndedIterator<Item = &EventRow>> {
        self.holds(above).then(|| self.events.iter().filter(move |r| r.pos > above && r.pos <= upto))
    }

    /// The newest `limit` events in `(above, upto]`, oldest first, and whether there
    /// were more; `None` if not all of the range is held.
    pub fn tail(&self, above: u64, upto: u64, limit: usize) -> Option<(Vec<EventRow>, bool)> {
        let mut rows: Vec<EventRow> = self.range(above, upto)?.rev().take(limit + 1).cloned().collect();
        let limited = rows.len() > limit;
        rows.truncate(limit);
        rows.reverse();
        Some((rows, limited))
    }

    /// Whether no event relates to any event at or after `pos`: then events from
    /// `pos` on have nothing to bundle (a relation is always newer than its target).
    pub fn nothing_relates_from(&self, pos: u64) -> bool {
        self.newest_relation < pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pos: u64, json_len: usize) -> EventRow {
        EventRow { pos, event_id: format!("$e{pos}"), json: "x".repeat(json_len), ..EventRow::default() }
    }

    #[test]
    fn holds_exactly_what_lies_above_the_floor() {
        let mut w = Recent::new(10);
        assert!(w.holds(10) && !w.holds(9));
        assert_eq!(w.tail(10, 100, 5), Some((vec![], false)));
        for pos in [12, 15, 20] {
            w.push(row(pos, 10));
        }
        let (rows, limited) = w.tail(10, 100, 2).expect("held");
        assert_eq!(rows.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![15, 20]);
        assert!(limited);
        let (rows, limited) = w.tail(12, 15, 5).expect("held");
        assert_eq!(rows.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![15]);
        assert!(!limited);
        assert_eq!(w.tail(9, 100, 5), None, "below the floor is not held");
    }

    #[test]
    fn the_floor_rises_past_the_bounds() {
        let mut w = Recent::new(0);
        for pos in 1..=(MAX_EVENTS as u64 + 3) {
            w.push(row(pos, 10));
        }
        assert!(!w.holds(2) && w.holds(3), "the three oldest went");
        assert_eq!(w.range(3, u64::MAX).expect("held").count(), MAX_EVENTS);
        let mut big = Recent::new(0);
        big.push(row(1, MAX_BYTES));
        big.push(row(2, 1));
        assert!(big.holds(1) && !big.holds(0), "bytes bound the window too");
        let mut huge = Recent::new(0);
        huge.push(row(1, MAX_BYTES * 2));
        assert!(huge.holds(0), "one event is always kept");
    }

    #[test]
    fn relations_and_redactions() {
        let mut w = Recent::new(5);
        assert!(!w.nothing_relates_from(5) && w.nothing_relates_from(6), "before start-up: assume the worst");
        w.push(row(7, 1));
        let mut reply = row(8, 1);
        reply.relates_to = Some("$e7".into());
        w.push(reply);
        assert!(!w.nothing_relates_from(8) && w.nothing_relates_from(9));
        w.redacted("$e7", "$r");
        assert_eq!(w.tail(5, 10, 5).expect("held").0[0].redacted_by.as_deref(), Some("$r"));
    }
}
