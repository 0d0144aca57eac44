//! Fingerprints of the child rows this process last committed for each call, so a newer snapshot sends
//! only the rows that changed. PostgreSQL spends the same time on an upsert that changes nothing as on
//! one that writes, and a final report repeats most of what its partials said.
//!
//! Trusted only while the stored session's `report_seq` equals the one cached: every write to a call
//! goes through the session upsert, which raises `report_seq`, so another replica's write (or a failed
//! transaction) makes the entry stale and the full snapshot is sent again. Bounded; oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnFact {
    pub hash: u64,
    pub user: bool,
    pub assistant: bool,
    pub e2e_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowFact {
    pub hash: u64,
    pub near_miss: bool,
}

/// What the database holds for one call's children, as of `seq`.
#[derive(Debug, Clone, Default)]
pub struct CallRows {
    pub seq: i64,
    /// True when every stored child row is here (the call was first written by this process), so the
    /// session aggregates can be computed from it without a query.
    pub complete: bool,
    pub turns: HashMap<i64, TurnFact>,
    pub events: HashMap<i64, RowFact>,
    pub segments: HashMap<String, RowFact>,
}

/// Session aggregates derived from the children.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Aggregates {
    pub user_turns: i32,
    pub agent_turns: i32,
    pub avg_e2e_latency_ms: Option<f64>,
    pub has_near_miss: bool,
}

impl CallRows {
    /// A call with no stored rows yet.
    pub fn new_call() -> Self {
        CallRows {
            complete: true,
            ..Default::default()
        }
    }

    pub fn aggregates(&self) -> Aggregates {
        let (mut sum, mut n) = (0.0, 0u32);
        let mut a = Aggregates::default();
        // Sorted so the floating-point sum is the same whatever the map's order.
        let mut keys: Vec<&i64> = self.turns.keys().collect();
        keys.sort_unstable();
        for k in keys {
            let t = &self.turns[k];
            a.user_turns += i32::from(t.user);
            a.agent_turns += i32::from(t.assistant);
            if let Some(e) = t.e2e_latency_ms {
                sum += e;
                n += 1;
            }
        }
        a.avg_e2e_latency_ms = (n > 0).then(|| sum / f64::from(n));
        a.has_near_miss = self
            .events
            .values()
            .chain(self.segments.values())
            .any(|r| r.near_miss);
        a
    }
}

/// Stable-within-the-process fingerprint of a row's content.
pub fn fingerprint<T: std::fmt::Debug + ?Sized>(content: &T) -> u64 {
    struct W(DefaultHasher);
    impl std::fmt::Write for W {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut w = W(DefaultHasher::new());
    let _ = std::fmt::write(&mut w, format_args!("{content:?}"));
    w.0.finish()
}

/// Entries by call id, and call ids in insertion order (for eviction).
type Entries = (HashMap<String, Arc<CallRows>>, VecDeque<String>);

#[derive(Debug)]
pub struct RowCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

impl RowCache {
    pub fn new(capacity: usize) -> Self {
        RowCache {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The cached rows of `call_id` if they describe the stored `seq`.
    pub fn get(&self, call_id: &str, stored_seq: i64) -> Option<Arc<CallRows>> {
        let guard = self.inner.lock().ok()?;
        guard
            .0
            .get(call_id)
            .filter(|c| c.seq == stored_seq)
            .cloned()
    }

    pub fn put(&self, call_id: &str, rows: CallRows) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(call_id.to_string(), Arc::new(rows)).is_none() {
            order.push_back(call_id.to_string());
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn remove(&self, call_id: &str) {
        if let Ok(mut guard) = self.inner.lock() {
            guard.0.remove(call_id);
            // The key stays in `order` until it reaches the front; removing it there is harmless.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_for_the_stored_seq_are_trusted_and_capacity_is_kept() {
        let c = RowCache::new(2);
        c.put(
            "a",
            CallRows {
                seq: 1,
                ..CallRows::new_call()
            },
        );
        assert!(c.get("a", 1).is_some());
        assert!(c.get("a", 2).is_none(), "someone else wrote seq 2");
        c.put("b", CallRows::new_call());
        c.put("c", CallRows::new_call());
        assert!(c.get("a", 1).is_none(), "oldest evicted");
        c.remove("b");
        assert!(c.get("b", 0).is_none());
    }

    #[test]
    fn aggregates_count_roles_average_latency_and_see_near_misses() {
        let mut r = CallRows::new_call();
        r.turns.insert(
            0,
            TurnFact {
                hash: 1,
                user: true,
                assistant: false,
                e2e_latency_ms: None,
            },
        );
        r.turns.insert(
            1,
            TurnFact {
                hash: 2,
                user: false,
                assistant: true,
                e2e_latency_ms: Some(900.0),
            },
        );
        r.turns.insert(
            3,
            TurnFact {
                hash: 3,
                user: false,
                assistant: true,
                e2e_latency_ms: Some(1100.0),
            },
        );
        r.segments.insert(
            "n".into(),
            RowFact {
                hash: 4,
                near_miss: true,
            },
        );
        let a = r.aggregates();
        assert_eq!(
            (
                a.user_turns,
                a.agent_turns,
                a.avg_e2e_latency_ms,
                a.has_near_miss
            ),
            (1, 2, Some(1000.0), true)
        );
        assert_ne!(fingerprint(&("x", 1.0)), fingerprint(&("x", 1.5)));
    }
}
