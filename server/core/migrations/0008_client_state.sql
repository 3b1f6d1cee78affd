-- What clients keep on the server between starts (filters, account data, push
-- rules as the account data `m.push_rules`), the server side of end-to-end
-- encryption (device keys, one-time and fallback keys, to-device messages, device
-- list changes) and uploaded media.

-- Sync filters, numbered per user; an identical definition reuses its ID.
CREATE TABLE filters (
    user_id    TEXT NOT NULL,
    filter_id  INTEGER NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
) STRICT;

-- Account data; room_id '' is global. stream_pos: where it last changed.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
) STRICT;
CREATE INDEX account_data_pos ON account_data(user_id, stream_pos);

-- The signed device keys a device uploaded (JSON as uploaded).
CREATE TABLE e2ee_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    keys      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT;

-- Unclaimed one-time keys; a claim deletes the row it hands out.
CREATE TABLE e2ee_one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key       TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
) STRICT;

-- One fallback key per device and algorithm, handed out when no one-time key is left.
CREATE TABLE e2ee_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key       TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
) STRICT;

-- The last change of each user's device list (a device's keys uploaded, a device
-- deleted): one row per user, so it stays as small as the user list.
CREATE TABLE e2ee_device_list_changes (
    user_id    TEXT PRIMARY KEY NOT NULL,
    stream_pos INTEGER NOT NULL
) STRICT;
CREATE INDEX e2ee_device_list_changes_pos ON e2ee_device_list_changes(stream_pos);

-- To-device messages waiting for their device; deleted once the device syncs with a
-- token at or past stream_pos (it acknowledged them).
CREATE TABLE e2ee_to_device (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_pos)
) STRICT;

-- sendToDevice transaction IDs already applied, per sending device (the newest
-- 1000 of each device are kept).
CREATE TABLE e2ee_to_device_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) STRICT;

-- Uploaded media: the file is media/<sha256> under data_dir, shared by equal uploads.
CREATE TABLE media (
    media_id     TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT,
    filename     TEXT,
    created_ts   INTEGER NOT NULL
) STRICT;
CREATE INDEX media_user ON media(user_id);

-- A user's avatar, an mxc:// URI (the display name is in users already).
ALTER TABLE users ADD COLUMN avatar_url TEXT;
