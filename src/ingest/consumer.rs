//! `InsightsStreamConsumer`: reads `call-insights:sessions` with a consumer group and turns entries into
//! durable rows and audio, exactly once in effect. It acknowledges only after the commit, re-reads its
//! own pending entries on start and after every reconnect, claims dead consumers' entries, and sends
//! poison entries to the dead-letter stream. `process_next_batch` is one step (tests drive it
//! directly); `run` loops over it until shutdown, riding out Redis, database and storage outages.

use super::entry::{DecodedEntry, RawEntry, decode_entry};
use super::pipeline::{EntryOutcome, IngestError, IngestSummary, Ingestor};
use super::redis_reply::{
    parse_autoclaim_reply, parse_consumers, parse_pending_counts, parse_read_reply,
};
use crate::broker::{Broker, Conn, Timeouts};
use crate::metrics::{IngestMetrics, PartitionMetrics};
use crate::storage::StorageError;
use redis::{RedisError, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The partition's stream (`ingest::partition`).
    pub stream: String,
    pub dlq_stream: String,
    /// Which partition `stream` is (0 when the stream is not partitioned).
    pub partition: u32,
    /// Pub/sub channel announcing the sessions each commit changed (`updates_channel` of the
    /// unpartitioned stream name: one channel for all partitions).
    pub updates_channel: String,
    pub group: String,
    pub consumer: String,
    /// Most entries read at once (fewer when entries are large, see `batch_memory_bytes`).
    pub batch_size: usize,
    /// XREADGROUP BLOCK time; zero reads without blocking (tests).
    pub block: Duration,
    /// Idle time after which another consumer's pending entry is claimed: longer than the slowest
    /// legitimate processing of a batch.
    pub claim_idle: Duration,
    /// How often XAUTOCLAIM runs.
    pub claim_interval: Duration,
    /// An entry delivered more times than this goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// A consumer with nothing pending, idle this long, is removed from the group.
    pub dead_consumer_idle: Duration,
    pub max_payload_bytes: usize,
    /// Target bytes of entries per batch: the read COUNT adapts to the entries' size.
    pub batch_memory_bytes: usize,
    /// Approximate cap of the dead-letter stream (MAXLEN ~).
    pub dlq_maxlen: usize,
    /// Transactions a batch is written in at once, split by call (`INSIGHTS_INGEST_LANES`).
    pub ingest_lanes: usize,
}

type LaneResult = Result<IngestSummary, IngestError>;

/// A batch sorted before it is written: entries deleted from the stream (acknowledged), poison
/// (dead-lettered with its reason), and the decoded entries to write.
struct Sorted {
    read: usize,
    /// Bytes of the batch and of its largest entry.
    bytes: usize,
    largest: usize,
    deleted: Vec<String>,
    poison: Vec<(RawEntry, String)>,
    valid: Vec<DecodedEntry>,
}

/// Sorts `entries`: deleted, delivered too often, undecodable, or valid. JSON decoding is CPU work,
/// so it runs off the reactor (and, for a prefetched batch, while the previous one commits).
async fn sort_batch(
    entries: Vec<RawEntry>,
    max_deliveries: u64,
    max_payload: usize,
) -> Result<Sorted, ConsumerError> {
    let mut sorted = Sorted {
        read: entries.len(),
        bytes: entries.iter().map(RawEntry::size_bytes).sum(),
        largest: entries.iter().map(RawEntry::size_bytes).max().unwrap_or(0),
        deleted: Vec::new(),
        poison: Vec::new(),
        valid: Vec::new(),
    };
    let mut candidates = Vec::with_capacity(entries.len());
    for e in entries {
        if e.fields.is_none() {
            sorted.deleted.push(e.id);
        } else if e.deliveries > max_deliveries {
            let reason = format!(
                "delivered {} times (limit {max_deliveries}) without being stored; see the service log for entry_id {}",
                e.deliveries, e.id
            );
            sorted.poison.push((e, reason));
        } else {
            candidates.push(e);
        }
    }
    if candidates.is_empty() {
        return Ok(sorted);
    }
    let decoded: Vec<Result<DecodedEntry, (RawEntry, String)>> =
        tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .map(|e| decode_entry(e, max_payload).map_err(|(e, err)| (e, err.0)))
                .collect()
        })
        .await
        .map_err(|e| ConsumerError::Task(format!("decode task failed: {e}")))?;
    sorted.valid.reserve(decoded.len());
    for d in decoded {
        match d {
            Ok(d) => sorted.valid.push(d),
            Err(p) => sorted.poison.push(p),
        }
    }
    Ok(sorted)
}

