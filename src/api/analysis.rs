//! Full-call STT analysis: run one now (or join the running one), read the stored one, list them;
//! batch jobs of up to 50 sessions with progress and cancel. The runs themselves live in
//! `analysis::jobs`; these handlers create jobs, read their rows and wait for them.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::extract::parse_uuid;
use super::sessions::{load_session, page_limit};
use crate::stt::ProviderId;
use crate::stt_replay::batch::{self, check_language, parse_providers};
pub use crate::stt_replay::batch::{
    BatchItem, BatchRequest, BatchView, ItemStatus, JobKindFilter, JobList, JobStatus, batch_view,
    resolve_batch,
};
use crate::stt_replay::replay::ProviderInfo;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::session_analyses as sa;
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
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

impl From<sa::Status> for AnalysisStatus {
    fn from(s: sa::Status) -> Self {
        match s {
            sa::Status::Running => AnalysisStatus::Running,
            sa::Status::Completed => AnalysisStatus::Completed,
            sa::Status::Failed => AnalysisStatus::Failed,
            sa::Status::Cancelled => AnalysisStatus::Cancelled,
        }
    }
}

impl From<AnalysisStatus> for sa::Status {
    fn from(s: AnalysisStatus) -> Self {
        match s {
            AnalysisStatus::Running => sa::Status::Running,
            AnalysisStatus::Completed => sa::Status::Completed,
            AnalysisStatus::Failed => sa::Status::Failed,
            AnalysisStatus::Cancelled => sa::Status::Cancelled,
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
        status: row.status.into(),
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

/// Waits until the session's analysis is no longer `running` (or `deadline`).
async fn wait_settled(state: &AppState, session: Uuid, deadline: tokio::time::Instant) {
    while tokio::time::Instant::now() < deadline {
        match sa::Entity::find_by_id(session).one(&state.0.db).await {
            Ok(Some(r)) if r.status != sa::Status::Running => return,
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
    let running = row.status == sa::Status::Running;
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
    let providers = parse_providers(&state.0.stt, p.providers.as_deref())?;
    let language = check_language(p.language.as_deref())?;
    batch::start_single(
        &state.0.analysis_runner(),
        &scope,
        session.id,
        providers,
        language,
    )
    .await?;
    if p.wait.unwrap_or(false) {
        wait_settled(&state, session.id, wait_deadline(&state)).await;
    }
    analysis_response(&state, session.id).await
}

/// A stored result as served: the grid is absent with `view=summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisResultView {
    pub summary: crate::stt_replay::summary::AnalysisSummary,
    pub grid: Option<crate::stt_replay::replay::SessionReplay>,
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
    let (rows, next_cursor) = crate::stt_replay::results::list(
        &state.0.db,
        &crate::stt_replay::results::Filter {
            scope_tenant: scope.tenant(),
            tenant: p.tenant_id.as_deref(),
            status: p.status.map(sa::Status::from),
            cursor: p.cursor.as_deref(),
            limit,
        },
    )
    .await?;
    Ok(Json(AnalysisList {
        items: rows.into_iter().map(|r| view(r, false)).collect(),
        next_cursor,
    }))
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
    let list = batch::list_jobs(
        &state.0.db,
        &scope,
        p.status,
        p.kind,
        p.limit,
        p.cursor.as_deref(),
    )
    .await?;
    Ok(Json(list))
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
    let providers = parse_providers(&state.0.stt, names.as_deref())?;
    let language = check_language(req.language.as_deref())?;
    let view = batch::create(
        &state.0.analysis_runner(),
        &scope,
        &req,
        providers,
        language,
    )
    .await?;
    let id = view.job_id;
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/analysis/batch/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
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
    let j = batch::load_job(&state.0.db, &scope, parse_uuid("job_id", &raw)?).await?;
    Ok(Json(batch::batch_view(&state.0.db, j).await?))
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
    Ok(Json(
        batch::cancel(
            &state.0.analysis_runner(),
            &scope,
            parse_uuid("job_id", &raw)?,
        )
        .await?,
    ))
}
