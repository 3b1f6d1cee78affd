//! Uploaded media: who uploaded what, its content hash, type and name. The bytes
//! live in files named by hash (see `media::files`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// One upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The media ID (the part after the server name in `mxc://`).
    pub media_id: String,
    /// Who uploaded it.
    pub user_id: String,
    /// Hex SHA-256 of the content: the file's name.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The Content-Type given at upload.
    pub content_type: Option<String>,
    /// The file name given at upload.
    pub filename: Option<String>,
    /// When, Unix ms.
    pub created_ts: u64,
}

/// Media metadata.
pub trait MediaStore {
    /// Record an upload.
    fn media_put(&self, row: &MediaRow) -> Result<()>;

    /// One upload.
    fn media_get(&self, media_id: &str) -> Result<Option<MediaRow>>;

    /// Bytes uploaded by `user` in total.
    fn media_usage(&self, user: &str) -> Result<u64>;
}

impl MediaStore for Connection {
    fn media_put(&self, row: &MediaRow) -> Result<()> {
        self.execute(
            "INSERT INTO media (media_id, user_id, sha256, size, content_type, filename, created_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.media_id,
                row.user_id,
                row.sha256,
                row.size as i64,
                row.content_type,
                row.filename,
                row.created_ts as i64
            ],
        )?;
        Ok(())
    }

    fn media_get(&self, media_id: &str) -> Result<Option<MediaRow>> {
        Ok(self
            .query_row(
                "SELECT media_id, user_id, sha256, size, content_type, filename, created_ts FROM media WHERE media_id = ?1",
                [media_id],
                |r| {
                    Ok(MediaRow {
                        media_id: r.get(0)?,
                        user_id: r.get(1)?,
                        sha256: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        content_type: r.get(4)?,
                        filename: r.get(5)?,
                        created_ts: r.get::<_, i64>(6)? as u64,
                    })
                },
            )
            .optional()?)
    }

    fn media_usage(&self, user: &str) -> Result<u64> {
        let n: i64 =
            self.query_row("SELECT COALESCE(SUM(size), 0) FROM media WHERE user_id = ?1", [user], |r| r.get(0))?;
        Ok(n as u64)
    }
}