/// Smallest batch split into lanes: below it one transaction costs less than several commits.
const LANE_MIN_ENTRIES: usize = 32;

/// Most entries one XREADGROUP asks for: a batch is read in chunks of this many so its bytes stop
/// near `batch_memory_bytes` (see `Consumer::read`).
const READ_CHUNK: usize = 16;

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub read: usize,
    pub stored: usize,
    pub stale: usize,
    pub duplicate: usize,
    pub dead_lettered: usize,
    pub failed: usize,
    pub deleted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("database unavailable: {0}")]
    Database(sea_orm::DbErr),
    #[error("{0}")]
    Storage(StorageError),
    #[error("{0}")]
    Task(String),
}

impl ConsumerError {
    fn component(&self) -> &'static str {
        match self {
            ConsumerError::Redis(_) => "redis",
            ConsumerError::Database(_) => "database",
            ConsumerError::Storage(_) => "audio store",
            ConsumerError::Task(_) => "worker",
        }
    }
}

struct Conns {
    /// Dedicated to blocking reads: its response timeout exceeds the BLOCK time.
    read: Conn,
    /// Everything else (XACK, XADD to the DLQ, XAUTOCLAIM, XPENDING).
    cmd: Conn,
}

pub struct InsightsStreamConsumer {
    settings: ConsumerSettings,
    client: Broker,
    ingestor: Ingestor,
    metrics: Arc<IngestMetrics>,
    /// This partition's own counters.
    partition: Arc<PartitionMetrics>,
    conns: Option<Conns>,
    /// Set on start, after a reconnect and after a failed batch: re-read our own pending entries first.
    reread_pending: bool,
    /// Connected to Redis before: a group created on a later connect means Redis lost it.
    connected_once: bool,
    pending_cursor: String,
    claim_cursor: String,
    last_claim: Option<Instant>,
    next_count: usize,
    /// Largest entry seen (bytes), decaying 1 % per batch.
    largest_entry: usize,
    /// Where live events of each commit go.
    live: Option<Arc<crate::live::hub::Hub>>,
    /// New entries read and decoded while the previous batch was being written (a backlog): the
    /// next step writes them without waiting for Redis or the decoder. Delivered to us, so a
    /// failure before they are written leaves them pending, re-read or claimed like any other.
    prefetched: Option<Sorted>,
    /// Cancelled when `run` is told to stop: no more prefetching, what was prefetched is written.
    stopping: CancellationToken,
}

impl InsightsStreamConsumer {
    /// Publishes each commit's live events through `hub`.
    pub fn with_live(mut self, hub: Arc<crate::live::hub::Hub>) -> Self {
        self.live = Some(hub);
        self
    }

