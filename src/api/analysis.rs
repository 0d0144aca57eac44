//! Full-call STT analysis: run one now (or join the running one), read the stored one, list them;
//! batch jobs of up to 50 sessions with progress and cancel. The runs themselves live in
//! `analysis::jobs`; these handlers create jobs, read their rows and wait for them.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, parse_uuid, storable};
use super::sessions::{
    SessionFilter, cursor_of, decode_cursor, filter_sessions, load_session, page_limit,
};
use crate::analysis::jobs::{self, JobKind, MAX_BATCH, NewJob};
use crate::analysis::replay::ProviderInfo;
use crate::stt::ProviderId;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::{
    analysis_job_items as item, analysis_jobs as job, call_sessions as cs, session_analyses as sa,
};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl AnalysisStatus {
    fn as_str(self) -> &'static str {
        match self {
            AnalysisStatus::Running => "running",
            AnalysisStatus::Completed => "completed",
            AnalysisStatus::Failed => "failed",
            AnalysisStatus::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "completed" => AnalysisStatus::Completed,
            "failed" => AnalysisStatus::Failed,
            "cancelled" => AnalysisStatus::Cancelled,
            _ => AnalysisStatus::Running,
        }
    }
}

/// A session's analysis: the latest run's state and the stored result of the last completed one.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisView {
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    /// Of the latest run. While a re-run is `running`, `result` is still the previous one.
    pub status: AnalysisStatus,
    /// The job of the latest run (`GET /api/v1/analysis/batch/{job_id}` shows it).
    pub job_id: Option<Uuid>,
    /// Providers the latest run was asked for (`null`: every configured one).
    #[schema(value_type = Option<Vec<ProviderId>>)]
    pub requested_providers: Option<serde_json::Value>,
    /// Providers and models of the stored result.
    #[schema(value_type = Option<Vec<ProviderInfo>>)]
    pub providers: Option<serde_json::Value>,
    pub language: Option<String>,
    /// When the latest run started.
    pub started_at: DateTime<Utc>,
    /// When the stored result was produced.
    pub ran_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub updated_at: DateTime<Utc>,
    /// Why the latest run failed.
    pub error: Option<String>,
    /// Grid (turns × renditions × providers) and summaries; left out of lists, the grid left out
    /// with `view=summary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<AnalysisResultView>)]
    pub result: Option<serde_json::Value>,
}

fn view(row: sa::Model, with_result: bool) -> AnalysisView {
    AnalysisView {
        session_id: row.session_id,
        call_id: row.call_id,
        tenant_id: row.tenant_id,
        status: AnalysisStatus::parse(&row.status),
        job_id: row.job_id,
        requested_providers: row.requested_providers,
        providers: row.providers,
        language: row.language,
        started_at: row.started_at,
        ran_at: row.ran_at,
        duration_ms: row.duration_ms,
        updated_at: row.updated_at,
        error: row.error,
        result: if with_result { row.result } else { None },
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// Comma-separated providers (`groq,deepgram,cartesia,elevenlabs,gladia,openai`); every
    /// configured one when absent or empty.
    #[param(
        pattern = r"^$|^(groq|deepgram|cartesia|elevenlabs|gladia|openai)(,(groq|deepgram|cartesia|elevenlabs|gladia|openai))*$"
    )]
    pub providers: Option<String>,
    /// Language hint for the providers and the WER normaliser [default, also when empty:
    /// INSIGHTS_STT_LANGUAGE].
    #[param(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
    /// Wait for the analysis to finish (up to the request timeout) and answer 200 with it.
    pub wait: Option<bool>,
}

