//! Recordings over HTTP: upload (multipart, streamed to disk) or URL import, list, detail, the original
//! audio, the channel map, transcript versions and the transcript of record; and Twilio's
//! RecordingStatusCallback, authenticated by its signature rather than an API key.

use super::AppState;
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, parse_uuid};
use crate::recordings::Error;
use crate::recordings::intake::{self, Accepted, Metadata, TwilioOutcome, UrlImport};
use crate::recordings::spool::Spool;
use crate::recordings::store::{self, Filter, RecordingList, RecordingView, TranscriptVersion};
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use utoipa::ToSchema;
use uuid::Uuid;

/// Multipart upload: the audio and optional metadata (any other part is refused).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RecordingUpload {
    /// The recording (WAV with PCM, μ-law or A-law; MP3; FLAC; Ogg/Vorbis; Ogg/Opus), streamed; at most
    /// `INSIGHTS_RECORDING_MAX_BYTES`.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// JSON metadata.
    metadata: Option<Metadata>,
}

fn created(a: Accepted) -> Response {
    let code = if a.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/api/v1/recordings/{}", a.recording_id);
    let mut r = (code, Json(a)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Analyse a call recording.
///
/// `multipart/form-data` with a `file` part (and an optional `metadata` JSON part), or JSON with a
/// `url` to fetch. Answers 202 with the recording's id at once; the transcription, turns, conversation
/// metrics, diagnosis and analytics follow (`GET /api/v1/recordings/{id}` shows the progress). The
/// same bytes uploaded twice for one tenant answer 200 with the first recording (`duplicate: true`).
#[utoipa::path(post, path = "/api/v1/recordings", tag = "recordings",
    request_body(content((RecordingUpload = "multipart/form-data"), (UrlImport = "application/json"))),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 200, description = "The same recording was already here", body = Accepted),
        (status = 400, description = "A bad part or field", body = ErrorBody,
            example = json!({"code": "bad_request", "message": "no `file` part: send the audio as multipart part `file`", "details": {"parameter": "file"}})),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 413, description = "Larger than INSIGHTS_RECORDING_MAX_BYTES", body = ErrorBody),
        (status = 415, description = "Neither multipart nor JSON", body = ErrorBody),
        (status = 409, description = "The provider asked for has no API key here", body = ErrorBody),
        (status = 503, description = "No recording provider has an API key", body = ErrorBody),
    ))]
pub async fn create_recording(
    State(state): State<AppState>,
    scope: Scope,
    request: Request,
) -> Result<Response, ApiError> {
    let app = &state.0;
    let ct = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/json") {
        let bytes = axum::body::to_bytes(request.into_body(), 64 << 10)
            .await
            .map_err(|_| ApiError::bad_request("body", "the JSON body is larger than 64 KiB"))?;
        let body: UrlImport = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("body", format!("invalid JSON body: {e}")))?;
        let (url, meta) = body.split();
        let a = intake::accept_url(&app.recordings, &app.db, scope.tenant(), &url, &meta).await?;
        return Ok(created(a));
    }
    if !ct.starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(
            "send multipart/form-data (part `file`, optional part `metadata`) or application/json with a `url`".into(),
        ));
    }
    let multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let upload = receive_upload(multipart, &app.recordings.settings).await?;
    let a = intake::accept_upload(
        &app.recordings,
        &app.db,
        &app.store,
        scope.tenant(),
        &upload.metadata,
        upload.file,
        upload.file_name,
        upload.content_type,
    )
    .await?;
    Ok(created(a))
}

/// An upload as received: the `file` part spooled to disk, the `metadata` part parsed.
pub struct Upload {
    pub metadata: Metadata,
    pub file: crate::recordings::spool::Spooled,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
}