    pub fn new(
        settings: ConsumerSettings,
        client: Broker,
        ingestor: Ingestor,
        metrics: Arc<IngestMetrics>,
        partition: Arc<PartitionMetrics>,
    ) -> Self {
        // Until entries have been seen, assume they may carry audio.
        let next_count = settings.batch_size.clamp(1, 16);
        InsightsStreamConsumer {
            settings,
            client,
            ingestor,
            metrics,
            partition,
            conns: None,
            reread_pending: true,
            connected_once: false,
            pending_cursor: "0".into(),
            claim_cursor: "0-0".into(),
            last_claim: None,
            next_count,
            largest_entry: 1,
            live: None,
            prefetched: None,
            stopping: CancellationToken::new(),
        }
    }

    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// Loops until `shutdown` is cancelled. A batch in flight always finishes (and is acknowledged),
    /// and so does a batch prefetched during it; the blocking read returns within the BLOCK time, so
    /// shutdown takes at most that long.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(stream = %self.settings.stream, partition = self.settings.partition, group = %self.settings.group, consumer = %self.settings.consumer, "consumer started");
        self.stopping = shutdown.clone();
        let mut outage: Option<(Instant, &'static str)> = None;
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() || self.prefetched.is_some() {
            match self.process_next_batch().await {
                Ok(report) => {
                    if let Some((since, what)) = outage.take() {
                        info!(
                            component = what,
                            stream = %self.settings.stream,
                            outage_ms = since.elapsed().as_millis() as u64,
                            "ingest resumed"
                        );
                    }
                    backoff = Duration::from_millis(100);
                    if report.read == 0 && self.settings.block.is_zero() {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                }
                Err(e) => {
                    if shutdown.is_cancelled() {
                        // Stopping: what was read ahead stays pending for the next start or a
                        // claim, rather than retried against a component that is down.
                        warn!(component = e.component(), stream = %self.settings.stream, error = %e, "stopping during an outage: unacknowledged entries stay pending for the next start or another replica");
                        break;
                    }
                    if outage.is_none() {
                        warn!(component = e.component(), stream = %self.settings.stream, error = %e, "ingest paused: retrying with backoff (logged once per outage)");
                        outage = Some((Instant::now(), e.component()));
                    } else {
                        debug!(error = %e, "still unavailable");
                    }
                    if matches!(e, ConsumerError::Redis(_)) {
                        self.conns = None;
                    }
                    // Wait until the failing component answers again before touching entries, so an
                    // outage does not count as deliveries and push healthy entries to the DLQ.
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(jitter(backoff)) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        if self.component_healthy(&e).await {
                            break;
                        }
                    }
                }
            }
        }
        info!(consumer = %self.settings.consumer, "consumer stopped");
    }

    async fn component_healthy(&mut self, e: &ConsumerError) -> bool {
        match e {
            ConsumerError::Redis(_) => self.ensure_connected().await.is_ok(),
            ConsumerError::Database(_) => self.db_answers().await,
            ConsumerError::Storage(_) => self.ingestor.store().check().await.is_ok(),
            ConsumerError::Task(_) => true,
        }
    }

    async fn ensure_connected(&mut self) -> Result<&mut Conns, ConsumerError> {
        if self.conns.is_none() {
            let connect = Duration::from_secs(5);
            let read = self
                .client
                .connect(Timeouts::new(
                    connect,
                    self.settings.block + Duration::from_secs(10),
                ))
                .await?;
            let mut cmd = self
                .client
                .connect(Timeouts::new(connect, Duration::from_secs(30)))
                .await?;
            let created = create_group(&mut cmd, &self.settings).await?;
            if created && self.connected_once {
                self.group_lost("after reconnecting, the consumer group did not exist");
            }
            self.connected_once = true;
            self.conns = Some(Conns { read, cmd });
            self.reread_pending_entries();
        }
        match self.conns.as_mut() {
            Some(c) => Ok(c),
            None => Err(ConsumerError::Task("connection vanished".into())),
        }
    }

    /// One step: our own pending entries first (after start/reconnect/failure), then entries claimed
    /// from dead consumers (every `claim_interval`), then new entries (blocking up to `block`).
    pub async fn process_next_batch(&mut self) -> Result<BatchReport, ConsumerError> {
        match self.step().await {
            Err(ConsumerError::Redis(e)) if e.code() == Some("NOGROUP") => {
                let s = self.settings.clone();
                let conns = self.ensure_connected().await?;
                if create_group(&mut conns.cmd, &s).await? {
                    self.group_lost(
                        "the consumer group vanished (stream deleted or Redis data lost)",
                    );
                }
                self.reread_pending_entries();
                self.claim_cursor = "0-0".into();
                Ok(BatchReport::default())
            }
            other => other,
        }
    }

