//! Sessions, the one query layer the API, the UI and the CLI share: the filtered list (newest first,
//! cursor pagination), a session's detail with its latency summary, its timeline, conversation and
//! diagnosis. Every query is scoped to the caller's tenant; handlers only parse and render.

use crate::error::{Error, storable};
use crate::tenancy::Scope;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, diagnosis_issues as di,
    session_events as ev,
};
use sea_orm::sea_query::{Expr, ExprTrait, Query as SqlQuery};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Severity filter values.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeverityFilter {
    Critical,
    Warning,
    Info,
}

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionSource {
    /// Turned from a call recording (`channel_type` `recording`).
    Recording,
    /// Reported by an agent on the stream.
    Agent,
}

/// A session in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    pub id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    pub channel_type: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub is_final: bool,
    pub report_seq: i64,
    pub total_user_turns: i32,
    pub total_agent_turns: i32,
    pub avg_e2e_latency_ms: Option<f64>,
    pub has_issues: bool,
    pub has_near_miss: bool,
    pub issue_summary: Option<String>,
}

impl From<&cs::Model> for SessionSummary {
    fn from(m: &cs::Model) -> Self {
        SessionSummary {
            id: m.id,
            call_id: m.call_id.clone(),
            tenant_id: m.tenant_id.clone(),
            agent_id: m.agent_id.clone(),
            channel_type: m.channel_type.clone(),
            started_at: m.started_at,
            ended_at: m.ended_at,
            duration_seconds: m.duration_seconds,
            is_final: m.is_final,
            report_seq: m.report_seq,
            total_user_turns: m.total_user_turns,
            total_agent_turns: m.total_agent_turns,
            avg_e2e_latency_ms: m.avg_e2e_latency_ms,
            has_issues: m.has_issues,
            has_near_miss: m.has_near_miss,
            issue_summary: m.issue_summary.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": null}))]
pub struct SessionList {
    pub items: Vec<SessionSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const MAX_LIMIT: u32 = 200;

/// A list's page size: 1–200, 50 when not given.
pub fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    Ok(limit)
}

/// Which sessions: the filters of the session list (also how a batch analysis picks its sessions).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    pub call_id: Option<String>,
    pub agent_id: Option<String>,
    /// Sessions with (true) or without (false) any warning or critical issue.
    pub has_issues: Option<bool>,
    /// Sessions with at least one issue of this severity.
    pub severity: Option<SeverityFilter>,
    /// RFC 3339; sessions that started at or after.
    pub started_after: Option<DateTime<Utc>>,
    /// RFC 3339; sessions that started before.
    pub started_before: Option<DateTime<Utc>>,
    /// `recording` (analysed from a call recording) or `agent` (reported by an agent).
    #[serde(default)]
    pub source: Option<SessionSource>,
}

/// The sessions `filter` selects within `scope`; `None` when it can match nothing stored.
pub fn filter_sessions(scope: &Scope, f: &SessionFilter) -> Option<sea_orm::Select<cs::Entity>> {
    if [&f.tenant_id, &f.call_id, &f.agent_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !storable(v)))
    {
        return None;
    }
    let mut q = cs::Entity::find();
    if let Some(t) = scope.tenant() {
        q = q.filter(cs::Column::TenantId.eq(t));
    }
    if let Some(t) = &f.tenant_id {
        q = q.filter(cs::Column::TenantId.eq(t.as_str()));
    }
    if let Some(c) = &f.call_id {
        q = q.filter(cs::Column::CallId.eq(c.as_str()));
    }
    if let Some(a) = &f.agent_id {
        q = q.filter(cs::Column::AgentId.eq(a.as_str()));
    }
    if let Some(h) = f.has_issues {
        q = q.filter(cs::Column::HasIssues.eq(h));
    }
    if let Some(sev) = f.severity {
        let name = match sev {
            SeverityFilter::Critical => "critical",
            SeverityFilter::Warning => "warning",
            SeverityFilter::Info => "info",
        };
        let sub = SqlQuery::select()
            .column(di::Column::SessionId)
            .from(di::Entity)
            .and_where(Expr::col(di::Column::Severity).eq(name))
            .to_owned();
        q = q.filter(cs::Column::Id.in_subquery(sub));
    }
    if let Some(a) = f.started_after {
        q = q.filter(cs::Column::StartedAt.gte(a));
    }
    if let Some(b) = f.started_before {
        q = q.filter(cs::Column::StartedAt.lt(b));
    }
    match f.source {
        Some(SessionSource::Recording) => q = q.filter(cs::Column::ChannelType.eq("recording")),
        Some(SessionSource::Agent) => {
            q = q.filter(
                Condition::any()
                    .add(cs::Column::ChannelType.is_null())
                    .add(cs::Column::ChannelType.ne("recording")),
            )
        }
        None => {}
    }
    Some(q)
}

/// One page of sessions matching `filter`, newest first, after `cursor`.
pub async fn list(
    db: &DatabaseConnection,
    scope: &Scope,
    filter: &SessionFilter,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<SessionList, Error> {
    let limit = page_limit(limit)?;
    let Some(q) = filter_sessions(scope, filter) else {
        return Ok(SessionList {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    let (rows, next_cursor) = crate::paging::keyset_page(
        db,
        q,
        (cs::Column::StartedAt, cs::Column::Id),
        cursor,
        limit,
        |m| (m.started_at, m.id),
    )
    .await?;
    Ok(SessionList {
        items: rows.iter().map(SessionSummary::from).collect(),
        next_cursor,
    })
}

/// A session the caller may see, or 404 (another tenant's session is indistinguishable from a missing one).
pub async fn load(db: &DatabaseConnection, scope: &Scope, id: Uuid) -> Result<cs::Model, Error> {
    match cs::Entity::find_by_id(id).one(db).await? {
        Some(s) if scope.allows(&s.tenant_id) => Ok(s),
        _ => Err(Error::NotFound(format!("session {id}"))),
    }
}

/// The session of a call the caller may see, or 404.
pub async fn load_by_call(
    db: &DatabaseConnection,
    scope: &Scope,
    call_id: &str,
) -> Result<cs::Model, Error> {
    let not_found = || Error::NotFound(format!("call {call_id:?}"));
    if !storable(call_id) {
        return Err(not_found());
    }
    cs::Entity::find()
        .filter(cs::Column::CallId.eq(call_id))
        .one(db)
        .await?
        .filter(|s| scope.allows(&s.tenant_id))
        .ok_or_else(not_found)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Component {
    pub provider: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Vad {
    pub threshold: Option<f64>,
    pub noise_suppression_enabled: Option<bool>,
    pub rnnoise_enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pipeline {
    pub stt: Component,
    pub llm: Component,
    pub tts: Component,
    pub vad: Vad,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Outcome {
    pub close_reason: Option<String>,
    pub was_transferred: Option<bool>,
    pub error: Option<String>,
}

/// Distribution of one latency component over the session's turns (ms).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct LatencyStats {
    pub count: usize,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

impl LatencyStats {
    /// Mean and linearly interpolated percentiles (numpy's default method).
    pub fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let pct = |q: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
        };
        LatencyStats {
            count: n,
            mean: (n > 0).then(|| v.iter().sum::<f64>() / n as f64),
            p50: pct(0.5),
            p95: pct(0.95),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatencySummary {
    pub transcription_delay_ms: LatencyStats,
    pub end_of_turn_delay_ms: LatencyStats,
    pub llm_ttft_ms: LatencyStats,
    pub tts_ttfb_ms: LatencyStats,
    pub e2e_latency_ms: LatencyStats,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11", "call_id": "call-0900001-0e4018bf", "tenant_id": "acme",
    "agent_id": "booking-bot", "channel_type": "webrtc", "started_at": "2038-10-24T00:12:00Z", "ended_at": "2038-10-24T00:12:29.132Z",
    "duration_seconds": 29.132, "is_final": true, "report_seq": 1, "total_user_turns": 4, "total_agent_turns": 4, "avg_e2e_latency_ms": 906.45,
    "has_issues": false, "has_near_miss": false, "issue_summary": null, "room_id": "RM_0e4018bf", "job_id": "AJ_0e4018bf",
    "pipeline": {"stt": {"provider": "deepgram", "model": "nova-3"}, "llm": {"provider": "openai", "model": "gpt-4o-mini"},
        "tts": {"provider": "cartesia", "model": "sonic-2"}, "vad": {"threshold": 0.5, "noise_suppression_enabled": true, "rnnoise_enabled": true}},
    "outcome": {"close_reason": "user_hangup", "was_transferred": false, "error": null},
    "latency": {"transcription_delay_ms": {"count": 4, "mean": 202.0, "p50": 219.6, "p95": 256.4},
        "end_of_turn_delay_ms": {"count": 4, "mean": 360.95, "p50": 330.6, "p95": 437.4},
        "llm_ttft_ms": {"count": 4, "mean": 276.7, "p50": 278.95, "p95": 296.1},
        "tts_ttfb_ms": {"count": 4, "mean": 268.8, "p50": 276.9, "p95": 342.9},
        "e2e_latency_ms": {"count": 4, "mean": 906.45, "p50": 903.45, "p95": 1040.4}},
    "created_at": "2038-10-24T00:12:30Z", "updated_at": "2038-10-24T00:12:30Z"}))]
pub struct SessionDetail {
    #[serde(flatten)]
    pub summary: SessionSummary,
    pub room_id: Option<String>,
    pub job_id: Option<String>,
    pub pipeline: Pipeline,
    pub outcome: Outcome,
    pub latency: LatencySummary,
    /// Talk time and ratio, interruptions, silences, response gaps …: from the recording's words for
    /// a recorded call, else from the turns' times (absent when no turn has both).
    pub conversation_metrics: Option<crate::conversation::ConversationMetrics>,
    /// The call's recording, when one was analysed or attached.
    pub recording_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A session's turns in order.
pub async fn turns_of(db: &DatabaseConnection, id: Uuid) -> Result<Vec<ct::Model>, Error> {
    Ok(ct::Entity::find()
        .filter(ct::Column::SessionId.eq(id))
        .order_by_asc(ct::Column::TurnIndex)
        .all(db)
        .await?)
}

/// The detail of a session from its row and turns.
pub fn detail(s: &cs::Model, turns: &[ct::Model]) -> SessionDetail {
    let stats =
        |f: fn(&ct::Model) -> Option<f64>| LatencyStats::of(turns.iter().filter_map(f).collect());
    SessionDetail {
        summary: SessionSummary::from(s),
        room_id: s.room_id.clone(),
        job_id: s.job_id.clone(),
        pipeline: Pipeline {
            stt: Component {
                provider: s.stt_provider.clone(),
                model: s.stt_model.clone(),
            },
            llm: Component {
                provider: s.llm_provider.clone(),
                model: s.llm_model.clone(),
            },
            tts: Component {
                provider: s.tts_provider.clone(),
                model: s.tts_model.clone(),
            },
            vad: Vad {
                threshold: s.vad_threshold,
                noise_suppression_enabled: s.noise_suppression_enabled,
                rnnoise_enabled: s.rnnoise_enabled,
            },
        },
        outcome: Outcome {
            close_reason: s.close_reason.clone(),
            was_transferred: s.was_transferred,
            error: s.error.clone(),
        },
        latency: LatencySummary {
            transcription_delay_ms: stats(|t| t.transcription_delay_ms),
            end_of_turn_delay_ms: stats(|t| t.end_of_turn_delay_ms),
            llm_ttft_ms: stats(|t| t.llm_ttft_ms),
            tts_ttfb_ms: stats(|t| t.tts_ttfb_ms),
            e2e_latency_ms: stats(|t| t.e2e_latency_ms),
        },
        conversation_metrics: metrics_of_turns(turns),
        recording_id: None,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

/// Conversation metrics from timed turns (`user` = customer, `assistant` = agent), dead air from
/// the default threshold.
pub fn metrics_of_turns(turns: &[ct::Model]) -> Option<crate::conversation::ConversationMetrics> {
    use crate::conversation::{AGENT, CUSTOMER, Input, Span};
    let input = Input::from_turns(turns.iter().filter_map(|t| {
        let role = if t.role == "user" { CUSTOMER } else { AGENT };
        Some((
            role.to_string(),
            Span {
                start_ms: t.start_ms?,
                end_ms: t.end_ms?,
            },
            t.content.split_whitespace().count(),
        ))
    }));
    if input.turns.is_empty() {
        return None;
    }
    let threshold = crate::diagnosis::Thresholds::default().dead_air_ms.round() as i64;
    Some(crate::conversation::compute(&input, threshold))
}

/// The detail of a session (its turns read for the latency summary; a recording's own metrics).
pub async fn detail_of(db: &DatabaseConnection, s: &cs::Model) -> Result<SessionDetail, Error> {
    let turns = turns_of(db, s.id).await?;
    let mut d = detail(s, &turns);
    if let Some(r) = crate::recordings::store::of_session(db, s.id).await? {
        d.recording_id = Some(r.id);
        if let Some(m) = r
            .conversation_metrics
            .and_then(|v| serde_json::from_value(v).ok())
        {
            d.conversation_metrics = Some(m);
        }
    }
    Ok(d)
}

/// What a timeline item is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Turn,
    Event,
    AudioSegment,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineItem {
    pub kind: TimelineKind,
    /// Offset from the session start (null when the agent reported none).
    pub at_ms: Option<i64>,
    /// Absolute time (`started_at` + `at_ms`).
    pub at: Option<DateTime<Utc>>,
    pub end_ms: Option<i64>,
    pub turn_index: Option<i64>,
    /// Event type, turn role or segment type.
    #[serde(rename = "type")]
    pub item_type: String,
    /// Event seq (events only).
    pub seq: Option<i64>,
    /// Segment id (audio segments only).
    pub segment_id: Option<String>,
    /// Turn text (turns only).
    pub text: Option<String>,
    /// Event data, a turn's latency, or a segment's status and metrics.
    pub data: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"session_id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11", "started_at": "2038-10-24T00:12:00Z", "items": [
    {"kind": "turn", "at_ms": 800, "at": "2038-10-24T00:12:00.800Z", "end_ms": 1802, "turn_index": 0, "type": "user", "seq": null, "segment_id": null,
        "text": "My account number is four four seven two.", "data": {"transcription_delay_ms": 110.7, "end_of_turn_delay_ms": 335.7, "llm_ttft_ms": null, "tts_ttfb_ms": null, "e2e_latency_ms": null}},
    {"kind": "event", "at_ms": 800, "at": "2038-10-24T00:12:00.800Z", "end_ms": null, "turn_index": 0, "type": "user_started_speaking", "seq": 0, "segment_id": null, "text": null, "data": null},
    {"kind": "audio_segment", "at_ms": 800, "at": "2038-10-24T00:12:00.800Z", "end_ms": 3846, "turn_index": 0, "type": "stt_input", "seq": null, "segment_id": "stt_input-0", "text": null,
        "data": {"status": "stored", "error": null, "duration_ms": 3046, "sample_rate": 16000, "rms_mean": 0.08, "snr_estimate": 31.2, "peak_dbfs": -6.1, "clipped_ratio": 0.0}}]}))]
pub struct TimelineResponse {
    pub session_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// In time order; items without a time come last.
    pub items: Vec<TimelineItem>,
}

/// A turn's latency fields.
pub fn turn_latency(t: &ct::Model) -> TurnLatency {
    TurnLatency {
        transcription_delay_ms: t.transcription_delay_ms,
        end_of_turn_delay_ms: t.end_of_turn_delay_ms,
        llm_ttft_ms: t.llm_ttft_ms,
        tts_ttfb_ms: t.tts_ttfb_ms,
        e2e_latency_ms: t.e2e_latency_ms,
    }
}

/// Everything stored of a session's content: turns, events (by seq) and audio segments.
#[derive(Debug, Clone)]
pub struct SessionParts {
    pub turns: Vec<ct::Model>,
    pub events: Vec<ev::Model>,
    pub segments: Vec<seg::Model>,
}

/// A session's turns, events and segments, read concurrently.
pub async fn parts(db: &DatabaseConnection, session_id: Uuid) -> Result<SessionParts, Error> {
    let (turns, events, segments) = tokio::try_join!(
        turns_of(db, session_id),
        async {
            Ok::<_, Error>(
                ev::Entity::find()
                    .filter(ev::Column::SessionId.eq(session_id))
                    .order_by_asc(ev::Column::Seq)
                    .all(db)
                    .await?,
            )
        },
        async {
            Ok::<_, Error>(
                seg::Entity::find()
                    .filter(seg::Column::SessionId.eq(session_id))
                    .order_by_asc(seg::Column::SegmentId)
                    .all(db)
                    .await?,
            )
        },
    )?;
    Ok(SessionParts {
        turns,
        events,
        segments,
    })
}

/// One stored audio segment of a session, by the id Atlas gave it.
pub async fn segment(
    db: &DatabaseConnection,
    session_id: Uuid,
    segment_id: &str,
) -> Result<Option<seg::Model>, Error> {
    if !storable(segment_id) {
        return Ok(None);
    }
    Ok(seg::Entity::find()
        .filter(seg::Column::SessionId.eq(session_id))
        .filter(seg::Column::SegmentId.eq(segment_id))
        .one(db)
        .await?)
}

/// Events, turns and audio segments merged in time order.
pub async fn timeline(
    db: &DatabaseConnection,
    session_id: Uuid,
    started_at: DateTime<Utc>,
) -> Result<TimelineResponse, Error> {
    let SessionParts {
        turns,
        events,
        segments,
    } = parts(db, session_id).await?;
    let at = |ms: Option<i64>| ms.map(|ms| started_at + ChronoDuration::milliseconds(ms));
    let mut items = Vec::with_capacity(turns.len() + events.len() + segments.len());
    for t in turns {
        let latency = serde_json::to_value(turn_latency(&t)).ok();
        items.push(TimelineItem {
            kind: TimelineKind::Turn,
            at_ms: t.start_ms,
            at: at(t.start_ms),
            end_ms: t.end_ms,
            turn_index: Some(t.turn_index),
            item_type: t.role,
            seq: None,
            segment_id: None,
            text: Some(t.content),
            data: latency,
        });
    }
    for e in events {
        items.push(TimelineItem {
            kind: TimelineKind::Event,
            at_ms: Some(e.at_ms),
            at: at(Some(e.at_ms)),
            end_ms: None,
            turn_index: e.turn_index,
            item_type: e.event_type,
            seq: Some(e.seq),
            segment_id: None,
            text: None,
            data: e.data,
        });
    }
    for g in segments {
        let end_ms = g.offset_ms.zip(g.duration_ms).map(|(o, d)| o + d);
        let data = serde_json::json!({"status": g.status, "error": g.error, "duration_ms": g.duration_ms, "sample_rate": g.sample_rate,
            "rms_mean": g.rms_mean, "snr_estimate": g.snr_estimate, "peak_dbfs": g.peak_dbfs, "clipped_ratio": g.clipped_ratio});
        items.push(TimelineItem {
            kind: TimelineKind::AudioSegment,
            at_ms: g.offset_ms,
            at: at(g.offset_ms),
            end_ms,
            turn_index: g.turn_index,
            item_type: g.segment_type,
            seq: None,
            segment_id: Some(g.segment_id),
            text: None,
            data: Some(data),
        });
    }
    items.sort_by(|a, b| {
        (a.at_ms.is_none(), a.at_ms, a.kind, a.seq, a.turn_index).cmp(&(
            b.at_ms.is_none(),
            b.at_ms,
            b.kind,
            b.seq,
            b.turn_index,
        ))
    });
    Ok(TimelineResponse {
        session_id,
        started_at,
        items,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnLatency {
    pub transcription_delay_ms: Option<f64>,
    pub end_of_turn_delay_ms: Option<f64>,
    pub llm_ttft_ms: Option<f64>,
    pub tts_ttfb_ms: Option<f64>,
    pub e2e_latency_ms: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationTurn {
    pub turn_index: i64,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub interrupted: Option<bool>,
    pub stt_confidence: Option<f64>,
    pub latency: TurnLatency,
    /// As the agent reported them: name, arguments, result, error, duration_ms.
    pub tool_calls: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"session_id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11", "turns": [
    {"turn_index": 0, "role": "user", "content": "My account number is four four seven two.", "start_ms": 800, "end_ms": 1802, "interrupted": false, "stt_confidence": 0.946,
        "latency": {"transcription_delay_ms": 110.7, "end_of_turn_delay_ms": 335.7, "llm_ttft_ms": null, "tts_ttfb_ms": null, "e2e_latency_ms": null}, "tool_calls": null},
    {"turn_index": 1, "role": "assistant", "content": "Thanks. Your current balance is two hundred and twelve dollars.", "start_ms": 2761, "end_ms": 6226, "interrupted": false, "stt_confidence": null,
        "latency": {"transcription_delay_ms": null, "end_of_turn_delay_ms": null, "llm_ttft_ms": 296.1, "tts_ttfb_ms": 327.4, "e2e_latency_ms": 959.2},
        "tool_calls": [{"name": "lookup_account", "arguments": {"account": "4472"}, "result": {"ok": true}, "error": null, "duration_ms": 127.3}]}]}))]
pub struct ConversationResponse {
    pub session_id: Uuid,
    pub turns: Vec<ConversationTurn>,
}

/// Turns in order with the per-turn latency breakdown and tool calls.
pub fn conversation(session_id: Uuid, turns: Vec<ct::Model>) -> ConversationResponse {
    let turns = turns
        .into_iter()
        .map(|t| ConversationTurn {
            latency: turn_latency(&t),
            turn_index: t.turn_index,
            role: t.role,
            content: t.content,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            interrupted: t.interrupted,
            stt_confidence: t.stt_confidence,
            tool_calls: t.tool_calls,
        })
        .collect();
    ConversationResponse { session_id, turns }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssueResponse {
    /// Stable snake_case rule code.
    pub code: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub title: String,
    pub detail: Option<String>,
    pub turn_index: Option<i64>,
    pub at_ms: Option<i64>,
    /// Measured values and the thresholds they crossed.
    pub evidence: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"session_id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11", "has_issues": true, "has_near_miss": false,
    "issue_summary": "1 critical: dropped utterance at 00:41",
    "issues": [{"code": "dropped_utterance", "severity": "critical", "title": "Dropped utterance at 00:41: 1500 ms of user speech, no transcript",
        "detail": "The VAD heard the user, but no user turn or final transcript followed.", "turn_index": null, "at_ms": 41000,
        "evidence": {"speech_duration_ms": 1500.0, "window_ms": 5000.0, "min_speech_ms": 700.0}}]}))]
pub struct DiagnosisResponse {
    pub session_id: Uuid,
    pub has_issues: bool,
    pub has_near_miss: bool,
    pub issue_summary: Option<String>,
    /// Most severe first, then by time.
    pub issues: Vec<IssueResponse>,
}

/// A session's issues, most severe first, with evidence.
pub async fn diagnosis(db: &DatabaseConnection, s: &cs::Model) -> Result<DiagnosisResponse, Error> {
    let issues = di::Entity::find()
        .filter(di::Column::SessionId.eq(s.id))
        .order_by_asc(di::Column::Ordinal)
        .all(db)
        .await?
        .into_iter()
        .map(|i| IssueResponse {
            code: i.code,
            severity: i.severity,
            title: i.title,
            detail: i.detail,
            turn_index: i.turn_index,
            at_ms: i.at_ms,
            evidence: i.evidence,
        })
        .collect();
    Ok(DiagnosisResponse {
        session_id: s.id,
        has_issues: s.has_issues,
        has_near_miss: s.has_near_miss,
        issue_summary: s.issue_summary.clone(),
        issues,
    })
}

/// What a list row shows beside the session: its issues by severity, its analytics' sentiment and
/// lead score, and its end-to-end p95.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Badges {
    pub critical: i64,
    pub warning: i64,
    pub info: i64,
    pub sentiment: Option<String>,
    pub sentiment_score: Option<f64>,
    pub lead_score: Option<i32>,
    pub hot_lead: bool,
    pub e2e_p95_ms: Option<f64>,
}

/// Badges of a page of sessions: three narrow queries over the page's ids.
pub async fn badges(
    db: &DatabaseConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Badges>, Error> {
    use entity::call_analytics as ca;
    let mut out: std::collections::HashMap<Uuid, Badges> =
        ids.iter().map(|id| (*id, Badges::default())).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let issues: Vec<(Uuid, String, i64)> = di::Entity::find()
        .select_only()
        .column(di::Column::SessionId)
        .column(di::Column::Severity)
        .column_as(di::Column::Ordinal.count(), "n")
        .filter(di::Column::SessionId.is_in(ids.to_vec()))
        .group_by(di::Column::SessionId)
        .group_by(di::Column::Severity)
        .into_tuple()
        .all(db)
        .await?;
    for (id, sev, n) in issues {
        if let Some(b) = out.get_mut(&id) {
            match sev.as_str() {
                "critical" => b.critical = n,
                "warning" => b.warning = n,
                _ => b.info = n,
            }
        }
    }
    type AnalyticsBadge = (Uuid, Option<String>, Option<f64>, Option<i32>, bool);
    let analytics: Vec<AnalyticsBadge> = ca::Entity::find()
        .select_only()
        .columns([
            ca::Column::SessionId,
            ca::Column::Sentiment,
            ca::Column::SentimentScore,
            ca::Column::LeadScore,
            ca::Column::HotLead,
        ])
        .filter(ca::Column::SessionId.is_in(ids.to_vec()))
        .filter(ca::Column::Status.eq("completed"))
        .into_tuple()
        .all(db)
        .await?;
    for (id, sentiment, score, lead, hot) in analytics {
        if let Some(b) = out.get_mut(&id) {
            (b.sentiment, b.sentiment_score, b.lead_score, b.hot_lead) =
                (sentiment, score, lead, hot);
        }
    }
    let e2e: Vec<(Uuid, Option<f64>)> = ct::Entity::find()
        .select_only()
        .columns([ct::Column::SessionId, ct::Column::E2eLatencyMs])
        .filter(ct::Column::SessionId.is_in(ids.to_vec()))
        .filter(ct::Column::E2eLatencyMs.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    let mut by: std::collections::HashMap<Uuid, Vec<f64>> = std::collections::HashMap::new();
    for (id, v) in e2e {
        if let Some(v) = v {
            by.entry(id).or_default().push(v);
        }
    }
    for (id, v) in by {
        if let Some(b) = out.get_mut(&id) {
            b.e2e_p95_ms = LatencyStats::of(v).p95;
        }
    }
    Ok(out)
}

/// Agents seen in the caller's calls of the last 30 days (filter suggestions), at most 200. Read
/// from the hourly analytics rollups (a few rows per agent and hour), not by scanning the sessions.
pub async fn agents(db: &DatabaseConnection, scope: &Scope) -> Result<Vec<String>, Error> {
    use sea_orm::{ConnectionTrait, Value as V};
    let since = crate::analytics::rollup::hour_of(Utc::now() - ChronoDuration::days(30));
    let mut sql = String::from(
        "SELECT DISTINCT agent_id FROM analytics_rollups WHERE hour >= ? AND agent_id <> ''",
    );
    let mut values: Vec<V> = vec![since.into()];
    if let Some(t) = scope.tenant() {
        sql.push_str(" AND tenant_id = ?");
        values.push(t.to_string().into());
    }
    sql.push_str(" ORDER BY agent_id LIMIT 200");
    let rows = db
        .query_all_raw(crate::db::stmt(db.get_database_backend(), &sql, values))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "agent_id").ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let s = LatencyStats::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.count, s.mean, s.p50), (4, Some(2.5), Some(2.5)));
        assert!((s.p95.unwrap() - 3.85).abs() < 1e-9);
        assert_eq!(
            LatencyStats::of(vec![]),
            LatencyStats {
                count: 0,
                mean: None,
                p50: None,
                p95: None
            }
        );
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_bad_request() {
        let r = crate::ingest::decode_report(
            br#"{"schema_version":1,"report_type":"final","seq":0,"call_id":"c","tenant_id":"t","started_at":"2026-11-01T09:00:00.123456Z"}"#,
        )
        .unwrap();
        let mut m = crate::ingest::models::session_model(&r);
        m.id = Uuid::new_v4();
        let now = m.started_at;
        use crate::paging::{cursor_of, decode_cursor};
        let (at, id) = decode_cursor(&cursor_of(m.started_at, m.id)).unwrap();
        assert_eq!((at.timestamp_micros(), id), (now.timestamp_micros(), m.id));
        assert!(decode_cursor("not-a-cursor!").is_err());
    }
}
