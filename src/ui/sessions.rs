//! Sessions pages: the filtered list, the session page (the call as a picture), its waveform peaks,
//! running the STT analysis and filing an STT report from it. Sign-in/out is in `auth.rs`.

use super::auth::Ctx;
use super::waterfall::{self, Parts};
use super::{UiError, render};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::api::urls::{base_url, object_url};
use crate::audio::peaks::peaks as wav_peaks;
use crate::sessions::{self as domain, SessionFilter, SeverityFilter};
use crate::stt_replay::batch;
use crate::stt_reports::{self as reports, IssueType, NewReport};
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use entity::{audio_segments as seg, conversation_turns as ct};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// The sessions list's query string: every value a string, so an empty form field means "any".
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ListQuery {
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub call_id: String,
    /// `yes`, `no` or empty.
    #[serde(default)]
    pub has_issues: String,
    /// `critical`, `warning`, `info` or empty.
    #[serde(default)]
    pub severity: String,
    /// A date (`2026-11-01`) or an RFC 3339 time.
    #[serde(default)]
    pub from: String,
    /// A date (inclusive) or an RFC 3339 time (exclusive).
    #[serde(default)]
    pub to: String,
    /// `recording`, `agent` or empty.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A date or time bound; a bare date `to` includes the whole day.
fn bound(field: &'static str, raw: &str, end: bool) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = opt(raw) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(&raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let day = NaiveDate::parse_from_str(&raw, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request(
            field,
            format!("{field} must be a date such as 2026-11-01 or an RFC 3339 time, got {raw:?}"),
        )
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
}

impl ListQuery {
    /// The domain filter these fields name, or which field is wrong.
    pub fn filter(&self) -> Result<SessionFilter, ApiError> {
        let has_issues = match self.has_issues.trim() {
            "" => None,
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            other => {
                return Err(ApiError::bad_request(
                    "has_issues",
                    format!("has_issues must be yes or no, got {other:?}"),
                ));
            }
        };
        let severity = match self.severity.trim() {
            "" => None,
            "critical" => Some(SeverityFilter::Critical),
            "warning" => Some(SeverityFilter::Warning),
            "info" => Some(SeverityFilter::Info),
            other => {
                return Err(ApiError::bad_request(
                    "severity",
                    format!("severity must be critical, warning or info, got {other:?}"),
                ));
            }
        };
        Ok(SessionFilter {
            tenant_id: opt(&self.tenant_id),
            call_id: opt(&self.call_id),
            agent_id: opt(&self.agent_id),
            has_issues,
            severity,
            started_after: bound("from", &self.from, false)?,
            started_before: bound("to", &self.to, true)?,
            source: match self.source.trim() {
                "" => None,
                "recording" => Some(domain::SessionSource::Recording),
                "agent" => Some(domain::SessionSource::Agent),
                other => {
                    return Err(ApiError::bad_request(
                        "source",
                        format!("source must be recording or agent, got {other:?}"),
                    ));
                }
            },
        })
    }