    /// The group had to be created again: whatever the stream held and was not stored is gone.
    /// Loud on purpose (an error and a counter), and ingest goes on with what arrives next.
    fn group_lost(&self, what: &str) {
        self.metrics.groups_recreated.fetch_add(1, Relaxed);
        self.partition.groups_recreated.fetch_add(1, Relaxed);
        error!(
            stream = %self.settings.stream,
            group = %self.settings.group,
            "{what}: recreated it at ID 0; reports published before and not yet stored are lost (is Redis persistent? appendonly yes)"
        );
    }

    async fn step(&mut self) -> Result<BatchReport, ConsumerError> {
        self.ensure_connected().await?;
        if self.reread_pending {
            let cursor = self.pending_cursor.clone();
            let entries = self
                .read(&cursor, false, self.settings.batch_memory_bytes)
                .await?;
            match entries.last() {
                None => {
                    self.reread_pending = false;
                    self.pending_cursor = "0".into();
                }
                Some(last) => {
                    self.pending_cursor = last.id.clone();
                    let entries = self.with_delivery_counts(entries).await?;
                    return self.handle(entries).await;
                }
            }
        }
        if let Some(sorted) = self.prefetched.take() {
            return self.write(sorted).await;
        }
        let claim_due = self
            .last_claim
            .is_none_or(|t| t.elapsed() >= self.settings.claim_interval)
            || self.claim_cursor != "0-0";
        if claim_due {
            let entries = self.claim().await?;
            if !entries.is_empty() {
                return self.handle(entries).await;
            }
        }
        let entries = self
            .read(">", true, self.settings.batch_memory_bytes)
            .await?;
        self.handle(entries).await
    }

    /// Reads up to the next batch's COUNT entries after `id` (`>`: new ones; an id: our own pending
    /// ones after it), in chunks of at most [`READ_CHUNK`], stopping once the batch holds
    /// `batch_memory_bytes`: a reply cannot be bounded in bytes, but a chunk can, so a batch overshoots
    /// its budget by at most one chunk whatever order small and large entries arrive in (small
    /// partials growing COUNT, then finals carrying audio). Only the first chunk blocks.
    async fn read(
        &mut self,
        id: &str,
        block: bool,
        budget: usize,
    ) -> Result<Vec<RawEntry>, ConsumerError> {
        let want = self.next_count.max(1);
        let budget = budget.max(1);
        let mut largest = self.largest_entry.max(1);
        let mut out: Vec<RawEntry> = Vec::new();
        let mut bytes = 0usize;
        let mut cursor = id.to_string();
        loop {
            let fits = (budget.saturating_sub(bytes) / largest).max(1);
            let count = (want - out.len()).min(READ_CHUNK).min(fits);
            let chunk = self
                .read_chunk(&cursor, count, block && out.is_empty())
                .await?;
            let got = chunk.len();
            for e in &chunk {
                let size = e.size_bytes();
                bytes += size;
                largest = largest.max(size);
            }
            if cursor != ">"
                && let Some(last) = chunk.last()
            {
                cursor = last.id.clone();
            }
            out.extend(chunk);
            if got < count || out.len() >= want || bytes >= budget {
                return Ok(out);
            }
        }
    }

    async fn read_chunk(
        &mut self,
        id: &str,
        count: usize,
        block: bool,
    ) -> Result<Vec<RawEntry>, ConsumerError> {
        let s = &self.settings;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&s.group)
            .arg(&s.consumer)
            .arg("COUNT")
            .arg(count);
        if block && !s.block.is_zero() {
            cmd.arg("BLOCK").arg(s.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&s.stream).arg(id);
        let conns = self.ensure_connected().await?;
        Ok(parse_read_reply(
            cmd.query_async::<Value>(&mut conns.read).await?,
        ))
    }

