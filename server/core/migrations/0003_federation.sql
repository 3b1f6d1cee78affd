-- Federation: what must leave for each peer, what a peer asked of us, and what
-- arrived, so that nothing queued is lost and nothing received is applied twice.

-- EDUs other than presence pushes (invites, answers, drops, subscriptions), in order.
CREATE TABLE federation_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu_type    TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_ts  INTEGER NOT NULL
) STRICT;
CREATE INDEX federation_outbox_destination ON federation_outbox(destination, id);

-- The one transaction in flight per destination: its txnId and body are reused on
-- every retry, across restarts, until the peer answers 2xx.
CREATE TABLE federation_txns (
    destination   TEXT PRIMARY KEY NOT NULL,
    txn_id        TEXT NOT NULL,
    body          TEXT NOT NULL,
    presence_upto INTEGER NOT NULL,
    outbox_upto   INTEGER NOT NULL,
    edus          INTEGER NOT NULL,
    created_ts    INTEGER NOT NULL
) STRICT;

-- How far along the presence stream each destination has been sent.
CREATE TABLE federation_cursors (
    destination  TEXT PRIMARY KEY NOT NULL,
    presence_pos INTEGER NOT NULL
) STRICT;

-- A peer asked to be pushed the presence of these local users (its users watch them).
CREATE TABLE federation_interest (
    destination TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    PRIMARY KEY (destination, user_id)
) STRICT;

-- Transactions received and applied, by origin and txnId, so a retry is acknowledged
-- without being applied twice.
CREATE TABLE federation_received (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) STRICT;
