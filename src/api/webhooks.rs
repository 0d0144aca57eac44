//! Webhook endpoints and their deliveries over HTTP (tenant-scoped); the work is in `crate::webhooks`.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, parse_uuid};
use crate::webhooks::{self, NewEndpoint};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use entity::{webhook_deliveries as wd, webhook_endpoints as we};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
pub enum WebhookEvent {
    #[serde(rename = "call.analyzed")]
    CallAnalyzed,
    #[serde(rename = "lead.hot")]
    LeadHot,
    #[serde(rename = "call.escalated")]
    CallEscalated,
    #[serde(rename = "call.issue_detected")]
    CallIssueDetected,
}

impl WebhookEvent {
    fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::CallAnalyzed => "call.analyzed",
            WebhookEvent::LeadHot => "lead.hot",
            WebhookEvent::CallEscalated => "call.escalated",
            WebhookEvent::CallIssueDetected => "call.issue_detected",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: http(s), a public host (loopback, private and link-local addresses
    /// are refused unless `INSIGHTS_WEBHOOK_ALLOW_PRIVATE=true`).
    #[schema(
        example = "https://example.com/hooks/call-insights",
        max_length = 2048,
        pattern = r"^https?://((([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)|(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
    )]
    pub url: String,
    /// At least one event.
    #[schema(min_items = 1)]
    pub events: Vec<WebhookEvent>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The tenant whose events are sent; required with an operator key (403 without), implied by a
    /// tenant key.
    #[schema(max_length = 200)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    /// False once the receiver answered 410 Gone (see `disabled_reason`).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&we::Model> for WebhookView {
    fn from(m: &we::Model) -> Self {
        WebhookView {
            id: m.id,
            tenant_id: m.tenant_id.clone(),
            url: m.url.clone(),
            events: m
                .events
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            description: m.description.clone(),
            enabled: m.enabled,
            disabled_reason: m.disabled_reason.clone(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret (`whsec_…`): shown once, keep it.
    pub secret: String,
}

/// Register a webhook endpoint.
///
/// Deliveries follow Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature`
/// (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the secret's base64 part).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Registered; the secret is in this answer only", body = CreatedWebhook),
                (status = 400, description = "A malformed URL or body", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "The target is refused (a private, loopback or link-local address, or a host off INSIGHTS_WEBHOOK_ALLOWED_HOSTS), or an operator key gave no tenant_id", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    scope: Scope,
    body: Result<Json<CreateWebhookRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let tenant_id = match (scope.tenant(), req.tenant_id.filter(|t| !t.is_empty())) {
        (Some(own), Some(t)) if t != own => return Err(ApiError::NotFound(format!("tenant {t}"))),
        (Some(own), _) => own.to_string(),
        (None, Some(t)) => t,
        (None, None) => {
            return Err(ApiError::Forbidden(
                "an operator key registers webhooks for a named tenant: give tenant_id".into(),
            ));
        }
    };
    if tenant_id.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "tenant_id",
            "tenant_id is longer than 200 characters",
        ));
    }
    if req
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 500)
    {
        return Err(ApiError::bad_request(
            "description",
            "description is longer than 500 characters",
        ));
    }
    // PostgreSQL text cannot hold NUL: it becomes U+FFFD, as ingest does.
    let tenant_id = tenant_id.replace('\0', "\u{FFFD}");
    let description = req.description.map(|d| d.replace('\0', "\u{FFFD}"));
    let app = &state.0;
    let (model, secret) = webhooks::create_endpoint(
        &app.db,
        &app.analytics.keys,
        &app.webhooks.settings,
        NewEndpoint {
            tenant_id,
            url: req.url,
            events: req.events.iter().map(|e| e.as_str().to_string()).collect(),
            description,
        },
    )
    .await?;
    tracing::info!(webhook_id = %model.id, tenant_id = %model.tenant_id, "webhook registered");
    let mut r = (
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: WebhookView::from(&model),
            secret,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/webhooks/{}", model.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// Registered endpoints.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Endpoints (never their secrets)", body = WebhookList),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    scope: Scope,
) -> Result<Json<WebhookList>, ApiError> {
    let rows = webhooks::list_endpoints(&state.0.db, &scope).await?;
    Ok(Json(WebhookList {
        items: rows.iter().map(WebhookView::from).collect(),
    }))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path, description = "Webhook id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    ))]
pub async fn get_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = parse_uuid("webhook_id", &raw)?;
    let m = webhooks::get_endpoint(&state.0.db, &scope, id).await?;
    Ok(Json(WebhookView::from(&m)))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path, description = "Webhook id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_uuid("webhook_id", &raw)?;
    webhooks::delete_endpoint(&state.0.db, &scope, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header (the same on every attempt).
    pub message_id: String,
    pub event_type: String,
    pub session_id: Option<Uuid>,
    /// `pending`, `delivered`, `failed` (retries exhausted) or `disabled` (endpoint gone).
    pub status: String,
    pub attempts: i32,
    /// Each attempt: `at`, `status_code`, `error`, `duration_ms` (the last 20).
    #[schema(value_type = Vec<Object>)]
    pub attempt_log: serde_json::Value,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<wd::Model> for DeliveryView {
    fn from(d: wd::Model) -> Self {
        DeliveryView {
            id: d.id,
            message_id: d.message_id,
            event_type: d.event_type,
            session_id: d.session_id,
            status: sea_orm::ActiveEnum::to_value(&d.status),
            attempts: d.attempts,
            attempt_log: d.attempt_log,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Newest first, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An endpoint's deliveries, newest first, with their attempts.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path, description = "Webhook id"), DeliveryParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deliveries", body = DeliveryList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = parse_uuid("webhook_id", &raw)?;
    let limit = super::sessions::page_limit(p.limit)?;
    let rows = webhooks::list_deliveries(&state.0.db, &scope, id, u64::from(limit)).await?;
    Ok(Json(DeliveryList {
        items: rows.into_iter().map(DeliveryView::from).collect(),
    }))
}

/// Send a delivery again now (a failed one gets a new round of retries).
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path, description = "Webhook id"), ("delivery_id" = uuid::Uuid, Path, description = "Delivery id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued for delivery now", body = DeliveryView),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such webhook or delivery", body = ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = ErrorBody),
    ))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    scope: Scope,
    Path((raw, raw_delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_uuid("webhook_id", &raw)?;
    let delivery = parse_uuid("delivery_id", &raw_delivery)?;
    let d = webhooks::retry_delivery(&state.0.db, &scope, id, delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(d))).into_response())
}