    /// Claims entries idle longer than `claim_idle` (from dead consumers, or our own failed ones).
    async fn claim(&mut self) -> Result<Vec<RawEntry>, ConsumerError> {
        self.last_claim = Some(Instant::now());
        let s = self.settings.clone();
        let cursor = self.claim_cursor.clone();
        let count = self.next_count;
        let conns = self.ensure_connected().await?;
        let v: Value = redis::cmd("XAUTOCLAIM")
            .arg(&s.stream)
            .arg(&s.group)
            .arg(&s.consumer)
            .arg(s.claim_idle.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conns.cmd)
            .await?;
        let (next, entries, deleted) = parse_autoclaim_reply(v);
        if !deleted.is_empty() {
            info!(
                count = deleted.len(),
                "claimed pending entries that were deleted from the stream; dropped from the group"
            );
            self.metrics
                .entries_deleted
                .fetch_add(deleted.len() as u64, Relaxed);
        }
        if !entries.is_empty() {
            self.partition
                .entries_claimed
                .fetch_add(entries.len() as u64, Relaxed);
            info!(
                stream = %s.stream,
                count = entries.len(),
                "claimed entries idle for over {} ms",
                s.claim_idle.as_millis()
            );
        }
        self.claim_cursor = next;
        if self.claim_cursor == "0-0" {
            self.remove_dead_consumers().await?;
        }
        self.with_delivery_counts(entries).await
    }