/// Parses and checks a provider list against the configured providers.
pub(super) fn parse_providers(
    state: &AppState,
    raw: Option<&str>,
) -> Result<Option<Vec<ProviderId>>, ApiError> {
    if state.0.stt.is_empty() {
        return Err(ApiError::Unavailable(
            "no STT provider is configured (set INSIGHTS_<PROVIDER>_API_KEY)".into(),
        ));
    }
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let configured: Vec<&str> = state.0.stt.all().iter().map(|p| p.id().as_str()).collect();
    let mut ids = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let id = ProviderId::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                "providers",
                format!(
                    "unknown provider {name:?}; configured: {}",
                    configured.join(", ")
                ),
            )
        })?;
        if state.0.stt.get(id).is_none() {
            return Err(ApiError::Conflict(format!(
                "provider {name} is not configured here (set INSIGHTS_{}_API_KEY); configured: {}",
                id.env_prefix(),
                configured.join(", ")
            )));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(ApiError::bad_request("providers", "no provider named"));
    }
    Ok(Some(ids))
}

pub(super) fn check_language(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(l) = raw.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let ok = l.len() <= 12
        && l.split('-').enumerate().all(|(i, part)| {
            let n = part.len();
            part.chars().all(|c| c.is_ascii_alphanumeric())
                && if i == 0 {
                    (2..=3).contains(&n) && part.chars().all(|c| c.is_ascii_alphabetic())
                } else {
                    (2..=8).contains(&n)
                }
        })
        && l.split('-').count() <= 2;
    if !ok {
        return Err(ApiError::bad_request(
            "language",
            format!("language must be a language code such as en or pt-BR, got {l:?}"),
        ));
    }
    Ok(Some(l.to_string()))
}

/// Waits until the session's analysis is no longer `running` (or `deadline`).
async fn wait_settled(state: &AppState, session: Uuid, deadline: tokio::time::Instant) {
    while tokio::time::Instant::now() < deadline {
        match sa::Entity::find_by_id(session).one(&state.0.db).await {
            Ok(Some(r)) if r.status != "running" => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an analysis while waiting for it");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wait_deadline(state: &AppState) -> tokio::time::Instant {
    // Answer (202, still running) before the request timeout cuts the response off.
    let budget = state
        .0
        .config
        .http_timeout_ms
        .saturating_sub(1_000)
        .max(500);
    tokio::time::Instant::now() + Duration::from_millis(budget)
}

async fn analysis_response(state: &AppState, session: Uuid) -> Result<Response, ApiError> {
    let row = sa::Entity::find_by_id(session)
        .one(&state.0.db)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("analysis row of {session} vanished")))?;
    let running = row.status == "running";
    let mut response = Json(view(row, true)).into_response();
    if running {
        *response.status_mut() = StatusCode::ACCEPTED;
        if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/analysis/{session}")) {
            response.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(response)
}

/// Run the full-call analysis now, or join the one running.
///
/// Replays every user turn's three renditions through the providers and stores the grid with its
/// summaries. Answers 202 while it runs (poll `GET /api/v1/analysis/{session_id}`), 200 when
/// `wait=true` and it finished in time.
#[utoipa::path(post, path = "/api/v1/analysis/{session_id}", tag = "analysis", params(("session_id" = uuid::Uuid, Path, description = "Session id"), RunParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The finished analysis (with `wait=true`)", body = AnalysisView),
        (status = 202, description = "Running; the body shows its state (and any previous result)", body = AnalysisView),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "A provider that is not configured", body = ErrorBody),
        (status = 503, description = "No STT provider configured", body = ErrorBody),
    ))]
