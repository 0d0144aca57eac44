//! The ingest pipeline, independent of Redis: a batch of decoded entries → stale filtering → one merged
//! snapshot per call (newest `seq` wins per turn, event and segment) → audio decoded, measured and
//! stored → one database transaction. The consumer acknowledges only after this returns `Ok`.

use super::contract::{AudioRef, AudioSegment, Event, Role, SegmentType, SessionReport, Turn};
use super::entry::DecodedEntry;
use super::persist::{self, SegmentRow};
use super::row_cache::{CallRows, RowCache};
use crate::audio::{self, AudioMetrics, Span};
use crate::diagnosis::Thresholds;
use crate::storage::{AudioStore, StorageError, segment_key};
use base64::Engine;
use futures::{StreamExt, stream};
use sea_orm::{DatabaseConnection, DbErr};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// What happened to one entry of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Its rows are committed (possibly merged with newer reports of the same call in the batch).
    Stored,
    /// A newer report of the call is already stored: nothing changed.
    Stale,
    /// This exact `seq` of the call is already stored (a redelivery or a re-publish): nothing changed.
    Duplicate,
}

#[derive(Debug, Default, Clone)]
pub struct IngestSummary {
    /// One outcome per input entry, in input order.
    pub outcomes: Vec<EntryOutcome>,
    pub sessions_written: u64,
    /// Ids of the sessions the batch changed (announced to API replicas after the commit).
    pub session_ids: Vec<uuid::Uuid>,
    pub rows_written: u64,
    pub audio_stored: u64,
    pub audio_failed: u64,
    /// What the commit changed, for live monitoring (published after the commit).
    pub live_events: Vec<crate::live::LiveEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("background task failed: {0}")]
    Task(String),
}

impl IngestError {
    /// True when retrying later can succeed without changing the entry (the store is down).
    pub fn is_storage_outage(&self) -> bool {
        matches!(self, IngestError::Storage(StorageError::Unavailable(_)))
    }
}

/// Persists batches of reports. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ingestor {
    db: DatabaseConnection,
    store: Arc<dyn AudioStore>,
    /// Prefix of every audio object key this service writes (e.g. per test, or per environment).
    key_prefix: String,
    /// How many segments are decoded and uploaded at once.
    audio_concurrency: usize,
    /// Fingerprints of committed child rows per call, to send only what changed.
    cache: Arc<RowCache>,
    /// What the diagnosis rules compare against.
    thresholds: Arc<Thresholds>,
    /// Queue final reports for post-call analytics (in the same transaction).
    analytics: bool,
    /// Derive live monitoring events from what each commit changed.
    live: bool,
    /// Time limit of each database step of a batch: a database that does not answer (a blackholed
    /// connection never errors by itself) is treated as down.
    db_timeout: Duration,
}

/// One call's reports of a batch merged into a single snapshot.
pub(super) struct CallSnapshot<'a> {
    /// The newest report: session-level fields come from it.
    pub head: &'a SessionReport,
    pub turns: BTreeMap<i64, (&'a Turn, i64)>,
    pub events: BTreeMap<i64, (&'a Event, i64)>,
    /// Segment, the seq of the report it came from, and that report's entry index.
    pub segments: BTreeMap<&'a str, (&'a AudioSegment, i64, usize)>,
    /// Indexes (in the batch) of the entries merged here.
    pub entries: Vec<usize>,
}

impl Ingestor {
    pub fn new(
        db: DatabaseConnection,
        store: Arc<dyn AudioStore>,
        key_prefix: String,
        audio_concurrency: usize,
        cache: Arc<RowCache>,
        thresholds: Arc<Thresholds>,
    ) -> Self {
        Ingestor {
            db,
            store,
            key_prefix,
            audio_concurrency: audio_concurrency.max(1),
            cache,
            thresholds,
            analytics: false,
            live: false,
            db_timeout: Duration::from_secs(30),
        }
    }

    /// Bounds each database step of a batch (`INSIGHTS_DB_TIMEOUT_MS`).
    pub fn with_db_timeout(mut self, t: Duration) -> Self {
        self.db_timeout = t.max(Duration::from_millis(100));
        self
    }

