-- A transaction ID is scoped to a device and an endpoint (the spec's "single HTTP
-- endpoint": the path without the txnId), so the same ID sent to another room, as
-- another event type, or to `redact` is another transaction. The scope is
-- `send <room> <type>` or `redact <room> <target>`; old rows get theirs from the
-- event they produced.

CREATE TABLE room_txns_scoped (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO room_txns_scoped (user_id, device_id, scope, txn_id, event_id)
SELECT t.user_id, t.device_id,
       CASE WHEN e.event_type = 'm.room.redaction'
            THEN 'redact ' || e.room_id || ' ' || COALESCE(json_extract(e.json, '$.redacts'), '')
            ELSE 'send ' || e.room_id || ' ' || e.event_type END,
       t.txn_id, t.event_id
FROM room_txns t JOIN room_events e ON e.event_id = t.event_id;

DROP TABLE room_txns;
ALTER TABLE room_txns_scoped RENAME TO room_txns;