pub async fn run_analysis(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    ApiQuery(p): ApiQuery<RunParams>,
) -> Result<Response, ApiError> {
    let session = load_session(&state, &scope, &raw).await?;
    let providers = parse_providers(&state, p.providers.as_deref())?;
    let language = check_language(p.language.as_deref())?;
    let app = state.0.clone();
    let existing = sa::Entity::find_by_id(session.id).one(&app.db).await?;
    let mut joined = false;
    if let Some(row) = &existing
        && row.status == "running"
        && let Some(job_id) = row.job_id
    {
        let live = item::Entity::find_by_id((job_id, session.id))
            .one(&app.db)
            .await?
            .is_some_and(|i| i.status == "running" || i.status == "queued");
        joined = live;
    }
    if !joined {
        let settings = app.worker_settings();
        let new = NewJob {
            kind: JobKind::Single,
            tenant: scope.tenant().map(str::to_string),
            sessions: vec![session.id],
            providers,
            language,
            filter: None,
        };
        let (job_row, items) =
            jobs::create_job(&app.db, &new, Some((&settings.worker_id, settings.lease))).await?;
        // Marked here so the answer already shows the run; the run itself does not mark again.
        let marked_at = Utc::now();
        jobs::mark_running(&app.db, &job_row, session.id, marked_at).await?;
        for it in items {
            tokio::spawn(jobs::run_item(
                app.clone(),
                job_row.clone(),
                it,
                settings.clone(),
                app.analysis.shutdown.clone(),
                Some(marked_at),
            ));
        }
        tracing::info!(session = %session.id, job = %job_row.id, "full-call analysis started");
    }
    if p.wait.unwrap_or(false) {
        wait_settled(&state, session.id, wait_deadline(&state)).await;
    }
    analysis_response(&state, session.id).await
}

/// A stored result as served: the grid is absent with `view=summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisResultView {
    pub summary: crate::analysis::summary::AnalysisSummary,
    pub grid: Option<crate::analysis::replay::SessionReplay>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisDetail {
    /// Grid and summaries.
    #[default]
    Full,
    /// Summaries only (per provider, per rendition, noise suppression): small enough for dashboards
    /// of long calls.
    Summary,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    #[param(inline)]
    pub view: Option<AnalysisDetail>,
}

/// The stored full-call analysis of a session.
#[utoipa::path(get, path = "/api/v1/analysis/{session_id}", tag = "analysis", params(("session_id" = uuid::Uuid, Path, description = "Session id"), GetParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The analysis (status `running` while a run is under way)", body = AnalysisView),
        (status = 400, description = "A bad session id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session, or no analysis yet (`details.hint` says how to run one)", body = ErrorBody,
            example = json!({"code": "not_found", "message": "session 6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11 has not been analysed", "details": {"hint": "POST /api/v1/analysis/6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11 runs the analysis"}})),
    ))]
