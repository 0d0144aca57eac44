//! The S3 audio store (rust-s3, path-style, custom endpoint): Garage and MinIO in development and tests,
//! any S3-compatible service in production.

use super::{AudioStore, StorageError};
use async_trait::async_trait;
use s3::{Bucket, Region, creds::Credentials, error::S3Error};
use std::time::Duration;

/// Connection settings of one bucket.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint_url: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub request_timeout: Duration,
    /// Host that presigned URLs must carry when the service reaches S3 through an internal one.
    pub public_endpoint_url: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint_url", &self.endpoint_url)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("public_endpoint_url", &self.public_endpoint_url)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
pub struct S3Store {
    settings: S3Settings,
    bucket: Box<Bucket>,
    /// Signs URLs for the public endpoint (the signature covers the host).
    public: S3Settings,
}

impl S3Store {
    pub fn new(settings: S3Settings) -> Result<Self, StorageError> {
        let bucket = open_bucket(&settings, &settings.bucket)?;
        let mut public = settings.clone();
        if let Some(p) = &settings.public_endpoint_url {
            public.endpoint_url = p.clone();
        }
        Ok(S3Store {
            settings,
            bucket,
            public,
        })
    }

    pub fn bucket_name(&self) -> &str {
        &self.settings.bucket
    }
}

fn open_bucket(s: &S3Settings, name: &str) -> Result<Box<Bucket>, StorageError> {
    let region = Region::Custom {
        region: s.region.clone(),
        endpoint: s.endpoint_url.trim_end_matches('/').to_string(),
    };
    let creds = Credentials::new(Some(&s.access_key), Some(&s.secret_key), None, None, None)
        .map_err(|e| StorageError::Unavailable(format!("bad S3 credentials: {e}")))?;
    let mut bucket = Bucket::new(name, region, creds)
        .map_err(|e| StorageError::Unavailable(format!("cannot open bucket {name}: {e}")))?
        .with_path_style();
    bucket.set_request_timeout(Some(s.request_timeout));
    Ok(bucket)
}

fn s3_error(op: &str, key: &str, e: S3Error) -> StorageError {
    StorageError::Unavailable(format!("S3 {op} {key}: {e}"))
}

#[async_trait]
impl AudioStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &str, bytes: &[u8], content_type: &str) -> Result<(), StorageError> {
        self.bucket
            .put_object_with_content_type(key, bytes, content_type)
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PUT", key, e))
    }

    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let mut file = tokio::fs::File::open(path).await.map_err(|e| {
            StorageError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?;
        self.bucket
            .put_object_stream_with_content_type(&mut file, key, content_type)
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PUT", key, e))
    }

    async fn get_to_file(&self, key: &str, path: &std::path::Path) -> Result<bool, StorageError> {
        let mut file = tokio::fs::File::create(path).await.map_err(|e| {
            StorageError::Unavailable(format!("cannot write {}: {e}", path.display()))
        })?;
        match self.bucket.get_object_to_writer(key, &mut file).await {
            Ok(_) => Ok(true),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(false),
            Err(e) => Err(s3_error("GET", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.bucket.delete_object(key).await {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(s3_error("DELETE", key, e)),
        }
    }

    async fn get(&self, bucket: Option<&str>, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let other;
        let b = match bucket {
            Some(name) if name != self.settings.bucket => {
                other = open_bucket(&self.settings, name)?;
                &other
            }
            _ => &self.bucket,
        };
        match b.get_object(key).await {
            Ok(r) => Ok(Some(r.to_vec())),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(s3_error("GET", key, e)),
        }
    }

    async fn presigned_get(
        &self,
        bucket: Option<&str>,
        key: &str,
        expiry: Duration,
    ) -> Result<Option<String>, StorageError> {
        let b = open_bucket(&self.public, bucket.unwrap_or(&self.settings.bucket))?;
        let secs = u32::try_from(expiry.as_secs())
            .unwrap_or(u32::MAX)
            .clamp(1, 604_800);
        b.presign_get(key, secs, None)
            .await
            .map(Some)
            .map_err(|e| s3_error("PRESIGN", key, e))
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.bucket
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .map(|_| ())
            .map_err(|e| s3_error("LIST", &self.settings.bucket, e))
    }
}
