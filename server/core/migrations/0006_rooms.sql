-- Rooms on one site. Events are append-only: one row per event, with the stream
-- position it was written at (`pos`, which also orders the room: positions of one
-- room are taken under that room's lock) and its depth (1, 2, 3... in the room).
-- Redactions never rewrite an event row: `room_redactions` says which event redacted
-- which, and readers apply it. `room_state` is the current state, a cache of the
-- newest state event per (type, state_key) that every write keeps in step.

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL,
    created_ts   INTEGER NOT NULL,
    -- 1 when listed in the public room directory
    published    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE room_events (
    pos        INTEGER PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms(room_id),
    depth      INTEGER NOT NULL,
    event_id   TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    state_key  TEXT,
    sender     TEXT NOT NULL,
    -- m.relates_to of the content, indexed for relations, threads and bundling
    rel_type   TEXT,
    relates_to TEXT,
    -- the sending device and its transaction ID (never part of the event itself)
    txn_device TEXT,
    txn_id     TEXT,
    -- the whole event as built (canonical JSON, without event_id)
    json       TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX room_events_depth ON room_events (room_id, depth);
CREATE INDEX room_events_room_pos ON room_events (room_id, pos);
CREATE INDEX room_events_relates ON room_events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
CREATE INDEX room_events_state ON room_events (room_id, event_type, state_key, pos) WHERE state_key IS NOT NULL;

CREATE TABLE room_redactions (
    event_id     TEXT PRIMARY KEY,
    redaction_id TEXT NOT NULL,
    pos          INTEGER NOT NULL
) STRICT;

CREATE TABLE room_state (
    room_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE room_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms(room_id),
    creator TEXT NOT NULL
) STRICT;

-- Receipts: the newest per (room, user, type, thread); thread_id '' is unthreaded.
CREATE TABLE room_receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    pos          INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE room_forgotten (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
) STRICT, WITHOUT ROWID;