    async fn remove_dead_consumers(&mut self) -> Result<(), ConsumerError> {
        let s = self.settings.clone();
        let metrics = self.metrics.clone();
        let conns = self.ensure_connected().await?;
        let v: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&s.stream)
            .arg(&s.group)
            .query_async(&mut conns.cmd)
            .await?;
        for c in parse_consumers(v) {
            if c.name != s.consumer
                && c.pending == 0
                && c.idle_ms as u128 >= s.dead_consumer_idle.as_millis()
            {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&s.stream)
                    .arg(&s.group)
                    .arg(&c.name)
                    .query_async(&mut conns.cmd)
                    .await?;
                info!(consumer = %c.name, idle_ms = c.idle_ms, "removed dead consumer with nothing pending");
                metrics.consumers_removed.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    /// Fills `deliveries` from XPENDING for entries that may have been delivered before.
    async fn with_delivery_counts(
        &mut self,
        mut entries: Vec<RawEntry>,
    ) -> Result<Vec<RawEntry>, ConsumerError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(entries);
        };
        let s = self.settings.clone();
        let (first, last) = (first.id.clone(), last.id.clone());
        let n = entries.len();
        let conns = self.ensure_connected().await?;
        let v: Value = redis::cmd("XPENDING")
            .arg(&s.stream)
            .arg(&s.group)
            .arg(&first)
            .arg(&last)
            .arg(n)
            .arg(&s.consumer)
            .query_async(&mut conns.cmd)
            .await?;
        let counts: HashMap<String, u64> = parse_pending_counts(v).into_iter().collect();
        for e in &mut entries {
            e.deliveries = counts.get(&e.id).copied().unwrap_or(1);
        }
        Ok(entries)
    }

    /// Sizes the next read so a batch holds about `batch_memory_bytes`: COUNT = budget / the largest
    /// entry seen. A read cannot be bounded in bytes, so the estimate is pessimistic: a stream that
    /// carried audio once will again, so the largest size is remembered (decaying 1 % per batch), and
    /// COUNT at most doubles per batch, starting from 16.
    fn adapt_count(&mut self, largest: usize) {
        self.largest_entry = largest
            .max(self.largest_entry - self.largest_entry / 100)
            .max(1);
        let fits = self.settings.batch_memory_bytes / self.largest_entry;
        self.next_count = fits
            .min(self.next_count * 2)
            .clamp(1, self.settings.batch_size.max(1));
    }

    async fn handle(&mut self, entries: Vec<RawEntry>) -> Result<BatchReport, ConsumerError> {
        let s = &self.settings;
        let sorted = sort_batch(entries, s.max_deliveries, s.max_payload_bytes).await?;
        self.write(sorted).await
    }

    async fn write(&mut self, sorted: Sorted) -> Result<BatchReport, ConsumerError> {
        let mut report = BatchReport {
            read: sorted.read,
            ..Default::default()
        };
        // A full-size read means a backlog: background work (analytics) steps back meanwhile.
        let backlog = sorted.read >= 16;
        if self.partition.backlog.swap(backlog, Relaxed) != backlog {
            if backlog {
                self.metrics.backlogged.fetch_add(1, Relaxed);
            } else {
                self.metrics.backlogged.fetch_sub(1, Relaxed);
            }
        }
        if sorted.read == 0 {
            return Ok(report);
        }
        let started = Instant::now();
        self.metrics
            .entries_read
            .fetch_add(sorted.read as u64, Relaxed);
        self.partition
            .entries_read
            .fetch_add(sorted.read as u64, Relaxed);
        self.adapt_count(sorted.largest);
        let Sorted {
            bytes,
            deleted,
            poison,
            valid,
            ..
        } = sorted;
        report.deleted = deleted.len();
        let mut to_ack = deleted;
        if !poison.is_empty() {
            report.dead_lettered = poison.len();
            self.dead_letter(&poison).await?;
        }

        // A backlog: the next batch is read and decoded while this one is written, within what
        // is left of the batch memory budget.
        let prefetch = backlog
            && !self.reread_pending
            && !self.stopping.is_cancelled()
            && self.settings.batch_memory_bytes.saturating_sub(bytes) >= self.largest_entry;
        let lanes = ingest_lanes(self.ingestor.clone(), self.settings.ingest_lanes, valid);
        let (written, ()) = tokio::join!(lanes, async {
            if prefetch {
                self.prefetch(self.settings.batch_memory_bytes - bytes)
                    .await;
            }
        });
        let mut outage: Option<ConsumerError> = None;
        for (lane, result) in written {
            let e = match result {
                Ok(summary) => {
                    self.committed(&mut report, &mut to_ack, &lane, summary)
                        .await;
                    continue;
                }
                Err(e) => e,
            };
            if outage.is_some() {
                continue;
            }
            outage = self.outage(e).await;
            if outage.is_some() {
                continue;
            }
            // Isolate the entry that broke the lane: one transaction per entry.
            for d in lane.iter() {
                match self.ingestor.ingest(std::slice::from_ref(d)).await {
                    Ok(summary) => {
                        self.committed(&mut report, &mut to_ack, std::slice::from_ref(d), summary)
                            .await;
                    }
                    Err(e) => {
                        outage = self.outage(e).await;
                        if outage.is_some() {
                            break;
                        }
                        report.failed += 1;
                        self.metrics.entries_failed.fetch_add(1, Relaxed);
                        self.partition.entries_failed.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if let Some(outage) = outage {
            // What other lanes committed is acknowledged; the rest (and what was prefetched) is
            // read again from our pending entries once the component answers.
            self.reread_pending_entries();
            self.ack(&to_ack).await?;
            return Err(outage);
        }
        self.ack(&to_ack).await?;
        self.metrics.batches.fetch_add(1, Relaxed);
        self.metrics.observe_batch(started.elapsed().as_secs_f64());
        debug!(
            read = report.read,
            stored = report.stored,
            stale = report.stale,
            duplicate = report.duplicate,
            dead_lettered = report.dead_lettered,
            failed = report.failed,
            latency_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        Ok(report)
    }

    /// Our pending entries are read again from the start before anything new; what was read ahead
    /// is among them, so it is dropped.
    fn reread_pending_entries(&mut self) {
        self.reread_pending = true;
        self.pending_cursor = "0".into();
        self.prefetched = None;
    }

    /// Reads and decodes the next new entries (up to `budget` bytes) into `prefetched`. A failure
    /// drops them (they may have been delivered: the pending re-read picks them up) and is not an
    /// outage of this batch; the next step meets it again if it lasts.
    async fn prefetch(&mut self, budget: usize) {
        let entries = match self.read(">", false, budget).await {
            Ok(entries) if entries.is_empty() => return,
            Ok(entries) => entries,
            Err(e) => {
                debug!(error = %e, "prefetch failed; pending entries are read again");
                self.reread_pending_entries();
                return;
            }
        };
        let s = &self.settings;
        match sort_batch(entries, s.max_deliveries, s.max_payload_bytes).await {
            Ok(sorted) => self.prefetched = Some(sorted),
            Err(e) => {
                debug!(error = %e, "prefetched batch not decoded; pending entries are read again");
                self.reread_pending_entries();
            }
        }
    }

    /// Acknowledges, counts and announces what a commit stored.
    async fn committed(
        &mut self,
        report: &mut BatchReport,
        to_ack: &mut Vec<String>,
        entries: &[DecodedEntry],
        mut summary: IngestSummary,
    ) {
        to_ack.extend(entries.iter().map(|d| d.entry_id.clone()));
        tally(report, &summary.outcomes);
        self.record(&summary);
        self.announce(&summary.session_ids).await;
        self.publish_live(std::mem::take(&mut summary.live_events));
    }

    /// Hands what the commit changed to the live publisher (after the commit: an event a client sees
    /// is always committed; the consumer does not wait for Redis to take it).
    fn publish_live(&mut self, events: Vec<crate::live::LiveEvent>) {
        if events.is_empty() {
            return;
        }
        match &self.live {
            Some(hub) => hub.enqueue(events),
            None => {
                self.metrics
                    .live_publish_errors
                    .fetch_add(events.len() as u64, Relaxed);
            }
        }
    }

    /// Tells every API replica which sessions changed (`<stream>:updates`), so their caches drop them.
    /// Best effort after the commit: a replica that misses it is not subscribed and does not cache.
    async fn announce(&mut self, ids: &[uuid::Uuid]) {
        if let Some(conns) = self.conns.as_mut() {
            super::updates::announce(&mut conns.cmd, &self.settings.updates_channel, ids).await;
        }
    }

    fn record(&self, s: &super::pipeline::IngestSummary) {
        self.metrics.rows_written.fetch_add(s.rows_written, Relaxed);
        self.metrics.audio_stored.fetch_add(s.audio_stored, Relaxed);
        self.metrics.audio_failed.fetch_add(s.audio_failed, Relaxed);
        let stored = s
            .outcomes
            .iter()
            .filter(|o| matches!(o, EntryOutcome::Stored))
            .count();
        self.partition
            .entries_stored
            .fetch_add(stored as u64, Relaxed);
        for o in &s.outcomes {
            let c = match o {
                EntryOutcome::Stored => &self.metrics.entries_stored,
                EntryOutcome::Stale => &self.metrics.entries_stale,
                EntryOutcome::Duplicate => &self.metrics.entries_duplicate,
            };
            c.fetch_add(1, Relaxed);
        }
    }

    /// `Some` when the failure is an outage of the database or the store (retry the same entries once
    /// it is back); `None` when the entries themselves may be at fault.
    async fn outage(&self, e: IngestError) -> Option<ConsumerError> {
        if e.is_storage_outage() {
            let IngestError::Storage(s) = e else {
                return None;
            };
            return Some(ConsumerError::Storage(s));
        }
        match e {
            IngestError::Database(db_err) => {
                if !self.db_answers().await {
                    Some(ConsumerError::Database(db_err))
                } else {
                    error!(error = %db_err, "batch failed; retrying its entries one by one");
                    None
                }
            }
            other => {
                error!(error = %other, "batch failed; retrying its entries one by one");
                None
            }
        }
    }

    /// The database answers a ping within 5 s (a blackholed connection would never answer).
    async fn db_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.ingestor.db().ping()).await,
            Ok(Ok(()))
        )
    }

    async fn ack(&mut self, ids: &[String]) -> Result<(), ConsumerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let s = self.settings.clone();
        let conns = self.ensure_connected().await?;
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&s.stream).arg(&s.group).arg(ids);
        let _: i64 = cmd.query_async(&mut conns.cmd).await?;
        Ok(())
    }

    /// Copies each entry with the reason to the dead-letter stream and acknowledges it, atomically.
    async fn dead_letter(&mut self, poison: &[(RawEntry, String)]) -> Result<(), ConsumerError> {
        let s = self.settings.clone();
        let now = chrono::Utc::now().to_rfc3339();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (e, reason) in poison {
            warn!(entry_id = %e.id, deliveries = e.deliveries, reason = %reason, "entry dead-lettered");
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&s.dlq_stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(s.dlq_maxlen)
                .arg("*");
            cmd.arg("dlq_reason").arg(reason);
            cmd.arg("dlq_original_id").arg(&e.id);
            cmd.arg("dlq_source_stream").arg(&s.stream);
            cmd.arg("dlq_consumer").arg(&s.consumer);
            cmd.arg("dlq_deliveries").arg(e.deliveries);
            cmd.arg("dlq_failed_at").arg(&now);
            for (k, v) in e.fields.iter().flatten() {
                cmd.arg(k.as_str()).arg(v.as_slice());
            }
            pipe.add_command(cmd).ignore();
            pipe.cmd("XACK")
                .arg(&s.stream)
                .arg(&s.group)
                .arg(&e.id)
                .ignore();
        }
        let conns = self.ensure_connected().await?;
        let _: () = pipe.query_async(&mut conns.cmd).await?;
        self.metrics
            .entries_dead_lettered
            .fetch_add(poison.len() as u64, Relaxed);
        self.partition
            .entries_dead_lettered
            .fetch_add(poison.len() as u64, Relaxed);
        Ok(())
    }
}

