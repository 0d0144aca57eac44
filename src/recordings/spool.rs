//! A recording on its way in: written chunk by chunk to a local file while its sha256 and size are
//! counted, refused past the size limit, removed when dropped. An upload or a fetched file never sits
//! in memory whole.

use super::Error;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// A file being written.
pub struct Spool {
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    limit: u64,
    guard: Spooled,
}

/// A complete spooled file; deleted from disk when dropped.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spool {
    pub async fn create(dir: &Path, limit: u64) -> Result<Self, Error> {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            Error::internal(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            Error::internal(anyhow::anyhow!("cannot create {}: {e}", path.display()))
        })?;
        Ok(Spool {
            file,
            hasher: Sha256::new(),
            size: 0,
            limit,
            guard: Spooled {
                path,
                sha256: String::new(),
                size: 0,
            },
        })
    }

    /// Appends a chunk; `TooLarge` once the limit is passed (the file is then removed on drop).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(Error::TooLarge(format!(
                "the recording is larger than {} bytes (INSIGHTS_RECORDING_MAX_BYTES)",
                self.limit
            )));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot spool the recording: {e}")))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn finish(self) -> Result<Spooled, Error> {
        let Spool {
            mut file,
            hasher,
            size,
            mut guard,
            ..
        } = self;
        file.flush()
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot spool the recording: {e}")))?;
        guard.sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        guard.size = size;
        Ok(guard)
    }
}
