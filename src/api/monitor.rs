//! Live monitoring over HTTP: the Server-Sent Events stream (resumable with `Last-Event-ID` on any
//! replica), the active calls, and short-lived stream tokens for browsers' `EventSource` (which
//! cannot send headers). Tokens ride in the query string, which the request log never records.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::live::active::{self, ActiveCall};
use crate::live::hub::{Filter, Hub, Outgoing};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorToken {
    /// Pass as `?token=` to `/api/v1/monitor/stream`; bound to the key's tenant.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A short-lived token for the stream, bound to the caller's tenant.
#[utoipa::path(post, path = "/api/v1/monitor/token", tag = "monitor",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A token valid until `expires_at` (INSIGHTS_MONITOR_TOKEN_TTL_MS)", body = MonitorToken),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn create_monitor_token(
    State(state): State<AppState>,
    scope: Scope,
) -> Json<MonitorToken> {
    let (token, expires_at) =
        crate::live::token::mint(&state.0.signer, state.0.config.monitor_token_ttl_ms, &scope);
    Json(MonitorToken { token, expires_at })
}

/// The scope a token grants, or why not.
fn token_scope(state: &AppState, token: &str) -> Result<Scope, ApiError> {
    let mut parts = token.splitn(3, '.');
    let (Some(exp), Some(tenant), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::Unauthorized);
    };
    let exp: i64 = exp.parse().map_err(|_| ApiError::Unauthorized)?;
    let tenant = URL_SAFE_NO_PAD
        .decode(tenant)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ApiError::Unauthorized)?;
    state
        .0
        .signer
        .verify(
            &format!("monitor:{tenant}"),
            exp,
            sig,
            Utc::now().timestamp_millis(),
        )
        .map_err(|_| ApiError::Unauthorized)?;
    Ok(if tenant == "*" {
        Scope::All
    } else {
        Scope::Tenant(tenant)
    })
}

/// Bearer key or `?token=`.
fn scope_of(state: &AppState, headers: &HeaderMap, token: Option<&str>) -> Result<Scope, ApiError> {
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return token_scope(state, t);
    }
    state.0.api_keys.scope_of_headers(headers)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only this tenant (a tenant key or token is always limited to its own).
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    pub call_id: Option<String>,
    /// Comma-separated event types (default: all).
    #[param(
        pattern = r"^$|^(call_started|turn|issue_detected|call_ended|analytics_ready)(,(call_started|turn|issue_detected|call_ended|analytics_ready))*$"
    )]
    pub types: Option<String>,
    /// A token from `POST /api/v1/monitor/token` (for `EventSource`, which cannot send headers).
    pub token: Option<String>,
    /// Resume after this event id (the `Last-Event-ID` header wins when both are given).
    #[param(pattern = r"^$|^[0-9]{1,20}-[0-9]{1,20}$")]
    pub last_event_id: Option<String>,
}

/// Server-Sent Events of every call as it happens, on every replica.
///
/// Events `call_started`, `turn`, `issue_detected`, `call_ended`, `analytics_ready` (each with
/// `session_id`, `call_id`, `tenant_id`, `agent_id`, `at`), each with an `id:`. Reconnect with
/// `Last-Event-ID` to get exactly the events missed while they are kept; older ids get a `reset`
/// event (re-read the active calls). Keep-alive comments every 15 s; a client that stops reading is
/// dropped once `INSIGHTS_MONITOR_CLIENT_BUFFER` events are queued for it.
#[utoipa::path(get, path = "/api/v1/monitor/stream", tag = "monitor", params(StreamParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key, or a bad or expired token", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
        (status = 503, description = "Live monitoring is off (INSIGHTS_LIVE=false)", body = ErrorBody),
    ))]
pub async fn monitor_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let scope = scope_of(&state, &headers, p.token.as_deref())?;
    if !state.0.config.live {
        return Err(ApiError::Unavailable(
            "live monitoring is off (INSIGHTS_LIVE=false)".into(),
        ));
    }
    let tenant_id = match (scope.tenant(), p.tenant_id.filter(|t| !t.is_empty())) {
        (Some(own), Some(t)) if t != own => return Err(ApiError::NotFound(format!("tenant {t}"))),
        (Some(own), _) => Some(own.to_string()),
        (None, t) => t,
    };
    let mut types = Vec::new();
    for t in p
        .types
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if !crate::live::EVENT_TYPES.contains(&t) {
            return Err(ApiError::bad_request(
                "types",
                format!(
                    "unknown event type {t:?}; expected {:?}",
                    crate::live::EVENT_TYPES
                ),
            ));
        }
        types.push(t.to_string());
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(p.last_event_id)
        .filter(|l| crate::live::hub::parse_id(l).is_some());
    let filter = Filter {
        tenant_id,
        agent_id: p.agent_id.filter(|a| !a.is_empty()),
        call_id: p.call_id.filter(|c| !c.is_empty()),
        types,
    };
    let hub = state.0.live.clone();
    let rx = hub.client(filter, last);
    let sse = Sse::new(sse_stream(hub, rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    let mut r = sse.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActiveParams {
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveCalls {
    pub active_count: usize,
    pub calls: Vec<ActiveCall>,
    /// Calls silent longer than this are reported as ended (`call_ended`, `reason: timeout`).
    pub timeout_ms: u64,
}

/// Calls with a partial report and no final, newest first (at most 1,000).
#[utoipa::path(get, path = "/api/v1/monitor/active-calls", tag = "monitor", params(ActiveParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The active calls", body = ActiveCalls),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn get_active_calls(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(p): ApiQuery<ActiveParams>,
) -> Result<Json<ActiveCalls>, ApiError> {
    let tenant = match (scope.tenant(), p.tenant_id.filter(|t| !t.is_empty())) {
        (Some(own), Some(t)) if t != own => return Err(ApiError::NotFound(format!("tenant {t}"))),
        (Some(own), _) => Some(own.to_string()),
        (None, t) => t,
    };
    let agent = p.agent_id.filter(|a| !a.is_empty());
    let storable = |v: &Option<String>| v.as_deref().is_none_or(crate::error::storable);
    let timeout_ms = state.0.config.active_call_timeout_ms;
    let calls = if storable(&tenant) && storable(&agent) {
        active::active_calls(
            &state.0.db,
            tenant.as_deref(),
            agent.as_deref(),
            Duration::from_millis(timeout_ms),
            1000,
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(Json(ActiveCalls {
        active_count: calls.len(),
        calls,
        timeout_ms,
    }))
}

/// The SSE body of a client's queue (the wire form of the hub's events).
fn sse_stream(
    hub: std::sync::Arc<Hub>,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
) -> impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> {
    use axum::response::sse::Event;
    let first = futures::stream::once(async {
        Ok(Event::default()
            .retry(Duration::from_secs(3))
            .comment("connected"))
    });
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(move |o| {
        let ev = match o {
            Outgoing::Event(e) => {
                hub.metrics
                    .events_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Event::default().id(e.id.clone()).event(e.kind.clone()).data(e.body.clone())
            }
            Outgoing::Reset { last_event_id } => Event::default().event("reset").data(
                serde_json::json!({"reason": "events after this id are no longer kept; re-read /api/v1/monitor/active-calls", "last_event_id": last_event_id}).to_string(),
            ),
        };
        Ok(ev)
    });
    use futures::StreamExt;
    first.chain(rest)
}
