//! Audio access: a URL valid for one hour for a stored segment. With S3 it is rust-s3's presigned GET
//! (for `INSIGHTS_S3_PUBLIC_ENDPOINT_URL` when set); with the filesystem store it is the service's own
//! URL, signed with HMAC-SHA256 over key and expiry, served with the right Content-Type and HTTP
//! range support so an `<audio>` element can seek.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::sessions::load_session;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tower::ServiceExt;
use utoipa::{IntoParams, ToSchema};

/// How long an audio URL stays valid.
pub const URL_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AudioParams {
    /// Answer 302 to the URL instead of returning it.
    pub redirect: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"segment_id": "stt_input-0", "url": "http://127.0.0.1:8080/api/v1/audio-files/acme/call-1/stt_input-0.a9adfcbec81679df.wav?expires=1795253616&sig=6f1c…",
    "expires_at": "2026-11-21T10:13:36Z", "content_type": "audio/wav", "status": "stored"}))]
pub struct AudioUrlResponse {
    pub segment_id: String,
    /// GET it within the hour; supports HTTP range requests.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub content_type: &'static str,
    /// The segment's status (`stored`, or `error` for audio that did not decode but was kept).
    pub status: String,
}

/// A URL for a segment's audio, valid for one hour.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/audio/{segment_id}", tag = "audio",
    params(("session_id" = uuid::Uuid, Path, description = "The session's UUID"), ("segment_id" = String, Path, description = "The segment id Atlas reported"), AudioParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The URL and its expiry", body = AudioUrlResponse),
        (status = 302, description = "With `redirect=true`: to the URL"),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such session or segment, or the segment has no stored audio", body = ErrorBody,
            example = json!({"code": "not_found", "message": "audio of segment \"stt_input-9\" not found"})),
    ))]
pub async fn get_audio_url(
    State(state): State<AppState>,
    scope: Scope,
    Path((session_id, segment_id)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<AudioParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = load_session(&state, &scope, &session_id).await?;
    let not_found = || ApiError::NotFound(format!("audio of segment {segment_id:?}"));
    let g = crate::sessions::segment(&state.0.db, s.id, &segment_id)
        .await?
        .ok_or_else(not_found)?;
    let key = g
        .s3_key
        .clone()
        .filter(|_| g.status != entity::audio_segments::Status::Missing)
        .ok_or_else(not_found)?;
    let base = crate::api::urls::base_url(&state.0, &headers);
    let (url, expires_at) =
        crate::api::urls::object_url(&state.0, &base, g.bucket.as_deref(), &key)
            .await
            .map_err(ApiError::internal)?;
    if p.redirect == Some(true) {
        let location = HeaderValue::from_str(&url).map_err(ApiError::internal)?;
        return Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response());
    }
    Ok(Json(AudioUrlResponse {
        segment_id: g.segment_id,
        url,
        expires_at,
        content_type: "audio/wav",
        status: g.status.to_string(),
    })
    .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedParams {
    /// Unix time the URL expires at.
    pub expires: i64,
    /// HMAC-SHA256 of the key and `expires`, hex.
    pub sig: String,
}

/// Audio bytes behind a signed URL (filesystem store). Supports `Range`.
#[utoipa::path(get, path = "/api/v1/audio-files/{key}", tag = "audio",
    params(("key" = String, Path, description = "Object key (may contain `/`)"), SignedParams),
    responses(
        (status = 200, description = "The WAV file", content_type = "audio/wav"),
        (status = 206, description = "The requested byte range", content_type = "audio/wav"),
        (status = 400, description = "Missing expires or sig", body = ErrorBody),
        (status = 403, description = "Invalid signature or expired URL", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "URL expired"})),
        (status = 404, description = "No such object", body = ErrorBody),
    ))]
pub async fn serve_audio_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    ApiQuery(p): ApiQuery<SignedParams>,
    request: Request,
) -> Result<Response, ApiError> {
    state
        .0
        .signer
        .verify(&key, p.expires, &p.sig, Utc::now().timestamp())
        .map_err(|e| ApiError::Forbidden(e.into()))?;
    let path = match state.0.store.local_path(&key) {
        Some(Ok(path)) => path,
        Some(Err(e)) => return Err(ApiError::bad_request("key", e.to_string())),
        None => return Err(ApiError::NotFound(format!("object {key:?}"))),
    };
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(ApiError::NotFound(format!("object {key:?}")));
    }
    let served = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    let (mut parts, body) = served.into_response().into_parts();
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if parts.status.is_success() {
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    }
    if parts.status == StatusCode::NOT_FOUND {
        return Err(ApiError::NotFound(format!("object {key:?}")));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