    /// This query as a query string, with `cursor` replaced.
    pub fn with_cursor(&self, cursor: Option<&str>) -> String {
        let mut q = self.clone();
        q.cursor = cursor.unwrap_or_default().to_string();
        serde_urlencoded::to_string(&q).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    summary: domain::SessionSummary,
    #[serde(flatten)]
    badges: domain::Badges,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let (rows, next, error) = match q.filter() {
        Err(e) => (Vec::new(), None, Some(e.to_string())),
        Ok(filter) => {
            let page = domain::list(
                &app.db,
                &ctx.scope,
                &filter,
                Some(50),
                opt(&q.cursor).as_deref(),
            )
            .await;
            match page {
                Err(e @ crate::error::Error::Invalid { .. }) => {
                    (Vec::new(), None, Some(e.to_string()))
                }
                Err(e) => return Err(e.into()),
                Ok(page) => {
                    let ids: Vec<Uuid> = page.items.iter().map(|s| s.id).collect();
                    let mut badges = domain::badges(&app.db, &ids).await?;
                    let rows: Vec<Row> = page
                        .items
                        .into_iter()
                        .map(|summary| Row {
                            badges: badges.remove(&summary.id).unwrap_or_default(),
                            summary,
                        })
                        .collect();
                    (rows, page.next_cursor, None)
                }
            }
        }
    };
    let agents = domain::agents(&app.db, &ctx.scope).await?;
    let mut providers: Vec<&str> = app.stt.all().iter().map(|p| p.id().as_str()).collect();
    providers.sort_unstable();
    let mut r = render(
        "sessions.html",
        &ctx,
        "sessions",
        serde_json::json!({
            "q": q,
            "rows": rows,
            "agents": agents,
            "error": error,
            "next": next.map(|c| q.with_cursor(Some(&c))),
            "first_page": if q.cursor.is_empty() { None } else { Some(q.with_cursor(None)) },
            "stt_providers": providers,
            "filter_qs": q.with_cursor(None),
        }),
    )?;
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

/// A moment in a call: `?turn=7&t=12.3&rendition=post_rnnoise`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Moment {
    #[serde(default)]
    pub turn: Option<String>,
    #[serde(default)]
    pub t: Option<String>,
    #[serde(default)]
    pub rendition: Option<String>,
}

#[derive(Serialize)]
struct Player {
    rendition: &'static str,
    label: &'static str,
    segment_id: String,
    url: String,
    offset_ms: i64,
    duration_ms: Option<i64>,
    status: String,
}

#[derive(Serialize)]
struct SttClip {
    segment_id: String,
    url: String,
    offset_ms: i64,
    duration_ms: Option<i64>,
}

#[derive(Serialize)]
struct TurnRow {
    turn_index: i64,
    role: String,
    content: String,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    interrupted: Option<bool>,
    stt_confidence: Option<f64>,
    waterfall: Option<String>,
    over_budget: bool,
    stt_clip: Option<SttClip>,
    issues: Vec<IssueRef>,
    tool_calls: Vec<Value>,
}

#[derive(Serialize, Clone)]
struct IssueRef {
    code: String,
    severity: String,
}

#[derive(Serialize)]
struct EventRow {
    seq: i64,
    at_ms: i64,
    event_type: String,
    turn_index: Option<i64>,
    data: Option<String>,
}

const MISSING: seg::Status = seg::Status::Missing;

async fn segment_url(
    app: &crate::app::App,
    base: &str,
    g: &seg::Model,
) -> Result<Option<String>, ApiError> {
    let Some(key) = g.s3_key.as_deref().filter(|_| g.status != MISSING) else {
        return Ok(None);
    };
    let (url, _) = object_url(app, base, g.bucket.as_deref(), key)
        .await
        .map_err(ApiError::internal)?;
    Ok(Some(url))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(moment): Query<Moment>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let app = &state.0;
    let s = domain::load(&app.db, &ctx.scope, parse_uuid("session_id", &id)?).await?;
    let (parts, diagnosis, analytics, analysis) = tokio::try_join!(
        async { Ok::<_, ApiError>(domain::parts(&app.db, s.id).await?) },
        async { Ok::<_, ApiError>(domain::diagnosis(&app.db, &s).await?) },
        async { Ok::<_, ApiError>(crate::analytics::store::find(&app.db, s.id).await?) },
        async { Ok::<_, ApiError>(batch::stored(&app.db, s.id).await?) },
    )?;
    let detail = domain::detail(&s, &parts.turns);
    let base = base_url(app, &headers);
    let budget = app.config.ui_latency_budget_ms as f64;

    // Players: the two full-call recordings and, per user turn, its stt_input clip.
    let mut players = Vec::new();
    let mut missing_renditions = Vec::new();
    for (rendition, label, segment_type) in [
        (
            "pre_rnnoise",
            "Before noise suppression",
            "full_pre_rnnoise",
        ),
        (
            "post_rnnoise",
            "After noise suppression",
            "full_post_rnnoise",
        ),
    ] {
        let g = parts
            .segments
            .iter()
            .find(|g| g.segment_type == segment_type);
        match g {
            Some(g) => match segment_url(app, &base, g).await? {
                Some(url) => players.push(Player {
                    rendition,
                    label,
                    segment_id: g.segment_id.clone(),
                    url,
                    offset_ms: g.offset_ms.unwrap_or(0),
                    duration_ms: g.duration_ms,
                    status: g.status.to_string(),
                }),
                None => {
                    missing_renditions.push(format!("{label}: audio not stored ({})", g.status))
                }
            },
            None => missing_renditions.push(format!("{label}: not recorded by the agent")),
        }
    }
    let mut clips: HashMap<i64, SttClip> = HashMap::new();
    for g in parts
        .segments
        .iter()
        .filter(|g| g.segment_type == "stt_input")
    {
        if let (Some(ti), Some(url)) = (g.turn_index, segment_url(app, &base, g).await?) {
            clips.insert(
                ti,
                SttClip {
                    segment_id: g.segment_id.clone(),
                    url,
                    offset_ms: g.offset_ms.unwrap_or(0),
                    duration_ms: g.duration_ms,
                },
            );
        }
    }

    let mut issues_by_turn: HashMap<i64, Vec<IssueRef>> = HashMap::new();
    for i in &diagnosis.issues {
        if let Some(t) = i.turn_index {
            issues_by_turn.entry(t).or_default().push(IssueRef {
                code: i.code.clone(),
                severity: i.severity.clone(),
            });
        }
    }
    let all_parts: Vec<Option<Parts>> = (0..parts.turns.len())
        .map(|i| Parts::of(&parts.turns, i))
        .collect();
    let scale = all_parts
        .iter()
        .flatten()
        .map(|p| p.e2e.unwrap_or(0.0).max(p.stacked()))
        .fold(budget * 1.25, f64::max);
    let turns: Vec<TurnRow> = parts
        .turns
        .iter()
        .zip(all_parts)
        .map(|(t, p)| TurnRow {
            turn_index: t.turn_index,
            role: t.role.clone(),
            content: t.content.clone(),
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            interrupted: t.interrupted,
            stt_confidence: t.stt_confidence,
            over_budget: p
                .as_ref()
                .is_some_and(|p| p.e2e.unwrap_or(p.stacked()) > budget),
            waterfall: p.map(|p| waterfall::svg(&p, budget, scale, t.turn_index)),
            stt_clip: clips.remove(&t.turn_index),
            issues: issues_by_turn.remove(&t.turn_index).unwrap_or_default(),
            tool_calls: tool_calls(t),
        })
        .collect();
    let events: Vec<EventRow> = parts
        .events
        .iter()
        .map(|e| EventRow {
            seq: e.seq,
            at_ms: e.at_ms,
            event_type: e.event_type.clone(),
            turn_index: e.turn_index,
            data: e.data.as_ref().map(|d| {
                let s = d.to_string();
                if s.chars().count() > 300 {
                    format!("{}…", s.chars().take(300).collect::<String>())
                } else {
                    s
                }
            }),
        })
        .collect();
    let analytics =
        analytics.map(|m| crate::analytics::store::CallAnalyticsView::of(&m, &app.analytics.keys));
    let stt = analysis.as_ref().map(|a| stt_view(a, &parts.turns));
    let mut providers: Vec<&str> = app.stt.all().iter().map(|p| p.id().as_str()).collect();
    providers.sort_unstable();
    let duration_ms = s.duration_seconds.map(|d| d * 1000.0).or_else(|| {
        players
            .iter()
            .filter_map(|p| p.duration_ms)
            .max()
            .map(|d| d as f64)
    });
    let recording = super::recordings::panel(&state, s.id).await?;
    let missing_renditions = if recording.is_some() {
        Vec::new()
    } else {
        missing_renditions
    };
    render(
        "session.html",
        &ctx,
        "sessions",
        serde_json::json!({
            "recording": recording,
            "s": detail,
            "turns": turns,
            "issues": diagnosis.issues.iter().map(|i| {
                let mut v = serde_json::to_value(i).unwrap_or_default();
                v["evidence_rows"] = evidence_rows(&i.evidence);
                v
            }).collect::<Vec<_>>(),
            "issue_summary": diagnosis.issue_summary,
            "counts": severity_counts(&diagnosis.issues),
            "events": events,
            "players": players,
            "missing_renditions": missing_renditions,
            "analytics": analytics,
            "stt": stt,
            "stt_providers": providers,
            "budget_ms": budget,
            "duration_ms": duration_ms,
            "moment": moment,
            "issue_types": ["misrecognition", "missing_words", "hallucination", "wrong_language", "truncated", "other"],
        }),
    )
}

/// An issue's evidence as (label, value) rows a person reads: `_ms` numbers as durations, nested
/// objects flattened into one line.
fn evidence_rows(e: &Value) -> Value {
    fn show(key: &str, v: &Value) -> String {
        match v {
            Value::Number(n) if key.ends_with("_ms") => {
                n.as_f64().map_or_else(|| n.to_string(), waterfall::fmt_ms)
            }
            Value::Number(n) => n.as_f64().map_or_else(
                || n.to_string(),
                |f| {
                    if f.fract() == 0.0 && f.abs() < 1e15 {
                        format!("{}", f as i64)
                    } else {
                        format!("{f:.3}").trim_end_matches('0').to_string()
                    }
                },
            ),
            Value::Bool(b) => {
                if *b {
                    "yes".into()
                } else {
                    "no".into()
                }
            }
            Value::Null => "—".into(),
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| show(key, x))
                .collect::<Vec<_>>()
                .join(", "),
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| {
                    format!(
                        "{} {}",
                        k.trim_end_matches("_ms").replace('_', " "),
                        show(k, x)
                    )
                })
                .collect::<Vec<_>>()
                .join(" · "),
        }
    }
    match e {
        Value::Object(o) => Value::Array(
            o.iter()
                .map(|(k, v)| {
                    serde_json::json!([k.trim_end_matches("_ms").replace('_', " "), show(k, v)])
                })
                .collect(),
        ),
        Value::Null => Value::Array(Vec::new()),
        other => serde_json::json!([["evidence", show("", other)]]),
    }
}

