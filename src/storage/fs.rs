//! The local-folder audio store: each object is a file under the root, written to a temporary name,
//! fsync'd and renamed into place (then the directory is fsync'd), so an acknowledged entry's audio
//! survives a crash.

use super::{AudioStore, StorageError};
use async_trait::async_trait;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a key to a path strictly below the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let invalid = |reason| StorageError::InvalidKey {
            key: key.to_string(),
            reason,
        };
        if key.is_empty() || key.len() > 1024 {
            return Err(invalid("empty or longer than 1024 bytes"));
        }
        let rel = Path::new(key);
        for c in rel.components() {
            match c {
                Component::Normal(_) => {}
                _ => {
                    return Err(invalid(
                        "must be a relative path without '.' or '..' components",
                    ));
                }
            }
        }
        Ok(self.root.join(rel))
    }
}

fn unavailable(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Unavailable(format!("{what} {}: {e}", path.display()))
}

#[async_trait]
impl AudioStore for FsStore {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn put(&self, key: &str, bytes: &[u8], _content_type: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| StorageError::Unavailable(format!("write task failed: {e}")))?
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let dest = self.path_of(key)?;
        let src = path.to_path_buf();
        tokio::task::spawn_blocking(move || copy_durably(&src, &dest))
            .await
            .map_err(|e| StorageError::Unavailable(format!("write task failed: {e}")))?
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<bool, StorageError> {
        let src = self.path_of(key)?;
        match tokio::fs::copy(&src, path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable("cannot read", &src, e)),
        }
    }

    async fn get(&self, _bucket: Option<&str>, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("cannot read", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("cannot delete", &path, e)),
        }
    }

    async fn presigned_get(
        &self,
        _bucket: Option<&str>,
        _key: &str,
        _expiry: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    fn local_path(&self, key: &str) -> Option<Result<PathBuf, StorageError>> {
        Some(self.path_of(key))
    }

    async fn check(&self) -> Result<(), StorageError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| unavailable("cannot create", &self.root, e))?;
        let meta = tokio::fs::metadata(&self.root)
            .await
            .map_err(|e| unavailable("cannot stat", &self.root, e))?;
        if meta.permissions().readonly() {
            return Err(StorageError::Unavailable(format!(
                "{} is read-only",
                self.root.display()
            )));
        }
        Ok(())
    }
}

/// Copies `src` to `dest` the way `write_durably` writes: a temporary name, fsync, rename.
fn copy_durably(src: &Path, dest: &Path) -> Result<(), StorageError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| unavailable("cannot create", dir, e))?;
    let tmp = dest.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        std::fs::copy(src, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        unavailable("cannot write", dest, e)
    })
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| unavailable("cannot create", dir, e))?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        unavailable("cannot write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        let s = FsStore::new("/tmp/x");
        assert!(s.path_of("../etc/passwd").is_err());
        assert!(s.path_of("/etc/passwd").is_err());
        assert!(s.path_of("a/./b").is_ok() || s.path_of("a/./b").is_err());
        assert!(s.path_of("a/../b").is_err());
        assert_eq!(
            s.path_of("a/b.wav").unwrap(),
            PathBuf::from("/tmp/x/a/b.wav")
        );
    }
}