/// Splits a batch by call into up to `lanes` lanes and writes them concurrently, each in its own
/// transaction: the lanes share no call, so they never contend for a row, and while one waits on
/// the database another builds its rows. Returns every lane with its result (a lane's failure does
/// not undo another's commit).
async fn ingest_lanes(
    ingestor: Ingestor,
    lanes: usize,
    valid: Vec<DecodedEntry>,
) -> Vec<(Arc<Vec<DecodedEntry>>, LaneResult)> {
    let n = lanes.max(1);
    if n == 1 || valid.len() < LANE_MIN_ENTRIES {
        let r = ingestor.ingest(&valid).await;
        return vec![(Arc::new(valid), r)];
    }
    let mut split: Vec<Vec<DecodedEntry>> = (0..n).map(|_| Vec::new()).collect();
    for d in valid {
        split[lane_of(&d.report.call_id, n)].push(d);
    }
    let tasks = split.into_iter().filter(|l| !l.is_empty()).map(|lane| {
        let lane = Arc::new(lane);
        let (ingestor, entries) = (ingestor.clone(), lane.clone());
        let task = tokio::spawn(async move { ingestor.ingest(&entries).await });
        async move {
            // A lane that panicked is retried entry by entry like a lane that failed.
            let r = task
                .await
                .unwrap_or_else(|e| Err(IngestError::Task(format!("ingest lane failed: {e}"))));
            (lane, r)
        }
    });
    futures::future::join_all(tasks).await
}

fn tally(report: &mut BatchReport, outcomes: &[EntryOutcome]) {
    for o in outcomes {
        match o {
            EntryOutcome::Stored => report.stored += 1,
            EntryOutcome::Stale => report.stale += 1,
            EntryOutcome::Duplicate => report.duplicate += 1,
        }
    }
}

/// Creates the group at ID 0 with MKSTREAM, so reports published before the first start are consumed.
/// True when it had to be created (false: it existed).
async fn create_group(conn: &mut Conn, s: &ConsumerSettings) -> Result<bool, RedisError> {
    let r: Result<(), RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&s.stream)
        .arg(&s.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(()) => {
            info!(stream = %s.stream, group = %s.group, "created consumer group at ID 0");
            Ok(true)
        }
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The lane of a call: a hash independent of the partition's (crc32), so a partition's calls still
/// spread over every lane.
fn lane_of(call_id: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    call_id.hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

/// ±25 % jitter so replicas do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}