/// Streams a multipart upload's `file` part to disk (never whole in memory, refused past the limit)
/// and reads its `metadata` part; the UI's upload goes through it too.
pub async fn receive_upload(
    mut multipart: Multipart,
    settings: &crate::recordings::Settings,
) -> Result<Upload, ApiError> {
    let mut meta: Option<Metadata> = None;
    let mut file = None;
    let mut file_name = None;
    let mut file_type = None;
    let mut seen: Vec<String> = Vec::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, settings.max_bytes))?
    {
        match field.name() {
            Some(name @ ("metadata" | "file")) if seen.contains(&name.to_string()) => {
                return Err(ApiError::bad_request(
                    if name == "file" { "file" } else { "metadata" },
                    format!("more than one `{name}` part: send one"),
                ));
            }
            Some("metadata") => {
                seen.push("metadata".into());
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request("metadata", e.body_text()))?;
                if !text.trim().is_empty() {
                    let parsed: Option<Metadata> = serde_json::from_str(&text).map_err(|e| {
                        ApiError::bad_request(
                            "metadata",
                            format!("metadata is not valid JSON: {e}"),
                        )
                    })?;
                    meta = parsed;
                }
            }
            Some("file") => {
                seen.push("file".into());
                file_name = field.file_name().map(str::to_string);
                file_type = field.content_type().map(str::to_string);
                let mut spool = Spool::create(&settings.spool_dir, settings.max_bytes).await?;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| multipart_error(e, settings.max_bytes))?
                {
                    spool.write(&chunk).await?;
                }
                file = Some(spool.finish().await?);
            }
            other => {
                return Err(ApiError::bad_request(
                    "body",
                    format!(
                        "unknown part {:?}: send the audio as part `file` and, optionally, JSON as part `metadata`",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| {
        ApiError::bad_request(
            "file",
            "no `file` part: send the audio as multipart part `file`",
        )
    })?;
    Ok(Upload {
        metadata: meta.unwrap_or_default(),
        file,
        file_name,
        content_type: file_type,
    })
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!(
            "the recording is larger than {limit} bytes (INSIGHTS_RECORDING_MAX_BYTES)"
        ))
    } else {
        ApiError::bad_request("body", e.body_text())
    }
}

/// List recordings, newest first.
#[utoipa::path(get, path = "/api/v1/recordings", tag = "recordings", params(Filter),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of recordings", body = RecordingList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ))]
pub async fn list_recordings(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<Json<RecordingList>, ApiError> {
    Ok(Json(store::list(&state.0.db, scope.tenant(), &f).await?))
}

/// One recording: status, session, what the file is, metrics and transcript versions.
#[utoipa::path(get, path = "/api/v1/recordings/{recording_id}", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The recording", body = RecordingView),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such recording (or another tenant's, or erased)", body = ErrorBody),
    ))]
pub async fn get_recording(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<RecordingView>, ApiError> {
    let id = parse_uuid("recording_id", &raw)?;
    Ok(Json(store::detail(&state.0.db, scope.tenant(), id).await?))
}

/// The original recording, byte for byte (or a redirect to a time-limited URL on S3).
#[utoipa::path(get, path = "/api/v1/recordings/{recording_id}/audio", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    security(("api_key" = [])),
    responses(
        (status = 400, description = "A bad id or field", body = ErrorBody),
        (status = 200, description = "The original bytes, with the content type they were stored with", content(
            ("audio/wav"), ("audio/mpeg"), ("audio/flac"), ("audio/ogg"), ("application/octet-stream"))),
        (status = 307, description = "A time-limited URL to the object (S3)"),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such recording, or its audio is not stored yet", body = ErrorBody),
    ))]
pub async fn get_recording_audio(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let app = &state.0;
    let id = parse_uuid("recording_id", &raw)?;
    let m = store::load(&app.db, scope.tenant(), id).await?;
    serve_original(app, &m, request).await
}

/// The original bytes of a recording: the file (filesystem store, with ranges) or a redirect to a
/// time-limited URL (S3). The UI's player uses it too.
pub async fn serve_original(
    app: &crate::app::App,
    m: &entity::recordings::Model,
    request: Request,
) -> Result<Response, ApiError> {
    let id = m.id;
    let key = m
        .object_key
        .clone()
        .ok_or_else(|| ApiError::NotFound(format!("audio of recording {id} (not fetched yet)")))?;
    let content_type = m
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    match app.store.local_path(&key) {
        Some(Ok(path)) => {
            if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Err(ApiError::NotFound(format!("audio of recording {id}")));
            }
            let served = tower_http::services::ServeFile::new(&path)
                .oneshot(request)
                .await
                .map_err(ApiError::internal)?;
            let (mut parts, body) = served.into_response().into_parts();
            if parts.status.is_success()
                && let Ok(v) = HeaderValue::from_str(&content_type)
            {
                parts.headers.insert(header::CONTENT_TYPE, v);
            }
            parts.headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            );
            Ok(Response::from_parts(parts, Body::new(body)))
        }
        Some(Err(e)) => Err(ApiError::internal(e)),
        None => {
            let url = app
                .store
                .presigned_get(None, &key, crate::api::audio::URL_TTL)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::NotFound(format!("audio of recording {id}")))?;
            Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response())
        }
    }
}

