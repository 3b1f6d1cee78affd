-- Accounts, devices with hashed access tokens, presence and presence lists.

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    admin         INTEGER NOT NULL DEFAULT 0,
    displayname   TEXT,
    created_ts    INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    token_hash   TEXT NOT NULL UNIQUE,
    kind         TEXT,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT;

-- The last published presence of each user we know about, and the stream
-- position at which it last changed (sync tokens compare against it).
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY NOT NULL,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    explicit_state TEXT,
    last_active_ts INTEGER NOT NULL,
    last_seen_ts   INTEGER NOT NULL,
    stream_pos     INTEGER NOT NULL
) STRICT;

-- watcher asks to see target's presence; target answers.
CREATE TABLE presence_subscriptions (
    watcher    TEXT NOT NULL,
    target     TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'denied')),
    ts         INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (watcher, target)
) STRICT;
CREATE INDEX presence_subscriptions_target ON presence_subscriptions(target);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT;
