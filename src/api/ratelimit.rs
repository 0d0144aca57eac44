//! Per-API-key rate limiting: a token bucket per key (`INSIGHTS_RATE_LIMIT_PER_SECOND`, burst
//! `INSIGHTS_RATE_LIMIT_BURST`), off by default. Over the limit: 429 with `Retry-After`. Keys are
//! held only as SHA-256 digests; requests without a key share one bucket; health checks are exempt.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets of every key seen recently.
#[derive(Default)]
pub struct RateLimiter {
    /// Tokens per second; None: off.
    rate: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimiter({:?}/s, burst {})", self.rate, self.burst)
    }
}

impl RateLimiter {
    pub fn new(rate: Option<f64>, burst: Option<u32>) -> Self {
        let rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        let burst = burst
            .map_or_else(|| rate.unwrap_or(1.0).ceil(), f64::from)
            .max(1.0);
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is free.
    pub fn take(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let id: [u8; 32] = Sha256::digest(key).into();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            // Forget keys idle long enough to have refilled completely.
            let full = Duration::from_secs_f64(self.burst / rate);
            buckets.retain(|_, b| now.duration_since(b.last) < full);
        }
        let b = buckets.entry(id).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

/// The middleware: every request but health checks spends a token of its key's bucket.
pub async fn limit(
    State(AppState(app)): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    // A key's bucket; the UI's requests spend their session cookie's.
    let headers = request.headers();
    let key = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get(header::COOKIE))
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    match app.rate_limiter.take(&key, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_are_per_key() {
        let l = RateLimiter::new(Some(2.0), Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(b"a", t0).is_ok());
        }
        let wait = l.take(b"a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(l.take(b"b", t0).is_ok(), "another key has its own bucket");
        assert!(l.take(b"a", t0 + Duration::from_millis(500)).is_ok());
        assert!(RateLimiter::new(None, None).take(b"a", t0).is_ok());
    }
}