/// A new channel map.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channels": ["agent", "customer"]}))]
pub struct RolesRequest {
    /// Channel (or diarized speaker, in order of first appearance) → role.
    #[schema(min_items = 1, max_items = 8)]
    pub channels: Vec<intake::RoleName>,
}

/// Correct the channel → role map: turns, metrics, diagnosis and analytics are derived again from the
/// transcript of record (no new transcription).
#[utoipa::path(put, path = "/api/v1/recordings/{recording_id}/roles", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    request_body = RolesRequest, security(("api_key" = [])),
    responses(
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 202, description = "Derivation queued", body = RecordingView),
        (status = 400, description = "A bad map", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "The recording failed, or is a duplicate of another", body = ErrorBody),
    ))]
pub async fn put_roles(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Result<Json<RolesRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let id = parse_uuid("recording_id", &raw)?;
    let app = &state.0;
    let m = store::load(&app.db, scope.tenant(), id).await?;
    let roles: Vec<String> = req.channels.iter().map(|r| r.0.clone()).collect();
    store::set_roles(&app.db, &m, &roles).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(store::detail(&app.db, scope.tenant(), id).await?),
    )
        .into_response())
}

/// A re-transcription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "assemblyai"}))]
pub struct TranscriptRequest {
    /// `deepgram`, `assemblyai`, `gladia`, `elevenlabs` or `openai`.
    #[schema(pattern = r"^(deepgram|assemblyai|gladia|elevenlabs|openai)$")]
    pub provider: String,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub model: Option<String>,
}

/// Every transcript version, with provider, model, time and WER against the transcript of record.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptList {
    pub transcript_version: Option<i32>,
    pub items: Vec<TranscriptVersion>,
}

/// Transcribe the stored original again (another provider or model): a new version.
#[utoipa::path(post, path = "/api/v1/recordings/{recording_id}/transcripts", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    request_body = TranscriptRequest, security(("api_key" = [])),
    responses(
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 202, description = "The new version, queued", body = TranscriptVersion),
        (status = 400, description = "Unknown provider", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "No stored audio to transcribe", body = ErrorBody),
        (status = 409, description = "The provider has no API key here", body = ErrorBody),
        (status = 503, description = "No recording provider has an API key", body = ErrorBody),
    ))]
pub async fn create_transcript(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Result<Json<TranscriptRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let id = parse_uuid("recording_id", &raw)?;
    let app = &state.0;
    let m = store::load(&app.db, scope.tenant(), id).await?;
    store::check_reworkable(&m)?;
    let provider = app.recordings.pick_provider(Some(&req.provider))?;
    let next = store::queue_transcript(&app.db, &m, provider, req.model).await?;
    let rows = store::transcripts(&app.db, id).await?;
    let v = store::versions(&rows, m.transcript_version, false)
        .into_iter()
        .find(|v| v.version == next)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("version {next} vanished")))?;
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

/// List transcript versions.
#[utoipa::path(get, path = "/api/v1/recordings/{recording_id}/transcripts", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    security(("api_key" = [])),
    responses(
        (status = 400, description = "A bad id or field", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 200, description = "Versions, oldest first", body = TranscriptList),
        (status = 404, description = "No such recording", body = ErrorBody),
    ))]
pub async fn list_transcripts(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<TranscriptList>, ApiError> {
    let id = parse_uuid("recording_id", &raw)?;
    let m = store::load(&state.0.db, scope.tenant(), id).await?;
    let rows = store::transcripts(&state.0.db, id).await?;
    Ok(Json(TranscriptList {
        transcript_version: m.transcript_version,
        items: store::versions(&rows, m.transcript_version, true),
    }))
}

/// One version's words (normalised) and the provider's raw answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptDetail {
    #[serde(flatten)]
    pub version: TranscriptVersion,
    pub words: Vec<crate::recordings::turns::Word>,
    /// The provider's JSON answer as it sent it.
    #[schema(value_type = Object)]
    pub raw: Option<serde_json::Value>,
}

/// One transcript version with its words and the provider's raw JSON.
#[utoipa::path(get, path = "/api/v1/recordings/{recording_id}/transcripts/{version}", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id"), ("version" = i32, Path, description = "Version")),
    security(("api_key" = [])),
    responses(
        (status = 400, description = "A bad id or field", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 200, description = "The version", body = TranscriptDetail),
        (status = 404, description = "No such recording or version", body = ErrorBody),
    ))]