    /// `f` within the database time limit; elapsed is a database error (nothing committed by us
    /// that is acknowledged: the caller retries the batch once the database answers a ping).
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, DbErr>>,
    ) -> Result<T, IngestError> {
        match tokio::time::timeout(self.db_timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(IngestError::Database(DbErr::Custom(format!(
                "no answer from the database within {} ms (INSIGHTS_DB_TIMEOUT_MS)",
                self.db_timeout.as_millis()
            )))),
        }
    }

    /// Derives live events from each commit (`IngestSummary::live_events`).
    pub fn with_live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    /// Queues committed final reports for post-call analytics.
    pub fn with_analytics(mut self, on: bool) -> Self {
        self.analytics = on;
        self
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn store(&self) -> &Arc<dyn AudioStore> {
        &self.store
    }

    /// Ingests a batch in one transaction. On `Err` nothing of the batch is committed (audio objects
    /// may exist: they are content-addressed, so a retry rewrites the same keys).
    pub async fn ingest(&self, batch: &[DecodedEntry]) -> Result<IngestSummary, IngestError> {
        // Another replica committing a report of one of these calls between our read of the stored
        // reports and our transaction makes the write start over from a fresh read (PostgreSQL).
        const ATTEMPTS: u32 = 8;
        for attempt in 1..=ATTEMPTS {
            if let Some(summary) = self.try_ingest(batch).await? {
                return Ok(summary);
            }
            tracing::debug!(
                attempt,
                "a concurrent replica changed a call of this batch; writing it again"
            );
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
        }
        Err(IngestError::Database(DbErr::Custom(format!(
            "other replicas kept changing this batch's calls ({ATTEMPTS} attempts); retried later"
        ))))
    }

    async fn try_ingest(
        &self,
        batch: &[DecodedEntry],
    ) -> Result<Option<IngestSummary>, IngestError> {
        let mut summary = IngestSummary {
            outcomes: vec![EntryOutcome::Stored; batch.len()],
            ..Default::default()
        };
        if batch.is_empty() {
            return Ok(Some(summary));
        }
        let mut by_call: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in batch.iter().enumerate() {
            by_call
                .entry(e.report.call_id.as_str())
                .or_default()
                .push(i);
        }
        let stored = self
            .bounded(persist::stored_seqs(&self.db, by_call.keys().copied()))
            .await?;

        let mut snapshots = Vec::with_capacity(by_call.len());
        let mut known = Vec::with_capacity(by_call.len());
        for (call_id, mut idxs) in by_call {
            let stored_seq = stored.get(call_id).map(|(s, _)| *s);
            idxs.retain(|&i| {
                let seq = batch[i].report.seq;
                match stored_seq {
                    Some(s) if seq < s => {
                        summary.outcomes[i] = EntryOutcome::Stale;
                        false
                    }
                    Some(s) if seq == s => {
                        summary.outcomes[i] = EntryOutcome::Duplicate;
                        false
                    }
                    _ => true,
                }
            });
            if idxs.is_empty() {
                continue;
            }
            // Ascending seq; for equal seqs the later entry wins (stable sort keeps stream order).
            idxs.sort_by_key(|&i| batch[i].report.seq);
            snapshots.push(merge(batch, idxs));
            known.push(match stored_seq {
                None => Some(Arc::new(CallRows::new_call())),
                Some(s) => self.cache.get(call_id, s),
            });
        }
        if snapshots.is_empty() {
            return Ok(Some(summary));
        }

        let segment_rows = self.store_audio(batch, &snapshots, &mut summary).await?;
        let derive = |w: &persist::Written| live_events(&snapshots, w, &stored);
        let Some(mut written) = self
            .bounded(persist::write_snapshots(
                &self.db,
                &stored,
                &snapshots,
                segment_rows,
                &known,
                &self.thresholds,
                self.analytics,
                self.live.then_some(&derive as persist::LiveDerive<'_>),
            ))
            .await?
        else {
            return Ok(None);
        };
        summary.live_events = std::mem::take(&mut written.live_events);
        for (snap, rows) in snapshots.iter().zip(written.call_rows) {
            match rows {
                Some(rows) => self.cache.put(&snap.head.call_id, rows),
                None => self.cache.remove(&snap.head.call_id),
            }
        }
        for (snap, won) in snapshots.iter().zip(&written.won) {
            if !won {
                // A newer report of this call was committed concurrently by another consumer.
                for &i in &snap.entries {
                    summary.outcomes[i] = EntryOutcome::Stale;
                }
            }
        }
        summary.sessions_written = written.sessions;
        summary.session_ids = written.session_ids;
        summary.rows_written = written.rows;
        Ok(Some(summary))
    }

    /// Resolves, measures and stores every segment's audio; returns the rows per snapshot.
    async fn store_audio(
        &self,
        batch: &[DecodedEntry],
        snapshots: &[CallSnapshot<'_>],
        summary: &mut IngestSummary,
    ) -> Result<Vec<Vec<SegmentRow>>, IngestError> {
        // Futures are built up front (not inside a stream combinator's closure) so the spawned
        // consumer future stays `Send` without higher-ranked lifetime trouble.
        let mut jobs = Vec::new();
        for (si, snap) in snapshots.iter().enumerate() {
            for &(seg, seq, entry) in snap.segments.values() {
                let spans = speech_spans(snap, seg);
                let fut =
                    self.store_segment(&batch[entry].report, seg, seq, &batch[entry].fields, spans);
                jobs.push(async move { (si, fut.await) });
            }
        }
        let results: Vec<(usize, Result<SegmentRow, IngestError>)> = stream::iter(jobs)
            .buffer_unordered(self.audio_concurrency)
            .collect()
            .await;
        let mut rows: Vec<Vec<SegmentRow>> = snapshots.iter().map(|_| Vec::new()).collect();
        for (si, row) in results {
            let row = row?;
            match row.status {
                SegmentStatus::Stored => summary.audio_stored += 1,
                SegmentStatus::Error => summary.audio_failed += 1,
                SegmentStatus::Missing => {}
            }
            rows[si].push(row);
        }
        Ok(rows)
    }

    async fn store_segment(
        &self,
        report: &SessionReport,
        seg: &AudioSegment,
        seq: i64,
        fields: &HashMap<String, Arc<Vec<u8>>>,
        spans: Vec<Span>,
    ) -> Result<SegmentRow, IngestError> {
        let mut row = SegmentRow::new(seg, seq);
        let audio_ref = seg.audio_ref();
        // 1. Get the bytes.
        let bytes: Arc<Vec<u8>> = match audio_ref {
            AudioRef::None => {
                return Ok(row.missing("the report carries no audio for this segment"));
            }
            AudioRef::Field(name) => match fields.get(name) {
                Some(b) => Arc::clone(b),
                None => {
                    return Ok(row.missing(format!("the stream entry has no field {name:?}")));
                }
            },
            AudioRef::B64(text) => {
                let text = text.clone();
                let decoded = tokio::task::spawn_blocking(move || {
                    base64::engine::general_purpose::STANDARD.decode(text.trim())
                })
                .await
                .map_err(|e| IngestError::Task(e.to_string()))?;
                match decoded {
                    Ok(b) => Arc::new(b),
                    Err(e) => return Ok(row.error(format!("audio.b64 is not valid base64: {e}"))),
                }
            }
            AudioRef::S3 { key, bucket } => {
                row.s3_key = Some(key.clone());
                row.bucket = bucket.clone();
                match self.store.get(bucket.as_deref(), key).await {
                    Ok(Some(b)) => Arc::new(b),
                    Ok(None) => {
                        return Ok(row.missing(format!(
                            "object {key:?} not found in {}",
                            bucket.as_deref().unwrap_or("the audio store")
                        )));
                    }
                    Err(e @ StorageError::InvalidKey { .. }) => return Ok(row.error(e.to_string())),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        row.size_bytes = Some(bytes.len() as i64);

        // 2. Decode, measure and name our copy off the reactor: the key's content hash reads every
        //    byte too. Agent-uploaded objects stay where they are (no copy, no key).
        let full_call = !spans.is_empty();
        let copy = (!matches!(audio_ref, AudioRef::S3 { .. })).then(|| {
            (
                self.key_prefix.clone(),
                report.tenant_id.clone(),
                report.call_id.clone(),
                seg.segment_id.clone(),
            )
        });
        let (bytes, measured, key) = tokio::task::spawn_blocking(move || {
            let m = audio::analyze_wav_spans(&bytes, &spans);
            let key = copy.map(|(prefix, tenant, call, segment)| {
                segment_key(&prefix, &tenant, &call, &segment, &bytes)
            });
            (bytes, m, key)
        })
        .await
        .map_err(|e| IngestError::Task(e.to_string()))?;

        // 3. Store our copy. Broken audio is kept too: what the agent actually sent is evidence. The
        //    upload is a task of its own, so the S3 client's checksums of the body (Content-MD5,
        //    SHA-256 signing) run on any worker in parallel with other segments' instead of on the
        //    batch's task one after another.
        if let Some(key) = key {
            let store = self.store.clone();
            let put = async move { store.put(&key, &bytes, "audio/wav").await.map(|()| key) };
            let key = tokio::spawn(put)
                .await
                .map_err(|e| IngestError::Task(format!("audio upload task failed: {e}")))??;
            row.s3_key = Some(key);
        }
        Ok(match measured {
            Ok((m, levels)) => {
                if full_call {
                    row.speech_levels = serde_json::to_value(&levels).ok();
                }
                row.stored(&m)
            }
            Err(e) => row.error(e.to_string()),
        })
    }
}

/// For a full-call recording, the user's turns as spans relative to the recording's first sample
/// (what the noise-suppression check compares before and after); empty for other segments.
fn speech_spans(snap: &CallSnapshot<'_>, seg: &AudioSegment) -> Vec<Span> {
    if !matches!(
        seg.segment_type,
        SegmentType::FullPreRnnoise | SegmentType::FullPostRnnoise
    ) {
        return Vec::new();
    }
    let offset = seg.offset_ms.unwrap_or(0);
    snap.turns
        .values()
        .filter(|(t, _)| t.role == Role::User)
        .filter_map(|(t, _)| Some((t.index, t.start_ms? - offset, t.end_ms? - offset)))
        .collect()
}

/// Merges one call's live entries (ascending seq) into a snapshot: a later report replaces what an
/// earlier one said about the same key; keys only an earlier report mentions are kept.
fn merge(batch: &[DecodedEntry], idxs: Vec<usize>) -> CallSnapshot<'_> {
    let head_idx = *idxs.last().unwrap_or(&0);
    let mut snap = CallSnapshot {
        head: &batch[head_idx].report,
        turns: BTreeMap::new(),
        events: BTreeMap::new(),
        segments: BTreeMap::new(),
        entries: Vec::with_capacity(idxs.len()),
    };
    for i in idxs {
        let r = &batch[i].report;
        // A row a later report repeats unchanged keeps the seq of the report that last changed it,
        // exactly as one-by-one arrival leaves it.
        for t in &r.turns {
            if snap.turns.get(&t.index).is_none_or(|(old, _)| *old != t) {
                snap.turns.insert(t.index, (t, r.seq));
            }
        }
        for e in &r.events {
            if snap.events.get(&e.seq).is_none_or(|(old, _)| *old != e) {
                snap.events.insert(e.seq, (e, r.seq));
            }
        }
        for s in &r.audio_segments {
            snap.segments.insert(s.segment_id.as_str(), (s, r.seq, i));
        }
        snap.entries.push(i);
    }
    snap
}

/// Whether a segment's audio is stored, missing or failed (the `audio_segments.status` enum).
pub use entity::audio_segments::Status as SegmentStatus;

impl SegmentRow {
    fn new(seg: &AudioSegment, seq: i64) -> Self {
        SegmentRow {
            segment_id: seg.segment_id.clone(),
            segment_type: seg.segment_type.as_str(),
            turn_index: seg.turn_index,
            offset_ms: seg.offset_ms,
            duration_ms: seg.duration_ms,
            s3_key: None,
            bucket: None,
            source: seg.audio_ref().source(),
            size_bytes: None,
            metrics: None,
            speech_levels: None,
            status: SegmentStatus::Missing,
            error: None,
            report_seq: seq,
        }
    }

    fn missing(mut self, why: impl Into<String>) -> Self {
        self.status = SegmentStatus::Missing;
        self.error = Some(why.into());
        self
    }

    fn error(mut self, why: impl Into<String>) -> Self {
        self.status = SegmentStatus::Error;
        self.error = Some(why.into());
        self
    }

    fn stored(mut self, m: &AudioMetrics) -> Self {
        self.status = SegmentStatus::Stored;
        if self.duration_ms.is_none() {
            self.duration_ms = Some(m.duration_ms.round() as i64);
        }
        self.metrics = Some(m.clone());
        self
    }
}

/// Live events of one commit: a call's first report, each inserted or changed turn, each new
/// diagnosis issue, the final report. Stale and duplicate reports won nothing and produce nothing.
fn live_events(
    snapshots: &[CallSnapshot<'_>],
    written: &persist::Written,
    stored: &std::collections::HashMap<String, (i64, bool)>,
) -> Vec<crate::live::LiveEvent> {
    use crate::live::LiveEvent;
    use serde_json::json;
    let mut out = Vec::new();
    for (snap, &won) in snapshots.iter().zip(&written.won) {
        if !won {
            continue;
        }
        let h = snap.head;
        let Some(&sid) = written.ids.get(&h.call_id) else {
            continue;
        };
        let ev = |kind: &'static str, data: serde_json::Value| {
            LiveEvent::new(
                kind,
                sid,
                &h.call_id,
                &h.tenant_id,
                h.agent_id.as_deref(),
                data,
            )
        };
        let before = stored.get(&h.call_id);
        if before.is_none() {
            out.push(ev(
                "call_started",
                json!({"started_at": h.started_at, "report_seq": h.seq}),
            ));
        }
        if let Some(turns) = written.changed_turns.get(&sid) {
            let mut turns = turns.clone();
            turns.sort_unstable();
            for idx in turns {
                let Some((t, _)) = snap.turns.get(&idx) else {
                    continue;
                };
                out.push(ev(
                    "turn",
                    json!({
                        "turn_index": t.index, "role": t.role.as_str(), "content": t.content,
                        "start_ms": t.start_ms, "end_ms": t.end_ms, "interrupted": t.interrupted,
                        "latency": {
                            "end_of_turn_delay_ms": t.end_of_turn_delay_ms,
                            "transcription_delay_ms": t.transcription_delay_ms,
                            "llm_ttft_ms": t.llm_ttft_ms, "tts_ttfb_ms": t.tts_ttfb_ms,
                            "e2e_latency_ms": t.e2e_latency_ms,
                        },
                    }),
                ));
            }
        }
        if let Some(issues) = written.new_issues.get(&sid) {
            for i in issues {
                out.push(ev(
                    "issue_detected",
                    json!({"code": i.code, "severity": i.severity, "title": i.title, "turn_index": i.turn_index, "at_ms": i.at_ms}),
                ));
            }
        }
        if h.is_final() && !before.is_some_and(|(_, f)| *f) {
            let issues = written.new_issues.get(&sid).map_or(0, Vec::len);
            out.push(ev(
                "call_ended",
                json!({
                    "reason": "final_report",
                    "duration_seconds": h.duration_seconds,
                    "ended_at": h.ended_at,
                    "outcome": {"close_reason": h.outcome.close_reason, "was_transferred": h.outcome.was_transferred, "error": h.outcome.error},
                                        "new_issues": issues,
                    "issue_summary": written.issue_summaries.get(&sid).cloned().flatten(),
                }),
            ));
        }
    }
    out
}