pub async fn get_analysis(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    ApiQuery(p): ApiQuery<GetParams>,
) -> Result<Json<AnalysisView>, ApiError> {
    let session = load_session(&state, &scope, &raw).await?;
    match sa::Entity::find_by_id(session.id).one(&state.0.db).await? {
        Some(row) => {
            let mut v = view(row, true);
            if matches!(p.view, Some(AnalysisDetail::Summary))
                && let Some(serde_json::Value::Object(result)) = &mut v.result
            {
                result.remove("grid");
            }
            Ok(Json(v))
        }
        None => Err(ApiError::NotYet {
            message: format!("session {} has not been analysed", session.id),
            hint: format!("POST /api/v1/analysis/{} runs the analysis", session.id),
        }),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalysisListParams {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    #[param(inline)]
    pub status: Option<AnalysisStatus>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Cursor from a previous page's `next_cursor` (treat it as opaque).
    #[param(pattern = r"^-?[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisList {
    /// Newest first (by last update); without their results.
    pub items: Vec<AnalysisView>,
    pub next_cursor: Option<String>,
}

/// List analyses, most recently updated first.
#[utoipa::path(get, path = "/api/v1/analysis", tag = "analysis", params(AnalysisListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of analyses (results left out: GET one for it)", body = AnalysisList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_analyses(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<AnalysisListParams>,
) -> Result<Json<AnalysisList>, ApiError> {
    let limit = page_limit(p.limit)?;
    if p.tenant_id.as_deref().is_some_and(|t| !storable(t)) {
        return Ok(Json(AnalysisList {
            items: Vec::new(),
            next_cursor: None,
        }));
    }
    // The result column is large: list without it.
    let mut q = sa::Entity::find().select_only().columns([
        sa::Column::SessionId,
        sa::Column::TenantId,
        sa::Column::CallId,
        sa::Column::Status,
        sa::Column::JobId,
        sa::Column::RequestedProviders,
        sa::Column::Providers,
        sa::Column::Language,
        sa::Column::Error,
        sa::Column::StartedAt,
        sa::Column::RanAt,
        sa::Column::DurationMs,
        sa::Column::UpdatedAt,
    ]);
    if let Some(t) = scope.tenant() {
        q = q.filter(sa::Column::TenantId.eq(t));
    }
    if let Some(t) = &p.tenant_id {
        q = q.filter(sa::Column::TenantId.eq(t.as_str()));
    }
    if let Some(s) = p.status {
        q = q.filter(sa::Column::Status.eq(s.as_str()));
    }
    if let Some(c) = &p.cursor {
        let (at, id) = decode_cursor(c)?;
        q = q.filter(
            Condition::any().add(sa::Column::UpdatedAt.lt(at)).add(
                Condition::all()
                    .add(sa::Column::UpdatedAt.eq(at))
                    .add(sa::Column::SessionId.lt(id)),
            ),
        );
    }
    let mut rows: Vec<ListRow> = q
        .order_by_desc(sa::Column::UpdatedAt)
        .order_by_desc(sa::Column::SessionId)
        .limit(u64::from(limit) + 1)
        .into_model::<ListRow>()
        .all(&state.0.db)
        .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| cursor_of(r.updated_at, r.session_id))
    } else {
        None
    };
    Ok(Json(AnalysisList {
        items: rows
            .into_iter()
            .map(|r| {
                view(
                    sa::Model {
                        session_id: r.session_id,
                        tenant_id: r.tenant_id,
                        call_id: r.call_id,
                        status: r.status,
                        job_id: r.job_id,
                        requested_providers: r.requested_providers,
                        providers: r.providers,
                        language: r.language,
                        result: None,
                        error: r.error,
                        started_at: r.started_at,
                        ran_at: r.ran_at,
                        duration_ms: r.duration_ms,
                        updated_at: r.updated_at,
                    },
                    false,
                )
            })
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct ListRow {
    session_id: Uuid,
    tenant_id: String,
    call_id: String,
    status: String,
    job_id: Option<Uuid>,
    requested_providers: Option<serde_json::Value>,
    providers: Option<serde_json::Value>,
    language: Option<String>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    ran_at: Option<DateTime<Utc>>,
    duration_ms: Option<f64>,
    updated_at: DateTime<Utc>,
}

/// Sessions to analyse: explicit ids or a sessions filter (not both).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"session_ids": ["6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11"], "providers": ["deepgram", "groq"]}))]
pub struct BatchRequest {
    /// Up to 50 session ids (give these or `filter`).
    #[schema(min_items = 1, max_items = 50, nullable = false)]
    pub session_ids: Option<Vec<Uuid>>,
    /// The session list's filters; the batch takes every matching session (newest first, at most
    /// `limit`), and is refused when more than 50 match without a `limit`.
    #[schema(nullable = false)]
    pub filter: Option<SessionFilter>,
    /// With `filter`: take at most this many (1–50) of the newest matching sessions.
    #[schema(minimum = 1, maximum = 50)]
    #[serde(default, deserialize_with = "super::extract::json_opt_u32")]
    pub limit: Option<u32>,
    /// Providers (every configured one when absent).
    pub providers: Option<Vec<ProviderId>>,
    #[schema(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub session_id: Uuid,
    pub call_id: Option<String>,
    pub position: i32,
    pub status: ItemStatus,
    /// Times a worker started it (more than 1 after a worker died or the service restarted).
    pub attempts: i32,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub job_id: Uuid,
    /// `batch`, or `single` for a job made by `POST /api/v1/analysis/{session_id}`.
    pub kind: String,
    pub status: JobStatus,
    pub total: i32,
    /// Items finished with a stored analysis.
    pub done: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub cancelled: usize,
    #[schema(value_type = Option<Vec<ProviderId>>)]
    pub providers: Option<serde_json::Value>,
    pub language: Option<String>,
    #[schema(value_type = Option<SessionFilter>)]
    pub filter: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every session of the job in order (left out of job lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<BatchItem>>,
}

fn item_status(s: &str) -> ItemStatus {
    match s {
        "running" => ItemStatus::Running,
        "completed" => ItemStatus::Completed,
        "failed" => ItemStatus::Failed,
        "cancelled" => ItemStatus::Cancelled,
        _ => ItemStatus::Queued,
    }
}

/// A job with its items' progress.
pub async fn batch_view(
    db: &sea_orm::DatabaseConnection,
    j: job::Model,
) -> Result<BatchView, sea_orm::DbErr> {
    let items = item::Entity::find()
        .filter(item::Column::JobId.eq(j.id))
        .order_by_asc(item::Column::Position)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.session_id).collect();
    let calls: HashMap<Uuid, String> = cs::Entity::find()
        .select_only()
        .columns([cs::Column::Id, cs::Column::CallId])
        .filter(cs::Column::Id.is_in(ids))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let items: Vec<BatchItem> = items
        .into_iter()
        .map(|i| BatchItem {
            call_id: calls.get(&i.session_id).cloned(),
            session_id: i.session_id,
            position: i.position,
            status: item_status(&i.status),
            attempts: i.attempts,
            error: i.error,
            started_at: i.started_at,
            finished_at: i.finished_at,
        })
        .collect();
    let mut counts: HashMap<ItemStatus, usize> = HashMap::new();
    for i in &items {
        *counts.entry(i.status).or_default() += 1;
    }
    Ok(job_view(j, &counts, Some(items)))
}

fn job_view(
    j: job::Model,
    counts: &HashMap<ItemStatus, usize>,
    items: Option<Vec<BatchItem>>,
) -> BatchView {
    let count = |s: ItemStatus| counts.get(&s).copied().unwrap_or(0);
    BatchView {
        job_id: j.id,
        kind: j.kind,
        status: match j.status.as_str() {
            "completed" => JobStatus::Completed,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Running,
        },
        total: j.total,
        done: count(ItemStatus::Completed),
        failed: count(ItemStatus::Failed),
        running: count(ItemStatus::Running),
        queued: count(ItemStatus::Queued),
        cancelled: count(ItemStatus::Cancelled),
        providers: j.providers,
        language: j.language,
        filter: j.filter,
        created_at: j.created_at,
        updated_at: j.updated_at,
        finished_at: j.finished_at,
        items,
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKindFilter {
    Single,
    Batch,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    #[param(inline)]
    pub status: Option<JobStatus>,
    /// `batch` (default: both) or `single` (made by `POST /api/v1/analysis/{session_id}`).
    #[param(inline)]
    pub kind: Option<JobKindFilter>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Cursor from a previous page's `next_cursor` (treat it as opaque).
    #[param(pattern = r"^-?[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first, with their counts (without their items: GET one for them).
    pub items: Vec<BatchView>,
    pub next_cursor: Option<String>,
}

/// List analysis jobs, newest first.
#[utoipa::path(get, path = "/api/v1/analysis/batch", tag = "analysis", params(JobListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of jobs with their progress counts", body = JobList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_batches(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<JobListParams>,
) -> Result<Json<JobList>, ApiError> {
    let limit = page_limit(p.limit)?;
    let db = &state.0.db;
    let mut q = job::Entity::find();
    if let Some(t) = scope.tenant() {
        q = q.filter(job::Column::TenantId.eq(t));
    }
    if let Some(s) = p.status {
        let name = match s {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
        };
        q = q.filter(job::Column::Status.eq(name));
    }
    if let Some(k) = p.kind {
        let kind = match k {
            JobKindFilter::Single => JobKind::Single,
            JobKindFilter::Batch => JobKind::Batch,
        };
        q = q.filter(job::Column::Kind.eq(kind.as_str()));
    }
    if let Some(c) = &p.cursor {
        let (at, id) = decode_cursor(c)?;
        q = q.filter(
            Condition::any().add(job::Column::CreatedAt.lt(at)).add(
                Condition::all()
                    .add(job::Column::CreatedAt.eq(at))
                    .add(job::Column::Id.lt(id)),
            ),
        );
    }
    let mut jobs = q
        .order_by_desc(job::Column::CreatedAt)
        .order_by_desc(job::Column::Id)
        .limit(u64::from(limit) + 1)
        .all(db)
        .await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| cursor_of(j.created_at, j.id))
    } else {
        None
    };
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let rows: Vec<(Uuid, String, i64)> = if ids.is_empty() {
        Vec::new()
    } else {
        item::Entity::find()
            .select_only()
            .column(item::Column::JobId)
            .column(item::Column::Status)
            .column_as(item::Column::SessionId.count(), "n")
            .filter(item::Column::JobId.is_in(ids))
            .group_by(item::Column::JobId)
            .group_by(item::Column::Status)
            .into_tuple()
            .all(db)
            .await?
    };
    let mut counts: HashMap<Uuid, HashMap<ItemStatus, usize>> = HashMap::new();
    for (job_id, status, n) in rows {
        *counts
            .entry(job_id)
            .or_default()
            .entry(item_status(&status))
            .or_default() += usize::try_from(n).unwrap_or(0);
    }
    let empty = HashMap::new();
    Ok(Json(JobList {
        items: jobs
            .into_iter()
            .map(|j| {
                let c = counts.get(&j.id).unwrap_or(&empty);
                job_view(j, c, None)
            })
            .collect(),
        next_cursor,
    }))
}

/// The sessions a batch request names, checked: visible to the caller, 1–50 of them.
pub async fn resolve_batch(
    db: &sea_orm::DatabaseConnection,
    scope: &Scope,
    req: &BatchRequest,
) -> Result<Vec<Uuid>, ApiError> {
    match (&req.session_ids, &req.filter) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "session_ids",
            "give session_ids or filter, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "session_ids",
            "give session_ids (up to 50) or a sessions filter",
        )),
        (Some(ids), None) => {
            let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
            for id in ids {
                if !unique.contains(id) {
                    unique.push(*id);
                }
            }
            if unique.is_empty() {
                return Err(ApiError::bad_request("session_ids", "session_ids is empty"));
            }
            if unique.len() > MAX_BATCH {
                return Err(ApiError::bad_request(
                    "session_ids",
                    format!(
                        "at most {MAX_BATCH} sessions per batch, got {}",
                        unique.len()
                    ),
                ));
            }
            let mut q = cs::Entity::find()
                .select_only()
                .column(cs::Column::Id)
                .filter(cs::Column::Id.is_in(unique.clone()));
            if let Some(t) = scope.tenant() {
                q = q.filter(cs::Column::TenantId.eq(t));
            }
            let found: Vec<Uuid> = q.into_tuple().all(db).await?;
            let missing: Vec<String> = unique
                .iter()
                .filter(|id| !found.contains(id))
                .map(Uuid::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "sessions {}",
                    missing.join(", ")
                )));
            }
            Ok(unique)
        }
        (None, Some(filter)) => {
            if let Some(l) = req.limit
                && !(1..=MAX_BATCH as u32).contains(&l)
            {
                return Err(ApiError::bad_request(
                    "limit",
                    format!("limit must be between 1 and {MAX_BATCH}, got {l}"),
                ));
            }
            let no_match = || ApiError::NotFound("session matching the filter".into());
            let Some(q) = filter_sessions(scope, filter) else {
                return Err(no_match());
            };
            let matched = q.clone().count(db).await?;
            if matched == 0 {
                return Err(no_match());
            }
            if req.limit.is_none() && matched > MAX_BATCH as u64 {
                return Err(ApiError::bad_request(
                    "filter",
                    format!(
                        "the filter matches {matched} sessions; at most {MAX_BATCH} per batch: narrow it or set limit"
                    ),
                ));
            }
            let take = req.limit.map_or(MAX_BATCH as u64, u64::from);
            Ok(q.select_only()
                .column(cs::Column::Id)
                .order_by_desc(cs::Column::StartedAt)
                .order_by_desc(cs::Column::Id)
                .limit(take)
                .into_tuple()
                .all(db)
                .await?)
        }
    }
}

