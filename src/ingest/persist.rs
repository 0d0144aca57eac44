//! Writing merged snapshots in one transaction: multi-row upserts keyed by the contract's natural keys,
//! guarded by `report_seq` so an older report can never overwrite a newer one, even when two consumers
//! race on the same call (the session upsert row-locks the call until commit).

use super::contract::SessionReport;
use super::pipeline::{CallSnapshot, SegmentStatus};
use crate::audio::AudioMetrics;
use chrono::Utc;
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, session_events as ev,
};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, Value};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Statement, TransactionTrait,
};
use std::collections::HashMap;
use uuid::Uuid;

/// An audio segment's row, measured and stored (or not, with the reason).
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub segment_id: String,
    pub segment_type: &'static str,
    pub turn_index: Option<i64>,
    pub offset_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub s3_key: Option<String>,
    pub bucket: Option<String>,
    pub source: &'static str,
    pub size_bytes: Option<i64>,
    pub metrics: Option<AudioMetrics>,
    pub status: SegmentStatus,
    pub error: Option<String>,
    pub report_seq: i64,
}

pub(super) struct Written {
    /// Per snapshot: false when a newer report of the call was committed first (nothing written).
    pub won: Vec<bool>,
    pub sessions: u64,
    pub rows: u64,
}

/// Rows per statement, keeping every statement under PostgreSQL's 65,535 and SQLite's 32,766
/// bind-parameter limits.
const MAX_PARAMS: usize = 30_000;

