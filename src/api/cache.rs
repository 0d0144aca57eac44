//! Serialized responses of heavy per-session resources (the timeline), kept per session and valid
//! for exactly one stored version of it: every applied report raises `report_seq` and sets
//! `updated_at` in the same transaction as any other change to the session, so a request that
//! reads the session row (it must, for auth and 404s) knows whether the cached body is current —
//! also when another replica wrote the session. A gzip copy is kept for clients that accept it.

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use uuid::Uuid;

/// The stored version of a session a body was built from.
pub type Version = (i64, DateTime<Utc>);

#[derive(Clone)]
pub struct CachedBody {
    pub json: Bytes,
    pub gzip: Bytes,
}

type Entries = (HashMap<Uuid, (Version, CachedBody)>, VecDeque<Uuid>, usize);

/// Bounded by entry count and total bytes; oldest evicted first.
pub struct ResponseCache {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Entries>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResponseCache(max {} entries, {} bytes)",
            self.max_entries, self.max_bytes
        )
    }
}

impl ResponseCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        ResponseCache {
            max_entries,
            max_bytes,
            inner: Mutex::new((HashMap::new(), VecDeque::new(), 0)),
        }
    }

    pub fn get(&self, id: Uuid, version: Version) -> Option<CachedBody> {
        let guard = self.inner.lock().ok()?;
        guard
            .0
            .get(&id)
            .filter(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    }

    /// Forgets a session's body (erased, or changed on another replica).
    pub fn remove(&self, id: Uuid) {
        if let Ok(mut guard) = self.inner.lock() {
            let (map, _, bytes) = &mut *guard;
            if let Some((_, b)) = map.remove(&id) {
                *bytes -= b.json.len() + b.gzip.len();
            }
            // The id stays in the eviction order until it reaches the front; harmless.
        }
    }

    /// Builds the gzip copy and stores both; returns them.
    pub fn put(&self, id: Uuid, version: Version, json: Vec<u8>) -> CachedBody {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 6),
            flate2::Compression::fast(),
        );
        let gzip = match gz.write_all(&json).and_then(|_| gz.finish()) {
            Ok(g) => Bytes::from(g),
            Err(_) => Bytes::new(),
        };
        let body = CachedBody {
            json: Bytes::from(json),
            gzip,
        };
        let size = body.json.len() + body.gzip.len();
        if self.max_entries == 0 || size > self.max_bytes {
            return body;
        }
        if let Ok(mut guard) = self.inner.lock() {
            let (map, order, bytes) = &mut *guard;
            if let Some((_, old)) = map.insert(id, (version, body.clone())) {
                *bytes -= old.json.len() + old.gzip.len();
            } else {
                order.push_back(id);
            }
            *bytes += size;
            while map.len() > self.max_entries || *bytes > self.max_bytes {
                let Some(old) = order.pop_front() else { break };
                if let Some((_, b)) = map.remove(&old) {
                    *bytes -= b.json.len() + b.gzip.len();
                }
            }
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_served_only_for_its_version_and_the_cache_stays_bounded() {
        let c = ResponseCache::new(2, 1 << 20);
        let (a, b, d) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let v1 = (1, Utc::now());
        c.put(a, v1, b"[1]".to_vec());
        assert_eq!(c.get(a, v1).unwrap().json.as_ref(), b"[1]");
        assert!(
            c.get(a, (2, v1.1)).is_none(),
            "a newer report makes it stale"
        );
        c.put(b, v1, b"[2]".to_vec());
        c.put(d, v1, b"[3]".to_vec());
        assert!(c.get(a, v1).is_none(), "oldest evicted");
        let gz = c.get(d, v1).unwrap().gzip;
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }
}

/// What a request needs to know about a session before touching its data.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionVersion {
    pub tenant_id: String,
    pub report_seq: i64,
    pub updated_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

/// Versions of sessions, trusted only while this process is subscribed to the ingest's update
/// announcements (`<stream>:updates`): then a session's row is read once, not on every request.
/// Unsubscribed (Redis down, not started) it answers nothing and every request reads the database.
/// A read that raced with an announcement is not stored (the epoch moved), so an entry is never
/// older than the last announcement for its session.
#[derive(Debug, Default)]
pub struct SessionVersions {
    live: std::sync::atomic::AtomicBool,
    epoch: std::sync::atomic::AtomicU64,
    map: Mutex<(HashMap<Uuid, SessionVersion>, VecDeque<Uuid>)>,
}

/// Most versions kept (≈100 bytes each).
const MAX_VERSIONS: usize = 100_000;

impl SessionVersions {
    /// Whether the subscription is up (versions are trusted).
    pub fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn get(&self, id: Uuid) -> Option<SessionVersion> {
        if !self.live.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.map.lock().ok()?.0.get(&id).cloned()
    }

    /// Stores what a request read from the database, unless an announcement came in since `epoch`.
    pub fn put(&self, id: Uuid, v: SessionVersion, epoch: u64) {
        let Ok(mut guard) = self.map.lock() else {
            return;
        };
        if !self.live.load(std::sync::atomic::Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        let (map, order) = &mut *guard;
        if map.insert(id, v).is_none() {
            order.push_back(id);
        }
        while map.len() > MAX_VERSIONS {
            let Some(old) = order.pop_front() else { break };
            map.remove(&old);
        }
    }

    pub fn invalidate(&self, ids: impl IntoIterator<Item = Uuid>) {
        if let Ok(mut guard) = self.map.lock() {
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            for id in ids {
                guard.0.remove(&id);
            }
        }
    }

    /// Subscribed (`true`): start trusting from empty. Unsubscribed (`false`): trust nothing.
    pub fn set_live(&self, live: bool) {
        if let Ok(mut guard) = self.map.lock() {
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            guard.0.clear();
            guard.1.clear();
            self.live.store(live, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Follows `<stream>:updates` until `shutdown`, keeping `versions` honest; reconnects with backoff.
pub async fn follow_updates(
    redis: crate::broker::Broker,
    channel: String,
    versions: std::sync::Arc<SessionVersions>,
    cache: std::sync::Arc<ResponseCache>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    let mut backoff = std::time::Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = redis.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(mut pubsub) => {
                versions.set_live(true);
                backoff = std::time::Duration::from_millis(200);
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        m = messages.next() => match m {
                            Some(m) => {
                                let text: String = m.get_payload().unwrap_or_default();
                                let ids = crate::ingest::updates::decode(&text);
                                for id in &ids {
                                    cache.remove(*id);
                                }
                                versions.invalidate(ids);
                            }
                            None => break,
                        },
                    }
                }
                versions.set_live(false);
                if !shutdown.is_cancelled() {
                    tracing::warn!(channel = %channel, "lost the update subscription: serving from the database until it is back");
                }
            }
            Err(e) => {
                versions.set_live(false);
                tracing::debug!(error = %e, "cannot subscribe to session updates yet");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
    }
}