fn tool_calls(t: &ct::Model) -> Vec<Value> {
    match &t.tool_calls {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn severity_counts(issues: &[domain::IssueResponse]) -> HashMap<&'static str, usize> {
    let mut c = HashMap::from([("critical", 0), ("warning", 0), ("info", 0)]);
    for i in issues {
        let k = match i.severity.as_str() {
            "critical" => "critical",
            "warning" => "warning",
            _ => "info",
        };
        *c.entry(k).or_default() += 1;
    }
    c
}

/// The stored STT analysis as the grid the page draws: one row per turn and rendition, one cell
/// per provider, each word of the diff with the call time it was heard at.
fn stt_view(a: &entity::session_analyses::Model, turns: &[ct::Model]) -> Value {
    let grid = a.result.as_ref().and_then(|r| r.get("grid"));
    let providers: Vec<Value> = grid
        .and_then(|g| g.get("providers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let starts: HashMap<i64, i64> = turns
        .iter()
        .filter_map(|t| Some((t.turn_index, t.start_ms?)))
        .collect();
    let mut rows = Vec::new();
    for turn in grid
        .and_then(|g| g.get("turns"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ti = turn.get("turn_index").and_then(Value::as_i64).unwrap_or(-1);
        let start_ms = starts.get(&ti).copied().unwrap_or(0) as f64;
        for r in turn
            .get("renditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let duration_ms = r.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0);
            let cells: Vec<Value> = r
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| cell(c, start_ms, duration_ms))
                .collect();
            rows.push(serde_json::json!({
                "turn_index": ti,
                "original": turn.get("original_transcript"),
                "rendition": r.get("rendition"),
                "status": r.get("status"),
                "missing_reason": r.get("missing_reason"),
                "start_s": start_ms / 1000.0,
                "cells": cells,
            }));
        }
    }
    serde_json::json!({
        "status": a.status,
        "error": a.error,
        "ran_at": a.ran_at,
        "duration_ms": a.duration_ms,
        "providers": providers,
        "rows": rows,
        "summary": a.result.as_ref().and_then(|r| r.get("summary")),
    })
}

fn cell(c: &Value, start_ms: f64, duration_ms: f64) -> Value {
    let wer = c
        .get("wer_vs_original")
        .and_then(|w| w.get("wer"))
        .and_then(Value::as_f64);
    let words_timed: Vec<Option<f64>> = c
        .pointer("/transcription/words")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|w| w.get("start_s").and_then(Value::as_f64))
        .collect();
    let alignment: Vec<Value> = c
        .pointer("/wer_vs_original/alignment")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hyp_words = alignment
        .iter()
        .filter(|p| p.get("hypothesis").is_some_and(|h| !h.is_null()))
        .count();
    let n = alignment.len().max(1) as f64;
    let mut k = 0usize;
    let words: Vec<Value> = alignment
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let has_hyp = p.get("hypothesis").is_some_and(|h| !h.is_null());
            // A provider's own word timings when they line up one to one; else the word's share of the clip.
            let offset_s = if hyp_words == words_timed.len() && has_hyp {
                words_timed.get(k).copied().flatten()
            } else {
                None
            }
            .unwrap_or(duration_ms / 1000.0 * i as f64 / n);
            if has_hyp {
                k += 1;
            }
            serde_json::json!({
                "op": p.get("op"),
                "reference": p.get("reference"),
                "hypothesis": p.get("hypothesis"),
                "at_s": ((start_ms / 1000.0 + offset_s) * 100.0).round() / 100.0,
            })
        })
        .collect();
    serde_json::json!({
        "provider": c.get("provider"),
        "model": c.get("model"),
        "status": c.get("status"),
        "transcript": c.pointer("/transcription/transcript"),
        "latency_ms": c.pointer("/transcription/latency_ms"),
        "error": c.pointer("/error/message"),
        "wer": wer,
        "wer_class": match wer {
            None => "na",
            Some(w) if w <= 0.1 => "good",
            Some(w) if w <= 0.3 => "fair",
            Some(_) => "bad",
        },
        "words": words,
    })
}

