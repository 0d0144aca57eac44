//! Sessions over HTTP: list, detail, by-call lookup, timeline (cached per stored version),
//! conversation and diagnosis. The queries live in [`crate::sessions`]; these handlers parse and render.

use super::AppState;
use super::auth::Scope;
use super::cache::SessionVersion;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, parse_uuid};
use crate::sessions::{self as domain, SeverityFilter};
pub use crate::sessions::{
    Component, ConversationResponse, ConversationTurn, DiagnosisResponse, IssueResponse,
    LatencyStats, LatencySummary, Outcome, Pipeline, SessionDetail, SessionFilter, SessionList,
    SessionSummary, TimelineItem, TimelineKind, TimelineResponse, TurnLatency, Vad,
    filter_sessions, page_limit,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::call_sessions as cs;
use sea_orm::{EntityTrait, QuerySelect};
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    pub call_id: Option<String>,
    pub agent_id: Option<String>,
    /// Sessions with (true) or without (false) any warning or critical issue.
    pub has_issues: Option<bool>,
    /// Sessions with at least one issue of this severity.
    #[param(inline)]
    pub severity: Option<SeverityFilter>,
    /// RFC 3339; sessions that started at or after.
    pub started_after: Option<DateTime<Utc>>,
    /// RFC 3339; sessions that started before.
    pub started_before: Option<DateTime<Utc>>,
    /// `recording` (analysed from a call recording) or `agent` (reported by an agent).
    #[param(inline)]
    pub source: Option<crate::sessions::SessionSource>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Cursor from a previous page's `next_cursor` (treat it as opaque).
    #[param(pattern = r"^-?[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// List sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(ListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of sessions", body = SessionList),
        (status = 400, description = "A bad parameter (named in `details.parameter`)", body = ErrorBody,
            example = json!({"code": "bad_request", "message": "limit must be between 1 and 200, got 500", "details": {"parameter": "limit"}})),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody,
            example = json!({"code": "unauthorized", "message": "missing or invalid API key"})),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<SessionList>, ApiError> {
    let filter = SessionFilter {
        tenant_id: p.tenant_id,
        call_id: p.call_id,
        agent_id: p.agent_id,
        has_issues: p.has_issues,
        severity: p.severity,
        started_after: p.started_after,
        started_before: p.started_before,
        source: p.source,
    };
    let list = domain::list(&state.0.db, &scope, &filter, p.limit, p.cursor.as_deref()).await?;
    Ok(Json(list))
}

/// A session the caller may see, or 404.
pub async fn load_session(
    state: &AppState,
    scope: &Scope,
    raw_id: &str,
) -> Result<cs::Model, ApiError> {
    Ok(domain::load(&state.0.db, scope, parse_uuid("session_id", raw_id)?).await?)
}

/// One session: everything stored about it, its pipeline and its latency summary.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The session", body = SessionDetail),
        (status = 400, description = "session_id is not a UUID", body = ErrorBody,
            example = json!({"code": "bad_request", "message": "session_id must be a UUID, got \"x\"", "details": {"parameter": "session_id"}})),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session (or another tenant's)", body = ErrorBody,
            example = json!({"code": "not_found", "message": "session 6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11 not found"})),
    ))]
pub async fn get_session(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let s = load_session(&state, &scope, &id).await?;
    Ok(Json(domain::detail_of(&state.0.db, &s).await?))
}

/// Resolve a call_id to its session.
#[utoipa::path(get, path = "/api/v1/sessions/by-call/{call_id}", tag = "sessions",
    params(("call_id" = String, Path, description = "The call id Atlas reported")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The session", body = SessionDetail),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No session for this call (or another tenant's)", body = ErrorBody,
            example = json!({"code": "not_found", "message": "call \"call-123\" not found"})),
    ))]
pub async fn get_session_by_call(
    State(state): State<AppState>,
    scope: Scope,
    Path(call_id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let s = domain::load_by_call(&state.0.db, &scope, &call_id).await?;
    Ok(Json(domain::detail_of(&state.0.db, &s).await?))
}

/// Events, turns and audio segments merged in time order.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/timeline", tag = "sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The timeline", body = TimelineResponse),
        (status = 400, description = "session_id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session (or another tenant's)", body = ErrorBody),
    ))]
