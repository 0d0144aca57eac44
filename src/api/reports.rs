//! User STT reports: a QA engineer (or the agent's own UI) files a transcription issue against one
//! user turn. The turn's clip is cut from the stored audio, kept in the short-term store and copied
//! to the long-term archive; the report's analysis sends the clip to every provider and scores each
//! transcript against what the user actually said (`expected_output`).

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::extract::parse_uuid;
use crate::stt_replay::batch::{check_language, parse_providers};
use crate::stt_reports::{self as domain, report_view};
pub use crate::stt_reports::{
    IssueType, NewReport, ReportAnalysisResult, ReportAudioStatus, ReportList, ReportView,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::stt_reports as rep;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// File an STT issue against a user turn.
///
/// Cuts the turn's clip (the STT input when recorded, else the post- or pre-suppression slice),
/// stores it in the short-term store and copies it to the archive. A turn whose audio cannot be
/// kept is still reported (`audio_status: missing`, `audio_error` says why).
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", request_body = NewReport,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Filed", body = ReportView),
        (status = 400, description = "A bad field", body = ErrorBody,
            example = json!({"code": "bad_request", "message": "expected_output is longer than 10000 characters", "details": {"parameter": "expected_output"}})),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session, or no such user turn in it", body = ErrorBody,
            example = json!({"code": "not_found", "message": "user turn 3 of session 6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11 (it is an assistant turn; reports are about user turns) not found"})),
    ))]
pub async fn create_report(
    State(state): State<AppState>,
    scope: Scope,
    body: Result<Json<NewReport>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let view = domain::create(&state.0.reports(), &scope, req).await?;
    let id = view.id;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/reports/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportListParams {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    pub session_id: Option<Uuid>,
    pub call_id: Option<String>,
    #[param(inline)]
    pub issue_type: Option<IssueType>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Cursor from a previous page's `next_cursor` (treat it as opaque).
    #[param(pattern = r"^-?[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// List STT reports, newest first.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of reports", body = ReportList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_reports(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<ReportListParams>,
) -> Result<Json<ReportList>, ApiError> {
    let f = domain::ReportFilter {
        tenant_id: p.tenant_id,
        session_id: p.session_id,
        call_id: p.call_id,
        issue_type: p.issue_type,
        limit: p.limit,
        cursor: p.cursor,
    };
    Ok(Json(domain::list(&state.0.db, &scope, &f).await?))
}

async fn load_report(state: &AppState, scope: &Scope, raw: &str) -> Result<rep::Model, ApiError> {
    Ok(domain::load(&state.0.db, scope, parse_uuid("report_id", raw)?).await?)
}

/// One STT report.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}", tag = "reports", params(("report_id" = uuid::Uuid, Path, description = "Report id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The report", body = ReportView),
        (status = 400, description = "A bad report id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such report (or another tenant's)", body = ErrorBody),
    ))]
pub async fn get_report(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    Ok(Json(report_view(load_report(&state, &scope, &raw).await?)))
}

/// Download the reported clip (WAV): the short-term copy, or the archive's once that is gone.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}/audio", tag = "reports", params(("report_id" = uuid::Uuid, Path, description = "Report id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The clip, a WAV file (binary; no JSON schema); `X-Audio-Source` says which copy (`short_term` or `archive`)", content_type = "audio/wav"),
        (status = 400, description = "A bad report id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such report, or no clip was kept for it", body = ErrorBody),
    ))]
pub async fn get_report_audio(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let r = load_report(&state, &scope, &raw).await?;
    let Some((bytes, source)) = domain::clip_bytes(&state.0.reports(), &r).await? else {
        return Err(ApiError::NotFound(format!(
            "clip of report {}{}",
            r.id,
            r.audio_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert("x-audio-source", HeaderValue::from_static(source));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"report-{}.wav\"", r.id)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyzeParams {
    /// Comma-separated providers; every configured one when absent or empty.
    #[param(
        pattern = r"^$|^(groq|deepgram|cartesia|elevenlabs|gladia|openai)(,(groq|deepgram|cartesia|elevenlabs|gladia|openai))*$"
    )]
    pub providers: Option<String>,
    /// Language hint [default, also when empty: INSIGHTS_STT_LANGUAGE].
    #[param(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
}

/// A report's stored analysis.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAnalysis {
    pub report_id: Uuid,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub analyzed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The clip and the turn through every provider; `wer_vs_expected` scores against
    /// `expected_output`.
    #[schema(value_type = Option<ReportAnalysisResult>)]
    pub result: Option<serde_json::Value>,
}

/// Run the provider comparison on the reported clip, scored against `expected_output`.
///
/// Runs now (interactive priority at every provider) and answers with the stored analysis.
#[utoipa::path(post, path = "/api/v1/reports/{report_id}/analyze", tag = "reports", params(("report_id" = uuid::Uuid, Path, description = "Report id"), AnalyzeParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The analysis (`status: failed` with `error` when the clip is gone)", body = ReportAnalysis),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such report", body = ErrorBody),
        (status = 409, description = "A provider that is not configured", body = ErrorBody),
        (status = 503, description = "No STT provider configured", body = ErrorBody),
    ))]
pub async fn analyze_report(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    ApiQuery(p): ApiQuery<AnalyzeParams>,
) -> Result<Json<ReportAnalysis>, ApiError> {
    let r = load_report(&state, &scope, &raw).await?;
    let providers = parse_providers(&state.0.stt, p.providers.as_deref())?;
    let language = check_language(p.language.as_deref())?;
    domain::analyze(&state.0.reports(), &r, providers, language).await?;
    report_analysis(&state, &scope, &raw).await
}

async fn report_analysis(
    state: &AppState,
    scope: &Scope,
    raw: &str,
) -> Result<Json<ReportAnalysis>, ApiError> {
    let r = load_report(state, scope, raw).await?;
    let Some(status) = r.analysis_status else {
        return Err(ApiError::NotYet {
            message: format!("report {} has not been analysed", r.id),
            hint: format!("POST /api/v1/reports/{}/analyze runs the analysis", r.id),
        });
    };
    Ok(Json(ReportAnalysis {
        report_id: r.id,
        status,
        analyzed_at: r.analyzed_at,
        error: r.analysis_error,
        result: r.analysis,
    }))
}

/// A report's stored analysis.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}/analysis", tag = "reports", params(("report_id" = uuid::Uuid, Path, description = "Report id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The stored analysis", body = ReportAnalysis),
        (status = 400, description = "A bad report id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such report, or not analysed yet (`details.hint`)", body = ErrorBody),
    ))]
pub async fn get_report_analysis(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<ReportAnalysis>, ApiError> {
    report_analysis(&state, &scope, &raw).await
}
