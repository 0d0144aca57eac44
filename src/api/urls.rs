//! URLs a browser or client fetches a stored audio object with: rust-s3's presigned GET with S3, or
//! the service's own `/api/v1/audio-files/…` URL signed with HMAC over key and expiry (filesystem
//! store). The API's audio endpoint, the UI's players and report clips share this one function;
//! delivery, because it knows the routes and the request's host.

use super::audio::URL_TTL;
use crate::app::App;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};

/// Percent-encodes a key for a URL path (keeping `/`).
fn path_encode(key: &str) -> String {
    crate::text::percent_encode(key, |_, b| crate::text::unreserved(b) || b == b'/')
}

/// The base URL clients reach this service at: `INSIGHTS_PUBLIC_BASE_URL`, else the request's Host.
pub fn base_url(app: &App, headers: &HeaderMap) -> String {
    if let Some(b) = &app.config.public_base_url {
        return b.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// A URL for the object `key` (in `bucket`, or the audio store's own), valid for [`URL_TTL`].
pub async fn object_url(
    app: &App,
    base: &str,
    bucket: Option<&str>,
    key: &str,
) -> anyhow::Result<(String, DateTime<Utc>)> {
    let expires_at = Utc::now() + chrono::Duration::from_std(URL_TTL).unwrap_or_default();
    let url = match app.store.presigned_get(bucket, key, URL_TTL).await? {
        Some(url) => url,
        None => {
            let exp = expires_at.timestamp();
            format!(
                "{base}/api/v1/audio-files/{}?expires={exp}&sig={}",
                path_encode(key),
                app.signer.sign(key, exp)
            )
        }
    };
    Ok((url, expires_at))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_percent_encoded_but_keep_their_slashes() {
        assert_eq!(
            super::path_encode("acme/call%2F1/a b.wav"),
            "acme/call%252F1/a%20b.wav"
        );
    }
}
