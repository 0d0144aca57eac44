//! Post-call analytics over HTTP: a call's row, re-runs, backfill jobs, the review queue and
//! accuracy, and the dashboards. Handlers only extract and map; the work is in `crate::analytics`.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, parse_uuid};
use super::sessions::load_session;
use crate::analytics::backfill::{self, BackfillFilter, BackfillJob};
use crate::analytics::dashboards::{
    self, IntentStats, Overview, QualityPoint, TopLead, TrendSeries, Window,
};
use crate::analytics::review::{self, Accuracy};
use crate::analytics::store::{self, CallAnalyticsView};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::analytics_queue as aq;
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.0.analytics.enabled() {
        Ok(())
    } else {
        Err(ApiError::Unavailable(
            "post-call analytics is off (INSIGHTS_ANALYTICS=off)".into(),
        ))
    }
}

/// The call's analytics row.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/analytics", tag = "analytics",
    params(("session_id" = uuid::Uuid, Path, description = "Session id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The call's analytics: `status` completed, skipped (with the reason in `error`) or failed (with `error` and the raw answer)", body = CallAnalyticsView),
        (status = 400, description = "A bad session id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session, or not analysed yet (`details.hint` says why)", body = ErrorBody),
    ))]
pub async fn get_session_analytics(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<CallAnalyticsView>, ApiError> {
    let session = load_session(&state, &scope, &raw).await?;
    let app = &state.0;
    if let Some(row) = store::find(&app.db, session.id).await? {
        let mut view = CallAnalyticsView::of(&row, &app.analytics.keys);
        view.transcript_version = crate::recordings::store::version_of_report(
            &app.db,
            session.id,
            row.analyzed_report_seq,
        )
        .await?;
        return Ok(Json(view));
    }
    let queued = aq::Entity::find_by_id(session.id).one(&app.db).await?;
    let hint = match (&queued, app.analytics.enabled(), session.is_final) {
        (Some(q), _, _) => format!(
            "analytics is {} (attempt {}); GET again shortly",
            q.status, q.attempts
        ),
        (None, false, _) => "post-call analytics is off (INSIGHTS_ANALYTICS=off)".to_string(),
        (None, true, false) => "analytics runs once the call's final report arrives".to_string(),
        (None, true, true) => format!(
            "not analysed; POST /api/v1/sessions/{}/analytics runs it",
            session.id
        ),
    };
    Err(ApiError::NotYet {
        message: format!("session {} has no analytics yet", session.id),
        hint,
    })
}

fn accepted(job: BackfillJob) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(&job)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/analytics/backfill/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Re-run the call's analytics now (even when nothing changed), as a one-call job.
///
/// The previous result stays served until the new one is stored.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/analytics", tag = "analytics",
    params(("session_id" = uuid::Uuid, Path, description = "Session id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued; progress at the job's URL (`Location`)", body = BackfillJob),
        (status = 400, description = "A bad session id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The call's analytics is running now", body = ErrorBody),
        (status = 503, description = "Analytics is off", body = ErrorBody),
    ))]
pub async fn rerun_session_analytics(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let session = load_session(&state, &scope, &raw).await?;
    enabled(&state)?;
    Ok(accepted(
        backfill::rerun(&state.0.db, &scope, &session).await?,
    ))
}

/// A reviewer's verdicts: per field `{"correct": true}`, or `{"correct": false, "value": <corrected>}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// Who reviewed (free text, e.g. an email).
    #[schema(max_length = 200)]
    pub reviewer: Option<String>,
    #[schema(example = json!({"sentiment": {"correct": true}, "intent": {"correct": false, "value": "complaint"}, "sentiment_score": {"correct": false, "value": -0.4}}))]
    pub verdicts: review::ReviewVerdicts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub id: Uuid,
    pub session_id: Uuid,
    pub reviewer: Option<String>,
    #[schema(value_type = Object)]
    pub verdicts: serde_json::Value,
    pub reviewed_at: DateTime<Utc>,
}

/// Record a reviewer's verdict on the call's analytics.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/analytics/review", tag = "analytics",
    params(("session_id" = uuid::Uuid, Path, description = "Session id")),
    request_body = ReviewRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Stored", body = ReviewView),
        (status = 400, description = "Unknown fields or malformed verdicts", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session, or no analytics to review", body = ErrorBody),
        (status = 409, description = "The analytics is not a completed one", body = ErrorBody),
    ))]
