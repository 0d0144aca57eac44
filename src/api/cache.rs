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
