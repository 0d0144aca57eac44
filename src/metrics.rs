//! Process-wide counters of the ingest path, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the ingest batch latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub entries_read: AtomicU64,
    pub entries_stored: AtomicU64,
    pub entries_stale: AtomicU64,
    pub entries_duplicate: AtomicU64,
    pub entries_dead_lettered: AtomicU64,
    pub entries_failed: AtomicU64,
    /// Live events that could not be appended to the events stream.
    pub live_publish_errors: AtomicU64,
    /// Partitions whose last read was a backlog (16 entries or more): while any is, background
    /// work runs one item at a time.
    pub backlogged: AtomicU64,
    pub entries_deleted: AtomicU64,
    pub batches: AtomicU64,
    pub rows_written: AtomicU64,
    pub audio_stored: AtomicU64,
    pub audio_failed: AtomicU64,
    pub consumers_removed: AtomicU64,
    /// Times the consumer group had vanished (Redis lost its data) and was recreated.
    pub groups_recreated: AtomicU64,
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// One partition's counters (the process totals are in `IngestMetrics`), rendered with a
/// `partition` label.
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    pub entries_read: AtomicU64,
    pub entries_stored: AtomicU64,
    pub entries_claimed: AtomicU64,
    pub entries_dead_lettered: AtomicU64,
    pub entries_failed: AtomicU64,
    pub groups_recreated: AtomicU64,
    /// Its last read was a backlog.
    pub backlog: std::sync::atomic::AtomicBool,
}

impl PartitionMetrics {
    /// Renders every partition's counters, one series per partition.
    pub fn render_all(partitions: &[std::sync::Arc<PartitionMetrics>], out: &mut String) {
        type Get = fn(&PartitionMetrics) -> &AtomicU64;
        let families: [(&str, &str, Get); 6] = [
            (
                "entries_read_total",
                "Entries read from this partition",
                |m| &m.entries_read,
            ),
            (
                "entries_stored_total",
                "Entries of this partition whose report was committed",
                |m| &m.entries_stored,
            ),
            (
                "entries_claimed_total",
                "Entries of this partition claimed from another consumer (dead or frozen)",
                |m| &m.entries_claimed,
            ),
            (
                "entries_dead_lettered_total",
                "Entries of this partition copied to its dead-letter stream",
                |m| &m.entries_dead_lettered,
            ),
            (
                "entries_failed_total",
                "Entry processing failures of this partition left pending for retry",
                |m| &m.entries_failed,
            ),
            (
                "groups_recreated_total",
                "Times this partition's consumer group was gone and was recreated",
                |m| &m.groups_recreated,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(
                out,
                "# HELP call_insights_partition_{name} {help}\n# TYPE call_insights_partition_{name} counter"
            );
            for (i, m) in partitions.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "call_insights_partition_{name}{{partition=\"{i}\"}} {}",
                    get(m).load(Relaxed)
                );
            }
        }
    }
}

impl IngestMetrics {
    pub fn observe_batch(&self, seconds: f64) {
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 14] = [
            (
                "entries_read_total",
                "Stream entries read (new, pending and claimed)",
                &self.entries_read,
            ),
            (
                "entries_stored_total",
                "Entries whose report was committed",
                &self.entries_stored,
            ),
            (
                "entries_stale_total",
                "Entries older than the stored report of their call (changed nothing)",
                &self.entries_stale,
            ),
            (
                "entries_duplicate_total",
                "Entries whose seq was already stored (redeliveries, re-publishes)",
                &self.entries_duplicate,
            ),
            (
                "entries_dead_lettered_total",
                "Entries copied to the dead-letter stream",
                &self.entries_dead_lettered,
            ),
            (
                "entries_failed_total",
                "Entry processing failures left pending for retry",
                &self.entries_failed,
            ),
            (
                "live_publish_errors_total",
                "Live events that could not be appended to the events stream",
                &self.live_publish_errors,
            ),
            (
                "entries_deleted_total",
                "Pending entries that had been deleted from the stream",
                &self.entries_deleted,
            ),
            ("batches_total", "Batches processed", &self.batches),
            (
                "rows_written_total",
                "Database rows inserted or updated",
                &self.rows_written,
            ),
            (
                "audio_segments_stored_total",
                "Audio segments decoded and stored",
                &self.audio_stored,
            ),
            (
                "audio_segments_failed_total",
                "Audio segments that could not be decoded",
                &self.audio_failed,
            ),
            (
                "consumers_removed_total",
                "Dead consumers removed from the group",
                &self.consumers_removed,
            ),
            (
                "groups_recreated_total",
                "Times the stream's consumer group was gone (Redis lost its data, e.g. restarted without persistence) and was recreated; reports not yet stored when it vanished are lost",
                &self.groups_recreated,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP call_insights_ingest_{name} {help}\n# TYPE call_insights_ingest_{name} counter"
            );
            let _ = writeln!(out, "call_insights_ingest_{name} {}", v.load(Relaxed));
        }
        let name = "call_insights_ingest_batch_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to process one batch (decode, audio, commit, ack)\n# TYPE {name} histogram"
        );
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Upper bounds (seconds) of the HTTP request duration histogram.
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; 12],
    count: u64,
    sum: f64,
}

/// HTTP request durations by route template and status.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_route: std::sync::Mutex<std::collections::BTreeMap<(String, u16), Histogram>>,
}

impl HttpMetrics {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut map) = self.by_route.lock() else {
            return;
        };
        let h = map.entry((route.to_string(), status)).or_default();
        for (i, le) in HTTP_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self, out: &mut String) {
        let name = "call_insights_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request durations by route and status\n# TYPE {name} histogram"
        );
        let Ok(map) = self.by_route.lock() else {
            return;
        };
        for ((route, status), h) in map.iter() {
            let labels = format!(
                "route=\"{}\",status=\"{status}\"",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
            for (i, le) in HTTP_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
    }
}