/// Enqueue a batch analysis of up to 50 sessions.
///
/// Workers (every replica's) take the sessions in order, a few at a time; provider calls are
/// bounded per provider across the process and yield to single analyses.
#[utoipa::path(post, path = "/api/v1/analysis/batch", tag = "analysis", request_body = BatchRequest,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Enqueued; poll the job", body = BatchView),
        (status = 400, description = "More than 50 sessions, unknown sessions, a bad filter or provider", body = ErrorBody,
            example = json!({"code": "bad_request", "message": "at most 50 sessions per batch, got 51", "details": {"parameter": "session_ids"}})),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "A session id that does not exist (or is another tenant's), or a filter that matches nothing", body = ErrorBody),
        (status = 409, description = "A provider that is not configured", body = ErrorBody),
        (status = 503, description = "No STT provider configured", body = ErrorBody),
    ))]
pub async fn create_batch(
    State(state): State<AppState>,
    scope: Scope,
    body: Result<Json<BatchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let names = req
        .providers
        .as_ref()
        .map(|p| p.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(","));
    let providers = parse_providers(&state, names.as_deref())?;
    let language = check_language(req.language.as_deref())?;
    let sessions = resolve_batch(&state.0.db, &scope, &req).await?;
    let new = NewJob {
        kind: JobKind::Batch,
        tenant: scope.tenant().map(str::to_string),
        sessions,
        providers,
        language,
        filter: req
            .filter
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
    };
    let (job_row, _) = jobs::create_job(&state.0.db, &new, None).await?;
    state.0.analysis.wake.notify_one();
    tracing::info!(job = %job_row.id, sessions = job_row.total, "batch analysis enqueued");
    let id = job_row.id;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(batch_view(&state.0.db, job_row).await?),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/analysis/batch/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn load_job(state: &AppState, scope: &Scope, raw: &str) -> Result<job::Model, ApiError> {
    let id = parse_uuid("job_id", raw)?;
    match job::Entity::find_by_id(id).one(&state.0.db).await? {
        Some(j) if scope.tenant().is_none() || j.tenant_id.as_deref() == scope.tenant() => Ok(j),
        _ => Err(ApiError::NotFound(format!("analysis job {id}"))),
    }
}

/// Progress of an analysis job.
#[utoipa::path(get, path = "/api/v1/analysis/batch/{job_id}", tag = "analysis", params(("job_id" = uuid::Uuid, Path, description = "Job id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The job, its counts and every session's status", body = BatchView),
        (status = 400, description = "A bad job id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such job (or another tenant's)", body = ErrorBody),
    ))]
pub async fn get_batch(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    let j = load_job(&state, &scope, &raw).await?;
    Ok(Json(batch_view(&state.0.db, j).await?))
}

/// Cancel an analysis job: no new session starts, in-flight provider calls are aborted.
#[utoipa::path(post, path = "/api/v1/analysis/batch/{job_id}/cancel", tag = "analysis", params(("job_id" = uuid::Uuid, Path, description = "Job id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Cancelled (also when it already was)", body = BatchView),
        (status = 400, description = "A bad job id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such job (or another tenant's)", body = ErrorBody),
        (status = 409, description = "The job already completed", body = ErrorBody),
    ))]
pub async fn cancel_batch(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    let j = load_job(&state, &scope, &raw).await?;
    if j.status == "completed" {
        return Err(ApiError::Conflict(format!(
            "analysis job {} already completed",
            j.id
        )));
    }
    if jobs::cancel_job(&state.0, j.id).await? {
        tracing::info!(job = %j.id, "analysis job cancelled");
    }
    let j = load_job(&state, &scope, &raw).await?;
    Ok(Json(batch_view(&state.0.db, j).await?))
}
