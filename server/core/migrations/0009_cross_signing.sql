-- Cross-signing: each user's master, self-signing and user-signing keys (JSON as
-- uploaded, signed by the client), and the signatures uploaded later onto device
-- keys and master keys, kept apart so the signed objects are never rewritten.

CREATE TABLE e2ee_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL CHECK (key_type IN ('master', 'self_signing', 'user_signing')),
    key_id   TEXT NOT NULL,   -- 'ed25519:<public key>'
    keys     TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
) STRICT;

-- target_key: a device ID of target_user, or the public key of their master key.
CREATE TABLE e2ee_signatures (
    target_user   TEXT NOT NULL,
    target_key    TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
) STRICT;