pub async fn get_timeline(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Only what auth, the cache check and the timeline need: while subscribed to ingest's update
    // announcements this comes from memory; otherwise one narrow query per request.
    let sid = parse_uuid("session_id", &id)?;
    let versions = &state.0.session_versions;
    let v = match versions.get(sid) {
        Some(v) => v,
        None => {
            let epoch = versions.epoch();
            let row: Option<(String, i64, DateTime<Utc>, DateTime<Utc>)> =
                cs::Entity::find_by_id(sid)
                    .select_only()
                    .column(cs::Column::TenantId)
                    .column(cs::Column::ReportSeq)
                    .column(cs::Column::UpdatedAt)
                    .column(cs::Column::StartedAt)
                    .into_tuple()
                    .one(&state.0.db)
                    .await?;
            let Some((tenant_id, report_seq, updated_at, started_at)) = row else {
                return Err(ApiError::NotFound(format!("session {sid}")));
            };
            let v = SessionVersion {
                tenant_id,
                report_seq,
                updated_at,
                started_at,
            };
            versions.put(sid, v.clone(), epoch);
            v
        }
    };
    if !scope.allows(&v.tenant_id) {
        return Err(ApiError::NotFound(format!("session {sid}")));
    }
    let (report_seq, updated_at, started_at) = (v.report_seq, v.updated_at, v.started_at);
    let version = (report_seq, updated_at);
    let body = match state.0.timeline_cache.get(sid, version) {
        Some(body) => body,
        None => {
            let timeline = domain::timeline(&state.0.db, sid, started_at).await?;
            let json = serde_json::to_vec(&timeline).map_err(ApiError::internal)?;
            state.0.timeline_cache.put(sid, version, json)
        }
    };
    let accepts_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let json = HeaderValue::from_static("application/json");
    Ok(if accepts_gzip && !body.gzip.is_empty() {
        (
            [
                (header::CONTENT_TYPE, json),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            body.gzip,
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, json)], body.json).into_response()
    })
}

/// Turns in order with the per-turn latency breakdown and tool calls.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/conversation", tag = "sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The conversation", body = ConversationResponse),
        (status = 400, description = "session_id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session (or another tenant's)", body = ErrorBody),
    ))]
pub async fn get_conversation(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<ConversationResponse>, ApiError> {
    let s = load_session(&state, &scope, &id).await?;
    let turns = domain::turns_of(&state.0.db, s.id).await?;
    Ok(Json(domain::conversation(s.id, turns)))
}

/// The session's issues, most severe first, with evidence.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/diagnosis", tag = "sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The diagnosis", body = DiagnosisResponse),
        (status = 400, description = "session_id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session (or another tenant's)", body = ErrorBody),
    ))]
pub async fn get_diagnosis(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<DiagnosisResponse>, ApiError> {
    let s = load_session(&state, &scope, &id).await?;
    Ok(Json(domain::diagnosis(&state.0.db, &s).await?))
}

/// Erase a call: its rows, audio, analyses, analytics, STT reports and their clips (short-term and
/// archive), webhook deliveries, live events and cached responses, everywhere.
///
/// Idempotent: erasing an already erased session answers its earlier receipt (`already_erased`).
/// Recorded in `erasure_audit` (who, when, ids and counts; never content). A call that Atlas
/// reports again afterwards is stored again.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Erased (or already erased)", body = crate::erasure::ErasureReceipt),
        (status = 400, description = "session_id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session, never erased (or another tenant's)", body = ErrorBody),
        (status = 503, description = "The audio store is unreachable: nothing was erased; retry", body = ErrorBody),
    ))]
pub async fn delete_session(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<crate::erasure::ErasureReceipt>, ApiError> {
    let who = super::auth::requester(&state.0.api_keys, &headers);
    Ok(Json(
        crate::erasure::erase_session(
            &state.0.eraser(),
            &scope,
            parse_uuid("session_id", &id)?,
            &who,
        )
        .await?,
    ))
}

/// Erase the call with this call id, like `DELETE /api/v1/sessions/{session_id}`.
#[utoipa::path(delete, path = "/api/v1/sessions/by-call/{call_id}", tag = "sessions",
    params(("call_id" = String, Path, description = "The call id Atlas reported")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Erased (or already erased)", body = crate::erasure::ErasureReceipt),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No session for this call, never erased (or another tenant's)", body = ErrorBody),
        (status = 503, description = "The audio store is unreachable: nothing was erased; retry", body = ErrorBody),
    ))]
pub async fn delete_session_by_call(
    State(state): State<AppState>,
    scope: Scope,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<crate::erasure::ErasureReceipt>, ApiError> {
    let who = super::auth::requester(&state.0.api_keys, &headers);
    Ok(Json(
        crate::erasure::erase_call(&state.0.eraser(), &scope, &call_id, &who).await?,
    ))
}
