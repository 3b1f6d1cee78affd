//! Cross-signing keys and the signatures uploaded onto device keys and master keys.
//! Keys are kept as the JSON the client signed; a signature uploaded later is a row
//! of its own, merged into the object when it is queried.

use rusqlite::{Connection, params};

use crate::error::Result;

/// One uploaded signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRow {
    /// A device ID of the target user, or their master key's public key.
    pub target_key: String,
    /// Who signed.
    pub signer_user: String,
    /// With which key (`ed25519:...`).
    pub signer_key_id: String,
    /// The signature, unpadded base64.
    pub signature: String,
}

/// Cross-signing keys and signatures.
pub trait CrossSigningStore {
    /// Set `user`'s key of `key_type` (`master`, `self_signing`, `user_signing`).
    fn cross_signing_put(&self, user: &str, key_type: &str, key_id: &str, keys: &str) -> Result<()>;

    /// `user`'s cross-signing keys: `(key_type, key_id, JSON)`.
    fn cross_signing_get(&self, user: &str) -> Result<Vec<(String, String, String)>>;

    /// Forget `user`'s key of `key_type`.
    fn cross_signing_delete(&self, user: &str, key_type: &str) -> Result<()>;

    /// Store a signature onto `target_user`'s `target_key` (replacing one by the same signer key).
    fn signature_put(&self, target_user: &str, row: &SignatureRow) -> Result<()>;

    /// How many signatures `target_user`'s `target_key` carries.
    fn signature_count(&self, target_user: &str, target_key: &str) -> Result<u64>;

    /// Every signature uploaded onto any key of `target_user`.
    fn signatures_of(&self, target_user: &str) -> Result<Vec<SignatureRow>>;

    /// Forget the signatures onto `target_key` of `target_user` (a deleted device, a replaced key).
    fn signatures_delete(&self, target_user: &str, target_key: &str) -> Result<()>;
}

impl CrossSigningStore for Connection {
    fn cross_signing_put(&self, user: &str, key_type: &str, key_id: &str, keys: &str) -> Result<()> {
        self.execute(
            "INSERT INTO e2ee_cross_signing_keys (user_id, key_type, key_id, keys) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(user_id, key_type) DO UPDATE SET key_id = excluded.key_id, keys = excluded.keys",
            params![user, key_type, key_id, keys],
        )?;
        Ok(())
    }

    fn cross_signing_get(&self, user: &str) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.prepare_cached(
            "SELECT key_type, key_id, keys FROM e2ee_cross_signing_keys WHERE user_id = ?1 ORDER BY key_type",
        )?;
        let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn cross_signing_delete(&self, user: &str, key_type: &str) -> Result<()> {
        self.execute(
            "DELETE FROM e2ee_cross_signing_keys WHERE user_id = ?1 AND key_type = ?2",
            params![user, key_type],
        )?;
        Ok(())
    }

    fn signature_put(&self, target_user: &str, row: &SignatureRow) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO e2ee_signatures (target_user, target_key, signer_user, signer_key_id, signature)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(target_user, target_key, signer_user, signer_key_id)
             DO UPDATE SET signature = excluded.signature",
        )?
        .execute(params![target_user, row.target_key, row.signer_user, row.signer_key_id, row.signature])?;
        Ok(())
    }

    fn signature_count(&self, target_user: &str, target_key: &str) -> Result<u64> {
        let n: i64 = self.query_row(
            "SELECT COUNT(*) FROM e2ee_signatures WHERE target_user = ?1 AND target_key = ?2",
            params![target_user, target_key],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn signatures_of(&self, target_user: &str) -> Result<Vec<SignatureRow>> {
        let mut stmt = self.prepare_cached(
            "SELECT target_key, signer_user, signer_key_id, signature FROM e2ee_signatures
             WHERE target_user = ?1 ORDER BY target_key, signer_user, signer_key_id",
        )?;
        let rows = stmt.query_map([target_user], |r| {
            Ok(SignatureRow {
                target_key: r.get(0)?,
                signer_user: r.get(1)?,
                signer_key_id: r.get(2)?,
                signature: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn signatures_delete(&self, target_user: &str, target_key: &str) -> Result<()> {
        self.execute(
            "DELETE FROM e2ee_signatures WHERE target_user = ?1 AND target_key = ?2",
            params![target_user, target_key],
        )?;
        Ok(())
    }
}
