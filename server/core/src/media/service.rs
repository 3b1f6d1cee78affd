//! Uploads and downloads: quota, metadata, where each file lives.

use std::path::PathBuf;

use rand::Rng;
use ruma::UserId;

use super::files::Upload;
use super::thumbnail::{DecodeBounds, Thumbnail, ThumbnailSpec, thumbnail_blocking};
use crate::clock::SharedClock;
use crate::config::MediaConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Db;
use crate::storage::media::MediaRow;

/// Characters of a new media ID.
const MEDIA_ID_LEN: usize = 24;

/// A stored upload and where its bytes are.
#[derive(Debug, Clone)]
pub struct StoredMedia {
    /// Its metadata.
    pub row: MediaRow,
    /// Its file.
    pub path: PathBuf,
}

/// Media of this server.
#[derive(Debug)]
pub struct MediaService {
    db: Db,
    clock: SharedClock,
    dir: PathBuf,
    server_name: String,
    config: MediaConfig,
    /// One thumbnail is made at a time: it bounds the memory decoding takes, and a
    /// second request for the same one finds it in the cache once it waited.
    thumbnailing: tokio::sync::Semaphore,
}

impl MediaService {
    /// Media under `dir` (created when missing), bounded by `config`.
    pub fn new(db: Db, clock: SharedClock, dir: PathBuf, server_name: &str, config: &MediaConfig) -> Result<Self> {
        let thumbs = dir.join("thumbnails");
        std::fs::create_dir_all(&thumbs)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", thumbs.display())))?;
        Ok(Self {
            db,
            clock,
            dir,
            server_name: server_name.to_owned(),
            config: config.clone(),
            thumbnailing: tokio::sync::Semaphore::new(1),
        })
    }

    /// The largest upload accepted.
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.max_upload_bytes
    }

    /// Start an upload by `user`: refused at once if the user's quota is spent; the
    /// upload stops at `max_upload_bytes` or what is left of the quota.
    pub async fn begin(&self, user: &UserId) -> Result<Upload> {
        let id = user.to_string();
        let used = self.db.read(move |s| s.media_usage(&id)).await?;
        let left = self.config.quota_bytes_per_user.saturating_sub(used);
        let (limit, text) = if left < self.config.max_upload_bytes {
            (
                left,
                format!(
                    "this upload would pass your quota of {} bytes (media.quota_bytes_per_user)",
                    self.config.quota_bytes_per_user
                ),
            )
        } else {
            (
                self.config.max_upload_bytes,
                format!("uploads are at most {} bytes (max_upload_bytes)", self.config.max_upload_bytes),
            )
        };
        if left == 0 {
            return Err(Error::new(ErrorKind::TooLarge, text));
        }
        Upload::start(&self.dir, limit, text).await
    }

    /// Store a finished upload; its `mxc://` URI.
    pub async fn finish(
        &self,
        user: &UserId,
        upload: Upload,
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<String> {
        let size = upload.size();
        let sha256 = upload.finish().await?;
        let media_id: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(MEDIA_ID_LEN)
            .map(char::from)
            .collect();
        let row = MediaRow {
            media_id: media_id.clone(),
            user_id: user.to_string(),
            sha256,
            size,
            content_type,
            filename,
            created_ts: self.clock.now_ms(),
        };
        let quota = self.config.quota_bytes_per_user;
        self.db
            .write(move |s| {
                // Uploads running at once each saw room left; the sum is checked here, atomically.
                if s.media_usage(&row.user_id)? + row.size > quota {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!("this upload would pass your quota of {quota} bytes (media.quota_bytes_per_user)"),
                    ));
                }
                s.media_put(&row)
            })
            .await?;
        Ok(format!("mxc://{}/{media_id}", self.server_name))
    }

    /// The upload `media_id` of `server_name`; `M_NOT_FOUND` for another server's
    /// media (not fetched over federation yet) or an unknown ID.
    pub async fn get(&self, server_name: &str, media_id: &str) -> Result<StoredMedia> {
        let not_found = || Error::not_found(format!("no media mxc://{server_name}/{media_id}"));
        if server_name != self.server_name || media_id.is_empty() || media_id.len() > 255 {
            return Err(not_found());
        }
        let id = media_id.to_owned();
        let row = self.db.read(move |s| s.media_get(&id)).await?.ok_or_else(not_found)?;
        let path = self.dir.join(&row.sha256);
        Ok(StoredMedia { row, path })
    }

    /// The thumbnail of `media_id` of `server_name` per `spec`: from the cache, or
    /// made now (bounded by `media.max_thumbnail_source_bytes` and
    /// `..._pixels`, 413 beyond) and cached. Media that is no image we decode: 400.
    pub async fn thumbnail(&self, server_name: &str, media_id: &str, spec: ThumbnailSpec) -> Result<Thumbnail> {
        let media = self.get(server_name, media_id).await?;
        let _permit = self.thumbnailing.acquire().await.map_err(Error::internal)?;
        let dir = self.dir.join("thumbnails");
        let bounds = DecodeBounds {
            max_bytes: self.config.max_thumbnail_source_bytes,
            max_pixels: self.config.max_thumbnail_source_pixels,
        };
        tokio::task::spawn_blocking(move || {
            thumbnail_blocking(&dir, &media.path, &media.row.sha256, media.row.size, &spec, bounds)
        })
        .await
        .map_err(Error::internal)?
    }
}
