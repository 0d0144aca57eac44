//! The API's one error shape: `{"code", "message", "details"?}`. Client errors carry a stable machine
//! code; infrastructure errors are logged once with their cause and answered as a generic 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"code": "not_found", "message": "session 3f0c… not found"}))]
pub struct ErrorBody {
    /// Stable machine code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `unavailable`, `internal`.
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// Extra structured context (e.g. the offending parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        param: &'static str,
        message: String,
    },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// 404 that tells the caller how to make the thing exist.
    #[error("{message}")]
    NotYet { message: String, hint: String },
    /// 409: the resource is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// 503: the service is not set up for this (e.g. no STT provider configured).
    #[error("{0}")]
    Unavailable(String),
    /// 413: the body is larger than this route takes.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a body of a kind this route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: this key's rate limit (`INSIGHTS_RATE_LIMIT_PER_SECOND`).
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            param,
            message: message.into(),
        }
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(e.into())
    }
}

/// The domain's errors, mapped to HTTP once, here.
impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error;
        match e {
            Error::Invalid { param, message } => ApiError::BadRequest { param, message },
            Error::NotFound(what) => ApiError::NotFound(what),
            Error::NotYet { message, hint } => ApiError::NotYet { message, hint },
            Error::Conflict(m) => ApiError::Conflict(m),
            Error::Forbidden(m) => ApiError::Forbidden(m),
            Error::Unavailable(m) => ApiError::Unavailable(m),
            Error::TooLarge(m) => ApiError::TooLarge(m),
            Error::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = match &self {
            ApiError::BadRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(serde_json::json!({"parameter": param})),
            ),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::NotYet { hint, .. } => (
                StatusCode::NOT_FOUND,
                "not_found",
                Some(serde_json::json!({"hint": hint})),
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            ),
            ApiError::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                Some(serde_json::json!({"retry_after_secs": retry_after_secs})),
            ),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let message = match &self {
            ApiError::Internal(_) => "internal error; see the service log".to_string(),
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code,
                message,
                details,
            }),
        )
            .into_response();
        if let ApiError::RateLimited { retry_after_secs } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
