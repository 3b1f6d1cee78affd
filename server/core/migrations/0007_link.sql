-- Lanes (see server/core/src/lanes.rs): one transaction in flight per destination
-- AND lane, so a large feed transaction never holds back presence. Outbox rows
-- record their lane so each lane drains and acknowledges only its own.

ALTER TABLE federation_outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
DROP INDEX federation_outbox_destination;
CREATE INDEX federation_outbox_destination ON federation_outbox(destination, lane, id);

CREATE TABLE federation_txns_by_lane (
    destination   TEXT NOT NULL,
    lane          INTEGER NOT NULL,
    txn_id        TEXT NOT NULL,
    body          TEXT NOT NULL,
    presence_upto INTEGER NOT NULL,
    outbox_upto   INTEGER NOT NULL,
    edus          INTEGER NOT NULL,
    created_ts    INTEGER NOT NULL,
    PRIMARY KEY (destination, lane)
) STRICT;
INSERT INTO federation_txns_by_lane
    SELECT destination, 0, txn_id, body, presence_upto, outbox_upto, edus, created_ts FROM federation_txns;
DROP TABLE federation_txns;
ALTER TABLE federation_txns_by_lane RENAME TO federation_txns;
