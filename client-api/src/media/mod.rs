//! Media: `POST /_matrix/media/v3/upload` (and `/_matrix/client/v1/media/upload`),
//! downloads and thumbnails on the authenticated `/_matrix/client/v1/media/...`
//! paths and the legacy `/_matrix/media/v3/...` ones, and `config`.

pub mod config;
pub mod download;
pub mod upload;
