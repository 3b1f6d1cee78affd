//! Writing one upload: into a temporary file beside the store while hashing, then
//! synced and renamed to its hash, so a file under its hash name is always whole.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Result};

/// An upload in progress. Dropping it unfinished removes its temporary file.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    dir: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
    limit_text: String,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl Upload {
    /// Start an upload into `dir`, refused past `limit` bytes with `limit_text` as the reason.
    pub(crate) async fn start(dir: &Path, limit: u64, limit_text: String) -> Result<Self> {
        let temp = dir.join(format!("upload-{:016x}.tmp", rand::random::<u64>()));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", temp.display())))?;
        Ok(Self { file: Some(file), temp, dir: dir.to_owned(), hasher: Sha256::new(), size: 0, limit, limit_text })
    }

    /// Add the next bytes; `M_TOO_LARGE` as soon as the upload passes its limit.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(Error::new(ErrorKind::TooLarge, self.limit_text.clone()));
        }
        self.hasher.update(chunk);
        let file = self.file.as_mut().ok_or_else(|| Error::internal("upload already finished"))?;
        file.write_all(chunk).await.map_err(|e| Error::internal(format!("writing an upload: {e}")))
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sync the file, rename it to its hash and sync the directory: the hex SHA-256.
    pub(crate) async fn finish(mut self) -> Result<String> {
        let mut file = self.file.take().ok_or_else(|| Error::internal("upload already finished"))?;
        let io = |e: std::io::Error| Error::internal(format!("storing an upload: {e}"));
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        let hash = crate::ids::hex(&std::mem::take(&mut self.hasher).finalize());
        let target = self.dir.join(&hash);
        let (temp, dir) = (self.temp.clone(), self.dir.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if target.exists() {
                std::fs::remove_file(&temp)
            } else {
                std::fs::rename(&temp, &target)?;
                std::fs::File::open(&dir)?.sync_all()
            }
        })
        .await
        .map_err(Error::internal)?
        .map_err(io)?;
        Ok(hash)
    }
}
