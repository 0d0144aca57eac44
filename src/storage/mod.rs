//! Audio storage: one `AudioStore` trait with an S3 implementation (rust-s3: Garage, MinIO, AWS,
//! DigitalOcean Spaces) and a local-folder implementation (the embedded default). Objects are written
//! durably before the database commit that references them.

mod fs;
mod s3;

pub use fs::FsStore;
pub use s3::{S3Settings, S3Store};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key cannot name an object here (e.g. `..` in a filesystem key). The entry's fault.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The store did not answer or refused: infrastructure, retry later.
    #[error("audio store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait AudioStore: Send + Sync + std::fmt::Debug {
    /// `s3` or `filesystem`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;
    /// Writes an object durably (fsync'd file, or an S3 PUT that answered 200).
    async fn put(&self, key: &str, bytes: &[u8], content_type: &str) -> Result<(), StorageError>;
    /// Writes the file at `path` as an object, streamed (a long recording is never held in memory).
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Copies an object into the file at `path`, streamed; `Ok(false)` when it does not exist.
    async fn get_to_file(&self, key: &str, path: &std::path::Path) -> Result<bool, StorageError>;
    /// Reads an object; `Ok(None)` when it does not exist. `bucket` names another bucket of the same
    /// S3 endpoint (agent-uploaded audio); the filesystem store ignores it.
    async fn get(&self, bucket: Option<&str>, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Deletes an object (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Cheap reachability check for `/readyz`.
    async fn check(&self) -> Result<(), StorageError>;
    /// A time-limited URL that GETs the object straight from the store, when the store can make one
    /// (S3); `Ok(None)` for stores the service serves itself (the filesystem).
    async fn presigned_get(
        &self,
        bucket: Option<&str>,
        key: &str,
        expiry: std::time::Duration,
    ) -> Result<Option<String>, StorageError>;
    /// Where the object lives on local disk (filesystem store only).
    fn local_path(&self, _key: &str) -> Option<Result<std::path::PathBuf, StorageError>> {
        None
    }
}

/// Builds the canonical object key of a segment's audio: `<tenant>/<call_id>/<segment_id>.<hash>.wav`.
/// The content hash makes a re-delivered report write the same object again (idempotent) while a
/// different rendition of the same segment never overwrites the one a newer report points to.
pub fn segment_key(
    prefix: &str,
    tenant: &str,
    call_id: &str,
    segment_id: &str,
    bytes: &[u8],
) -> String {
    format!(
        "{prefix}{}/{}/{}.{:016x}.wav",
        key_component(tenant),
        key_component(call_id),
        key_component(segment_id),
        content_hash(bytes)
    )
}

/// Key of a reported clip: `<prefix>reports/<tenant>/<report id>.wav`.
pub fn report_key(prefix: &str, tenant: &str, report_id: uuid::Uuid) -> String {
    format!(
        "{prefix}reports/{}/{}.wav",
        key_component(tenant),
        report_id.simple()
    )
}

/// Percent-encodes everything but `[A-Za-z0-9_-]` and non-leading dots, so any id is one safe path
/// component (no `/`, no `..`).
fn key_component(s: &str) -> String {
    crate::text::percent_encode(s, |i, b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0)
    })
}

/// XXH3, 64 bit: a stable content fingerprint (not a security hash), a specified algorithm read
/// many bytes at a time. (Keys written before 2026-12-04 carry FNV-1a, read a byte at a time: a
/// ninth of the service's CPU on audio ingest; a key is stored with its row, never recomputed.)
fn content_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_path_components() {
        let k = segment_key("", "acme", "../../etc", "a/b c", b"x");
        assert!(k.starts_with("acme/%2E.%2F..%2Fetc/a%2Fb%20c."), "{k}");
        assert_eq!(k.matches('/').count(), 2, "{k}");
        assert!(!k.contains("/../"));
    }

    #[test]
    fn the_content_hash_is_xxh3_64() {
        // The published XXH3-64 of the empty input (seed 0): keys stay the same across
        // builds and platforms.
        assert_eq!(content_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(
            segment_key("", "t", "c", "s", b""),
            "t/c/s.2d06800538d394c2.wav"
        );
    }

    #[test]
    fn same_bytes_same_key_other_bytes_other_key() {
        assert_eq!(
            segment_key("p/", "t", "c", "s", b"abc"),
            segment_key("p/", "t", "c", "s", b"abc")
        );
        assert_ne!(
            segment_key("p/", "t", "c", "s", b"abc"),
            segment_key("p/", "t", "c", "s", b"abd")
        );
    }
}

/// Where reported clips are archived.
#[derive(Debug, Clone)]
pub struct Archive {
    pub store: std::sync::Arc<dyn AudioStore>,
    /// Prefix of archive keys.
    pub prefix: String,
    /// Bucket name or folder, recorded with each report.
    pub location: String,
}