/// Waveform peaks of a stored segment (cached by the browser: a segment's key never changes bytes).
pub async fn peaks(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((id, segment_id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let s = domain::load(&app.db, &ctx.scope, parse_uuid("session_id", &id)?).await?;
    let not_found = || ApiError::NotFound(format!("audio of segment {segment_id:?}"));
    let g = domain::segment(&app.db, s.id, &segment_id)
        .await?
        .ok_or_else(not_found)?;
    let key = g
        .s3_key
        .as_deref()
        .filter(|_| g.status != MISSING)
        .ok_or_else(not_found)?;
    let bytes = app
        .store
        .get(g.bucket.as_deref(), key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    let p = tokio::task::spawn_blocking(move || wav_peaks(&bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::Conflict(format!("segment {segment_id:?} is not readable audio: {e}"))
        })?;
    let mut r = axum::Json(p).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct RunForm {
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub language: String,
}

/// Form bodies with repeated keys (`providers=a&providers=b`).
fn providers_of(body: &[(String, String)]) -> RunForm {
    RunForm {
        providers: body
            .iter()
            .filter(|(k, _)| k == "providers")
            .map(|(_, v)| v.clone())
            .collect(),
        language: body
            .iter()
            .find(|(k, _)| k == "language")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    }
}

pub async fn run_analysis(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(body): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let s = domain::load(&app.db, &ctx.scope, parse_uuid("session_id", &id)?).await?;
    let f = providers_of(&body);
    let names = (!f.providers.is_empty()).then(|| f.providers.join(","));
    let providers = batch::parse_providers(&app.stt, names.as_deref())?;
    let language = batch::check_language(Some(&f.language))?;
    batch::start_single(
        &state.0.analysis_runner(),
        &ctx.scope,
        s.id,
        providers,
        language,
    )
    .await?;
    Ok(Redirect::to(&format!("/sessions/{}#stt", s.id)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReportForm {
    pub turn_index: i64,
    #[serde(default)]
    pub expected_output: String,
    #[serde(default)]
    pub issue_type: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub reported_by: String,
}

pub async fn report_issue(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(f): Form<ReportForm>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let s = domain::load(&app.db, &ctx.scope, parse_uuid("session_id", &id)?).await?;
    if f.expected_output.trim().is_empty() {
        return Err(ApiError::bad_request(
            "expected_output",
            "say what the user actually said (expected output) to file a report",
        )
        .into());
    }
    let view = reports::create(
        &app.reports(),
        &ctx.scope,
        NewReport {
            session_id: Some(s.id),
            call_id: None,
            turn_index: f.turn_index,
            stt_output: None,
            expected_output: f.expected_output,
            issue_type: IssueType::parse(&f.issue_type),
            notes: opt(&f.notes),
            reported_by: opt(&f.reported_by),
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/reports?session_id={}#report-{}", s.id, view.id)).into_response())
}
