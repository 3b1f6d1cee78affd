//! Uploaded media: files under `data_dir/media/` named by their SHA-256 (equal
//! uploads share one file), written durably (fsync, rename, fsync of the directory)
//! before the upload is acknowledged, with metadata rows naming who uploaded what.
//! Bounded by `max_upload_bytes` per upload (checked while the body streams in) and
//! `media.quota_bytes_per_user` per user. Thumbnails are made once per content hash,
//! size and method, with bounded decoding (`thumbnail`).

mod files;
mod safety;
mod service;
mod thumbnail;

pub use files::Upload;
pub use safety::{content_disposition, is_inline_safe};
pub use service::{MediaService, StoredMedia};
pub use thumbnail::{MAX_THUMBNAIL_SIDE, Thumbnail, ThumbnailMethod, ThumbnailSpec};