/// `seq` of the stored report of each call that has one.
pub(super) async fn stored_seqs<'a>(
    db: &DatabaseConnection,
    call_ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>, DbErr> {
    let ids: Vec<&str> = call_ids.collect();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let rows: Vec<(String, i64)> = cs::Entity::find()
            .select_only()
            .column(cs::Column::CallId)
            .column(cs::Column::ReportSeq)
            .filter(cs::Column::CallId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

fn build_err(e: sea_orm::sea_query::error::Error) -> DbErr {
    DbErr::Custom(format!("cannot build statement: {e}"))
}

/// `ON CONFLICT (keys) DO UPDATE SET <cols> = excluded.<cols> WHERE <table>.report_seq <op> excluded.report_seq`
fn guarded_upsert<T, C>(
    table: T,
    keys: &[C],
    update: &[C],
    seq_col: C,
    strictly_newer: bool,
) -> OnConflict
where
    T: sea_orm::sea_query::IntoIden + Copy,
    C: sea_orm::sea_query::IntoIden + Copy,
{
    let current = Expr::col((table, seq_col));
    let incoming = Expr::col((Alias::new("excluded"), seq_col));
    let guard = if strictly_newer {
        current.lt(incoming)
    } else {
        current.lte(incoming)
    };
    OnConflict::columns(keys.iter().copied())
        .update_columns(update.iter().copied())
        .action_and_where(guard)
        .to_owned()
}

const SESSION_COLS: [cs::Column; 29] = [
    cs::Column::Id,
    cs::Column::CallId,
    cs::Column::RoomId,
    cs::Column::JobId,
    cs::Column::TenantId,
    cs::Column::AgentId,
    cs::Column::ChannelType,
    cs::Column::SttProvider,
    cs::Column::SttModel,
    cs::Column::LlmProvider,
    cs::Column::LlmModel,
    cs::Column::TtsProvider,
    cs::Column::TtsModel,
    cs::Column::VadThreshold,
    cs::Column::NoiseSuppressionEnabled,
    cs::Column::RnnoiseEnabled,
    cs::Column::StartedAt,
    cs::Column::EndedAt,
    cs::Column::DurationSeconds,
    cs::Column::CloseReason,
    cs::Column::WasTransferred,
    cs::Column::Error,
    cs::Column::TotalUserTurns,
    cs::Column::TotalAgentTurns,
    cs::Column::ReportSeq,
    cs::Column::IsFinal,
    cs::Column::HasNearMiss,
    cs::Column::CreatedAt,
    cs::Column::UpdatedAt,
];

/// Columns a newer report replaces (id, call_id and created_at stay; aggregates are recomputed after).
const SESSION_UPDATE_COLS: [cs::Column; 22] = [
    cs::Column::RoomId,
    cs::Column::JobId,
    cs::Column::TenantId,
    cs::Column::AgentId,
    cs::Column::ChannelType,
    cs::Column::SttProvider,
    cs::Column::SttModel,
    cs::Column::LlmProvider,
    cs::Column::LlmModel,
    cs::Column::TtsProvider,
    cs::Column::TtsModel,
    cs::Column::VadThreshold,
    cs::Column::NoiseSuppressionEnabled,
    cs::Column::RnnoiseEnabled,
    cs::Column::StartedAt,
    cs::Column::EndedAt,
    cs::Column::DurationSeconds,
    cs::Column::CloseReason,
    cs::Column::WasTransferred,
    cs::Column::Error,
    cs::Column::ReportSeq,
    cs::Column::IsFinal,
];

fn session_values(r: &SessionReport, now: chrono::DateTime<Utc>) -> Vec<Expr> {
    let duration = r.duration_seconds.or_else(|| {
        r.ended_at
            .map(|end| std::cmp::max((end - r.started_at).num_milliseconds(), 0) as f64 / 1000.0)
    });
    let p = &r.pipeline;
    let v: [Value; 29] = [
        Uuid::new_v4().into(),
        r.call_id.clone().into(),
        r.room_id.clone().into(),
        r.job_id.clone().into(),
        r.tenant_id.clone().into(),
        r.agent_id.clone().into(),
        r.channel_type.clone().into(),
        p.stt.provider.clone().into(),
        p.stt.model.clone().into(),
        p.llm.provider.clone().into(),
        p.llm.model.clone().into(),
        p.tts.provider.clone().into(),
        p.tts.model.clone().into(),
        p.vad.threshold.into(),
        p.vad.noise_suppression_enabled.into(),
        p.vad.rnnoise_enabled.into(),
        r.started_at.into(),
        r.ended_at.into(),
        duration.into(),
        r.outcome.close_reason.clone().into(),
        r.outcome.was_transferred.into(),
        r.outcome.error.clone().into(),
        0i32.into(),
        0i32.into(),
        r.seq.into(),
        r.is_final().into(),
        false.into(),
        now.into(),
        now.into(),
    ];
    v.into_iter().map(Expr::val).collect()
}

const TURN_COLS: [ct::Column; 15] = [
    ct::Column::SessionId,
    ct::Column::TurnIndex,
    ct::Column::Role,
    ct::Column::Content,
    ct::Column::StartMs,
    ct::Column::EndMs,
    ct::Column::Interrupted,
    ct::Column::SttConfidence,
    ct::Column::TranscriptionDelayMs,
    ct::Column::EndOfTurnDelayMs,
    ct::Column::LlmTtftMs,
    ct::Column::TtsTtfbMs,
    ct::Column::E2eLatencyMs,
    ct::Column::ToolCalls,
    ct::Column::ReportSeq,
];

const EVENT_COLS: [ev::Column; 7] = [
    ev::Column::SessionId,
    ev::Column::Seq,
    ev::Column::EventType,
    ev::Column::AtMs,
    ev::Column::TurnIndex,
    ev::Column::Data,
    ev::Column::ReportSeq,
];

const SEGMENT_COLS: [seg::Column; 22] = [
    seg::Column::SessionId,
    seg::Column::SegmentId,
    seg::Column::SegmentType,
    seg::Column::TurnIndex,
    seg::Column::OffsetMs,
    seg::Column::DurationMs,
    seg::Column::S3Key,
    seg::Column::Bucket,
    seg::Column::Source,
    seg::Column::SizeBytes,
    seg::Column::SampleRate,
    seg::Column::Channels,
    seg::Column::BitsPerSample,
    seg::Column::DecodedDurationMs,
    seg::Column::RmsMean,
    seg::Column::RmsPeak,
    seg::Column::SnrEstimate,
    seg::Column::PeakDbfs,
    seg::Column::ClippedRatio,
    seg::Column::Status,
    seg::Column::Error,
    seg::Column::ReportSeq,
];

fn json(v: Option<serde_json::Value>) -> Value {
    Value::Json(v.map(Box::new))
}

/// Multi-row guarded upserts of `rows`, chunked under the bind-parameter limit.
async fn upsert_rows<T, C, X>(
    c: &X,
    table: T,
    cols: &[C],
    keys: &[C],
    seq_col: C,
    rows: Vec<Vec<Expr>>,
) -> Result<u64, DbErr>
where
    T: sea_orm::sea_query::IntoIden + Copy,
    C: sea_orm::sea_query::IntoIden + sea_orm::IdenStatic + Copy,
    X: ConnectionTrait,
{
    let update: Vec<C> = cols
        .iter()
        .copied()
        .filter(|col| !keys.iter().any(|k| k.as_str() == col.as_str()))
        .collect();
    let per_stmt = (MAX_PARAMS / cols.len()).max(1);
    let mut n = 0u64;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = Query::insert();
        q.into_table(table).columns(cols.iter().copied());
        for row in rows.by_ref().take(per_stmt) {
            q.values(row).map_err(build_err)?;
        }
        q.on_conflict(guarded_upsert(table, keys, &update, seq_col, false));
        n += c.execute(&q).await?.rows_affected();
    }
    Ok(n)
}

/// Writes every snapshot in one transaction and recomputes the sessions' aggregates.
pub(super) async fn write_snapshots(
    db: &DatabaseConnection,
    snapshots: &[CallSnapshot<'_>],
    segment_rows: Vec<Vec<SegmentRow>>,
) -> Result<Written, DbErr> {
    let txn = db.begin().await?;
    let now = Utc::now();

    // 1. Sessions: the guarded upsert returns only the calls this batch is newest for.
    let mut ids: HashMap<String, Uuid> = HashMap::with_capacity(snapshots.len());
    let update: Vec<cs::Column> = SESSION_UPDATE_COLS.to_vec();
    for chunk in snapshots.chunks(MAX_PARAMS / SESSION_COLS.len()) {
        let mut q = Query::insert();
        q.into_table(cs::Entity).columns(SESSION_COLS);
        for snap in chunk {
            q.values(session_values(snap.head, now))
                .map_err(build_err)?;
        }
        let mut on_conflict = guarded_upsert(
            cs::Entity,
            &[cs::Column::CallId],
            &update,
            cs::Column::ReportSeq,
            true,
        );
        on_conflict.value(cs::Column::UpdatedAt, Expr::val(now));
        q.on_conflict(on_conflict);
        q.returning(Query::returning().columns([cs::Column::Id, cs::Column::CallId]));
        for row in txn.query_all(&q).await? {
            let id: Uuid = row.try_get("", "id")?;
            let call_id: String = row.try_get("", "call_id")?;
            ids.insert(call_id, id);
        }
    }
    let won: Vec<bool> = snapshots
        .iter()
        .map(|s| ids.contains_key(&s.head.call_id))
        .collect();
    let mut rows_written = ids.len() as u64;

    // 2. Children of the calls we won.
    let mut turns = Vec::new();
    let mut events = Vec::new();
    let mut segments = Vec::new();
    for ((snap, segs), &w) in snapshots.iter().zip(segment_rows).zip(&won) {
        if !w {
            continue;
        }
        let sid = ids[&snap.head.call_id];
        for (t, seq) in snap.turns.values() {
            let tool_calls = t.tool_calls.as_ref().map(|calls| {
                serde_json::Value::Array(
                    calls
                        .iter()
                        .cloned()
                        .map(serde_json::Value::Object)
                        .collect(),
                )
            });
            let v: [Value; 15] = [
                sid.into(),
                t.index.into(),
                t.role.as_str().into(),
                t.content.clone().into(),
                t.start_ms.into(),
                t.end_ms.into(),
                t.interrupted.into(),
                t.stt_confidence.into(),
                t.transcription_delay_ms.into(),
                t.end_of_turn_delay_ms.into(),
                t.llm_ttft_ms.into(),
                t.tts_ttfb_ms.into(),
                t.e2e_latency_ms.into(),
                json(tool_calls),
                (*seq).into(),
            ];
            turns.push(v.into_iter().map(Expr::val).collect());
        }
        for (e, seq) in snap.events.values() {
            let v: [Value; 7] = [
                sid.into(),
                e.seq.into(),
                e.event_type.clone().into(),
                e.at_ms.into(),
                e.turn_index.into(),
                json(e.data.clone().filter(|d| !d.is_null())),
                (*seq).into(),
            ];
            events.push(v.into_iter().map(Expr::val).collect());
        }
        for s in segs {
            let m = s.metrics.as_ref();
            let v: [Value; 22] = [
                sid.into(),
                s.segment_id.into(),
                s.segment_type.into(),
                s.turn_index.into(),
                s.offset_ms.into(),
                s.duration_ms.into(),
                s.s3_key.into(),
                s.bucket.into(),
                s.source.into(),
                s.size_bytes.into(),
                m.map(|m| m.sample_rate as i32).into(),
                m.map(|m| i32::from(m.channels)).into(),
                m.map(|m| i32::from(m.bits_per_sample)).into(),
                m.map(|m| m.duration_ms).into(),
                m.map(|m| m.rms_mean).into(),
                m.map(|m| m.rms_peak).into(),
                m.and_then(|m| m.snr_estimate).into(),
                m.and_then(|m| m.peak_dbfs).into(),
                m.map(|m| m.clipped_ratio).into(),
                s.status.as_str().into(),
                s.error.into(),
                s.report_seq.into(),
            ];
            segments.push(v.into_iter().map(Expr::val).collect());
        }
    }
    rows_written += upsert_rows(
        &txn,
        ct::Entity,
        &TURN_COLS,
        &[ct::Column::SessionId, ct::Column::TurnIndex],
        ct::Column::ReportSeq,
        turns,
    )
    .await?;
    rows_written += upsert_rows(
        &txn,
        ev::Entity,
        &EVENT_COLS,
        &[ev::Column::SessionId, ev::Column::Seq],
        ev::Column::ReportSeq,
        events,
    )
    .await?;
    rows_written += upsert_rows(
        &txn,
        seg::Entity,
        &SEGMENT_COLS,
        &[seg::Column::SessionId, seg::Column::SegmentId],
        seg::Column::ReportSeq,
        segments,
    )
    .await?;

    // 3. Aggregates over everything stored for the call (rows a newer snapshot omits still count).
    let won_ids: Vec<Uuid> = ids.values().copied().collect();
    for chunk in won_ids.chunks(1000) {
        update_aggregates(&txn, chunk).await?;
    }
    txn.commit().await?;
    Ok(Written {
        won,
        sessions: ids.len() as u64,
        rows: rows_written,
    })
}

async fn update_aggregates<C: ConnectionTrait>(c: &C, ids: &[Uuid]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = c.get_database_backend();
    let placeholders: Vec<String> = (1..=ids.len())
        .map(|i| match backend {
            DbBackend::Postgres => format!("${i}"),
            _ => "?".to_string(),
        })
        .collect();
    let sql = format!(
        "UPDATE call_sessions SET \
         total_user_turns = (SELECT COUNT(*) FROM conversation_turns t WHERE t.session_id = call_sessions.id AND t.role = 'user'), \
         total_agent_turns = (SELECT COUNT(*) FROM conversation_turns t WHERE t.session_id = call_sessions.id AND t.role = 'assistant'), \
         avg_e2e_latency_ms = (SELECT AVG(t.e2e_latency_ms) FROM conversation_turns t WHERE t.session_id = call_sessions.id), \
         has_near_miss = (EXISTS (SELECT 1 FROM session_events e WHERE e.session_id = call_sessions.id AND e.event_type = 'near_miss') \
                       OR EXISTS (SELECT 1 FROM audio_segments a WHERE a.session_id = call_sessions.id AND a.segment_type = 'near_miss')) \
         WHERE id IN ({})",
        placeholders.join(", ")
    );
    let values: Vec<Value> = ids.iter().map(|&id| id.into()).collect();
    c.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}