pub async fn get_transcript(
    State(state): State<AppState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
) -> Result<Json<TranscriptDetail>, ApiError> {
    let id = parse_uuid("recording_id", &raw)?;
    let version: i32 = version
        .parse()
        .map_err(|_| ApiError::bad_request("version", "version is a whole number"))?;
    let m = store::load(&state.0.db, scope.tenant(), id).await?;
    let rows = store::transcripts(&state.0.db, id).await?;
    let row = rows.iter().find(|r| r.version == version).ok_or_else(|| {
        ApiError::NotFound(format!("transcript version {version} of recording {id}"))
    })?;
    let v = store::versions(std::slice::from_ref(row), m.transcript_version, true)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("transcript version {version}")))?;
    Ok(Json(TranscriptDetail {
        version: v,
        words: row
            .words
            .clone()
            .and_then(|w| serde_json::from_value(w).ok())
            .unwrap_or_default(),
        raw: row.raw.clone(),
    }))
}

/// Which version is of record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRequest {
    #[serde(deserialize_with = "crate::json_num::json_i64")]
    #[schema(minimum = 1, value_type = i64)]
    pub version: i64,
}

/// Switch the session's turns, metrics, diagnosis and analytics to another transcript version.
#[utoipa::path(put, path = "/api/v1/recordings/{recording_id}/transcript-of-record", tag = "recordings",
    params(("recording_id" = uuid::Uuid, Path, description = "Recording id")),
    request_body = RecordRequest, security(("api_key" = [])),
    responses(
        (status = 400, description = "A bad id or field", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 202, description = "Derivation queued", body = RecordingView),
        (status = 404, description = "No such recording or version", body = ErrorBody),
        (status = 409, description = "The version is not completed", body = ErrorBody),
    ))]
pub async fn put_transcript_of_record(
    State(state): State<AppState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Result<Json<RecordRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let id = parse_uuid("recording_id", &raw)?;
    let app = &state.0;
    let m = store::load(&app.db, scope.tenant(), id).await?;
    store::set_transcript_of_record(&app.db, &m, req.version).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(store::detail(&app.db, scope.tenant(), id).await?),
    )
        .into_response())
}

/// Twilio's RecordingStatusCallback.
///
/// Authenticated by `X-Twilio-Signature` (HMAC-SHA1 of `INSIGHTS_PUBLIC_BASE_URL` + this path and the
/// form fields, with the account's auth token), not by an API key; a signature that does not verify
/// answers 403 and stores nothing. Only `completed` recordings start work; the same `RecordingSid`
/// twice is one recording.
#[utoipa::path(post, path = "/api/v1/integrations/twilio/recording-status", tag = "recordings",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's callback fields (AccountSid, CallSid, RecordingSid, RecordingUrl, RecordingStatus, …)"),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 200, description = "Already queued, or not completed (nothing to do)"),
        (status = 400, description = "A field is missing", body = ErrorBody),
        (status = 403, description = "Unknown account or a signature that does not verify", body = ErrorBody),
        (status = 503, description = "INSIGHTS_PUBLIC_BASE_URL is not set (the signature covers the public URL)", body = ErrorBody),
    ))]
pub async fn twilio_recording_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let app = &state.0;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_request("body", format!("not a form body: {e}")))?;
    let base = app.recordings.settings.public_base_url.clone().ok_or_else(|| {
        ApiError::Unavailable("INSIGHTS_PUBLIC_BASE_URL is not set: Twilio signatures cover the URL Twilio calls, so the service needs to know it".into())
    })?;
    let url = format!("{base}/api/v1/integrations/twilio/recording-status");
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    match intake::accept_twilio(&app.recordings, &app.db, &url, &params, signature).await {
        Ok(TwilioOutcome::Ignored { status }) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({"ignored": true, "status": status})),
        )
            .into_response()),
        Ok(TwilioOutcome::Accepted(a)) => Ok(created(a)),
        Err(Error::Forbidden(m)) => {
            tracing::warn!(reason = %m, "Twilio callback refused");
            Err(ApiError::Forbidden(m))
        }
        Err(e) => Err(e.into()),
    }
}

/// The recording of a session (for the session page), when it has one.
pub async fn of_session(
    state: &AppState,
    session_id: Uuid,
) -> Result<Option<RecordingView>, ApiError> {
    Ok(store::of_session(&state.0.db, session_id)
        .await?
        .map(store::view))
}