pub async fn review_session_analytics(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Result<Json<ReviewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let session = load_session(&state, &scope, &raw).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let r = review::review_session(&state.0.db, session.id, req.reviewer, req.verdicts).await?;
    Ok((
        StatusCode::CREATED,
        Json(ReviewView {
            id: r.id,
            session_id: r.session_id,
            reviewer: r.reviewer,
            verdicts: r.verdicts,
            reviewed_at: r.reviewed_at,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantParams {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
}

/// The tenant a request reads: its key's, or the one asked for by an operator key.
fn tenant_of(scope: &Scope, asked: Option<String>) -> Result<Option<String>, ApiError> {
    // Ingest stores NUL as U+FFFD (PostgreSQL text cannot hold NUL): compare the same way.
    let asked = asked.map(|t| t.replace('\0', "\u{FFFD}"));
    match (scope.tenant(), asked.filter(|t| !t.is_empty())) {
        (Some(own), Some(a)) if a != own => Err(ApiError::NotFound(format!("tenant {a}"))),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, a) => Ok(a),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewQueue {
    /// Today's sample size per tenant (`INSIGHTS_ANALYTICS_REVIEW_PER_DAY`).
    pub per_day: usize,
    pub items: Vec<CallAnalyticsView>,
}

/// Today's review sample: completed analyses not yet reviewed, drawn at random per tenant and day.
#[utoipa::path(get, path = "/api/v1/analytics/review-queue", tag = "analytics", params(TenantParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The sample (stable within a day; reviewed items leave it)", body = ReviewQueue),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_review_queue(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<TenantParams>,
) -> Result<Json<ReviewQueue>, ApiError> {
    let tenant = tenant_of(&scope, p.tenant_id)?;
    let a = &state.0.analytics;
    let per_day = a.settings.review_per_day;
    let items = review::queue(a, &state.0.db, tenant.as_deref(), per_day).await?;
    Ok(Json(ReviewQueue { per_day, items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccuracyParams {
    pub tenant_id: Option<String>,
    /// Reviews of the last N days, 1–366 (default 30).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
}

/// Agreement of reviewers with the analytics, per field, and sentiment MAE, by analyzer, model,
/// prompt version and week.
#[utoipa::path(get, path = "/api/v1/analytics/accuracy", tag = "analytics", params(AccuracyParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Per group and week", body = Accuracy),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_accuracy(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<AccuracyParams>,
) -> Result<Json<Accuracy>, ApiError> {
    let tenant = tenant_of(&scope, p.tenant_id)?;
    let days = p.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(
            "days",
            format!("days must be between 1 and 366, got {days}"),
        ));
    }
    Ok(Json(
        review::accuracy(&state.0.db, tenant.as_deref(), days).await?,
    ))
}

/// Queue a backfill over stored final calls.
#[utoipa::path(post, path = "/api/v1/analytics/backfill", tag = "analytics", request_body = BackfillFilter,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued; progress at the job's URL (`Location`)", body = BackfillJob),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
        (status = 503, description = "Analytics is off", body = ErrorBody),
    ))]
pub async fn create_backfill(
    State(state): State<AppState>,
    scope: Scope,
    body: Result<Json<BackfillFilter>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(filter) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    enabled(&state)?;
    Ok(accepted(
        backfill::create(&state.0.db, &scope, filter).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Most jobs, 1–200 (default 50), newest first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillList {
    pub items: Vec<BackfillJob>,
}

/// Backfill jobs, newest first, with their progress.
#[utoipa::path(get, path = "/api/v1/analytics/backfill", tag = "analytics", params(JobListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Jobs", body = BackfillList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_backfills(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<JobListParams>,
) -> Result<Json<BackfillList>, ApiError> {
    let limit = super::sessions::page_limit(p.limit)?;
    Ok(Json(BackfillList {
        items: backfill::list(&state.0.db, &scope, u64::from(limit)).await?,
    }))
}

/// A backfill job's progress.
#[utoipa::path(get, path = "/api/v1/analytics/backfill/{job_id}", tag = "analytics",
    params(("job_id" = uuid::Uuid, Path, description = "Job id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The job", body = BackfillJob),
        (status = 400, description = "A bad job id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn get_backfill(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<BackfillJob>, ApiError> {
    let id = parse_uuid("job_id", &raw)?;
    Ok(Json(backfill::get(&state.0.db, &scope, id).await?))
}

/// Cancel what a backfill has not started; running calls finish.
#[utoipa::path(post, path = "/api/v1/analytics/backfill/{job_id}/cancel", tag = "analytics",
    params(("job_id" = uuid::Uuid, Path, description = "Job id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Cancelled", body = BackfillJob),
        (status = 400, description = "A bad job id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is no longer running", body = ErrorBody),
    ))]
pub async fn cancel_backfill(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<BackfillJob>, ApiError> {
    let id = parse_uuid("job_id", &raw)?;
    Ok(Json(backfill::cancel(&state.0.db, &scope, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    /// Calls that started in the last N days, 1–366 (default 7; `hours` wins when both are given).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
    /// Calls that started in the last N hours, 1–8784.
    #[param(minimum = 1, maximum = 8784)]
    pub hours: Option<i64>,
}

fn window(scope: &Scope, p: WindowParams, default_hours: i64) -> Result<Window, ApiError> {
    let tenant = tenant_of(scope, p.tenant_id)?;
    if let Some(d) = p.days.filter(|d| !(1..=366).contains(d)) {
        return Err(ApiError::bad_request(
            "days",
            format!("days must be between 1 and 366, got {d}"),
        ));
    }
    if let Some(h) = p.hours.filter(|h| !(1..=8784).contains(h)) {
        return Err(ApiError::bad_request(
            "hours",
            format!("hours must be between 1 and 8784, got {h}"),
        ));
    }
    // `hours` is the finer of the two: it wins when both are given.
    let hours = p.hours.or(p.days.map(|d| d * 24)).unwrap_or(default_hours);
    let mut w = Window::last_hours(tenant, p.agent_id.filter(|a| !a.is_empty()), hours);
    // Ingest stores no NUL (it becomes U+FFFD), so a value holding one matches nothing.
    w.impossible = [&w.tenant_id, &w.agent_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !crate::error::storable(v)));
    Ok(w)
}

/// Calls, analysed calls, duration, sentiment, resolutions, intents, escalation rate, hot leads.
#[utoipa::path(get, path = "/api/v1/analytics/overview", tag = "analytics", params(WindowParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Totals over the window", body = Overview),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_overview(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<Overview>, ApiError> {
    let w = window(&scope, p, 7 * 24)?;
    Ok(Json(dashboards::overview(&state.0.db, &w).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopLeadParams {
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    /// Calls that started in the last N days, 1–366 (`hours` wins when both are given).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
    /// Calls that started in the last N hours, 1–8784 (default 24).
    #[param(minimum = 1, maximum = 8784)]
    pub hours: Option<i64>,
    /// 1–200 (default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopLeads {
    pub items: Vec<TopLead>,
}

/// The highest lead scores of the window, highest first.
#[utoipa::path(get, path = "/api/v1/analytics/top-leads", tag = "analytics", params(TopLeadParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Leads", body = TopLeads),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_top_leads(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<TopLeadParams>,
) -> Result<Json<TopLeads>, ApiError> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("limit must be between 1 and 200, got {limit}"),
        ));
    }
    let w = window(
        &scope,
        WindowParams {
            tenant_id: p.tenant_id,
            agent_id: p.agent_id,
            days: p.days,
            hours: p.hours,
        },
        24,
    )?;
    Ok(Json(TopLeads {
        items: dashboards::top_leads(&state.0.db, &state.0.analytics.keys, &w, u64::from(limit))
            .await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentimentTrend {
    pub series: Vec<TrendSeries>,
}

/// Average caller sentiment per agent and day.
#[utoipa::path(get, path = "/api/v1/analytics/sentiment-trend", tag = "analytics", params(WindowParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One series per agent", body = SentimentTrend),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_sentiment_trend(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<SentimentTrend>, ApiError> {
    let w = window(&scope, p, 7 * 24)?;
    Ok(Json(SentimentTrend {
        series: dashboards::sentiment_trend(&state.0.db, &w).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentList {
    pub items: Vec<IntentStats>,
}

/// Calls, satisfaction, escalations and top topics per intent.
#[utoipa::path(get, path = "/api/v1/analytics/intents", tag = "analytics", params(WindowParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Most frequent first", body = IntentList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_intents(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<IntentList>, ApiError> {
    let w = window(&scope, p, 7 * 24)?;
    Ok(Json(IntentList {
        items: dashboards::intents(&state.0.db, &w).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualityList {
    pub items: Vec<QualityPoint>,
}

/// Technical quality beside business outcome, per agent and day: calls, share with issues, p95
/// end-to-end latency, average sentiment, escalation rate.
#[utoipa::path(get, path = "/api/v1/analytics/quality", tag = "analytics", params(WindowParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Per agent and day", body = QualityList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_quality(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<QualityList>, ApiError> {
    let w = window(&scope, p, 7 * 24)?;
    Ok(Json(QualityList {
        items: dashboards::quality(&state.0.db, &w).await?,
    }))
}
