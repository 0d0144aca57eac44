//! The HTTP API: router and OpenAPI document assembled in one place from per-resource modules, plus
//! the middleware every request goes through (request id, tracing, timeout, body limit, CORS, gzip,
//! per-route metrics).

pub mod analysis;
pub mod analytics;
pub mod audio;
pub mod auth;
pub mod cache;
pub mod error;
pub(crate) mod extract;
mod health;
mod metrics;
pub mod monitor;
pub mod ratelimit;
pub mod recordings;
pub mod reports;
pub mod sessions;
pub mod urls;
pub mod webhooks;

use crate::app::App;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::Predicate;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An INSIGHTS_API_KEYS key: a tenant key sees its tenant, a `*` key every tenant."))
                    .build(),
            ),
        );
    }
}

/// Object-valued fields that need at least one property (utoipa has no attribute for it).
struct MinProperties;

impl Modify for MinProperties {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut("ReviewVerdicts") {
            o.min_properties = Some(1);
        }
    }
}

/// Every operation but the health checks may answer 429 when per-key rate limiting is on
/// (`INSIGHTS_RATE_LIMIT_PER_SECOND`): documented once here rather than on each handler.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let response = ResponseBuilder::new()
            .description("Over this API key's rate limit (`INSIGHTS_RATE_LIMIT_PER_SECOND`); retry after `Retry-After` seconds")
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    ))
                    .description(Some("Seconds until the key's bucket has a token again"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .example(Some(serde_json::json!({"code": "rate_limited", "message": "rate limit exceeded; retry after 1 s", "details": {"retry_after_secs": 1}})))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("429".to_string())
                    .or_insert_with(|| response.clone().into());
            }
        }
    }
}

/// Audio bodies are binary: a string of `format: binary` with its `contentMediaType`, so generated
/// clients download bytes (a WAV body described as JSON would be an array of integers).
struct BinaryBodies;

impl Modify for BinaryBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for response in op.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    for (media, content) in response.content.iter_mut() {
                        if let RefOr::T(content) = content
                            && media.starts_with("audio/")
                        {
                            content.schema = Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                                    .content_media_type(media.clone())
                                    .into(),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Request bodies that take exactly one of two fields: the document says so (`oneOf` of the two
/// `required` sets), so clients and property-based tests know.
struct ExactlyOne;

impl Modify for ExactlyOne {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, a, b) in [
            ("BatchRequest", "session_ids", "filter"),
            ("NewReport", "session_id", "call_id"),
        ] {
            let Some(original) = components.schemas.remove(name) else {
                continue;
            };
            let one_of = OneOfBuilder::new()
                .item(ObjectBuilder::new().required(a))
                .item(ObjectBuilder::new().required(b))
                .description(Some(format!("Exactly one of `{a}` and `{b}`.")));
            let wrapped: RefOr<Schema> = AllOfBuilder::new().item(original).item(one_of).into();
            components.schemas.insert(name.to_string(), wrapped);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "call-insights",
        description = "Turns every call a voice AI agent takes into evidence a QA engineer can act on: sessions, timelines, conversations, diagnosis and audio of every call Atlas reports. Errors share one shape: `{\"code\", \"message\", \"details\"?}`."
    ),
    modifiers(&BearerAuth),
    // The signed-file route takes a multi-segment key (axum `{*key}`): registered by hand in
    // `router`, documented here.
    // The recording upload has its own body limit and no request timeout: registered by hand in
    // `router` too.
    paths(audio::serve_audio_file, recordings::create_recording),
    tags(
        (name = "sessions", description = "Calls, their timeline, conversation and diagnosis"),
        (name = "audio", description = "Time-limited URLs to a call's audio"),
        (name = "analysis", description = "Full-call STT analysis: every user turn's audio (pre/post noise suppression, STT input) through every provider; batch jobs"),
        (name = "analytics", description = "Post-call analytics (summary, sentiment, intent, lead score, escalation), backfill, reviews and dashboards"),
        (name = "monitor", description = "Live monitoring: Server-Sent Events of every call as it happens, and the active calls"),
        (name = "webhooks", description = "Signed webhooks (Standard Webhooks) for analytics events"),
        (name = "reports", description = "User-filed STT issues: archived clips analysed against what the user said"),
        (name = "recordings", description = "Call recordings (upload, URL, Twilio) analysed like reported calls: transcription with speakers, turns, conversation metrics, transcript versions"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(
            sessions::get_session_by_call,
            sessions::delete_session_by_call
        ))
        .routes(routes!(sessions::get_session, sessions::delete_session))
        .routes(routes!(sessions::get_timeline))
        .routes(routes!(sessions::get_conversation))
        .routes(routes!(sessions::get_diagnosis))
        .routes(routes!(audio::get_audio_url))
        .routes(routes!(analysis::list_analyses))
        .routes(routes!(analysis::create_batch, analysis::list_batches))
        .routes(routes!(analysis::get_batch))
        .routes(routes!(analysis::cancel_batch))
        .routes(routes!(analysis::run_analysis, analysis::get_analysis))
        .routes(routes!(recordings::list_recordings))
        .routes(routes!(recordings::get_recording))
        .routes(routes!(recordings::get_recording_audio))
        .routes(routes!(recordings::put_roles))
        .routes(routes!(
            recordings::create_transcript,
            recordings::list_transcripts
        ))
        .routes(routes!(recordings::get_transcript))
        .routes(routes!(recordings::put_transcript_of_record))
        .routes(routes!(recordings::twilio_recording_status))
        .routes(routes!(reports::create_report, reports::list_reports))
        .routes(routes!(reports::get_report))
        .routes(routes!(reports::get_report_audio))
        .routes(routes!(reports::analyze_report))
        .routes(routes!(reports::get_report_analysis))
        .routes(routes!(
            analytics::get_session_analytics,
            analytics::rerun_session_analytics
        ))
        .routes(routes!(analytics::review_session_analytics))
        .routes(routes!(analytics::get_review_queue))
        .routes(routes!(analytics::get_accuracy))
        .routes(routes!(
            analytics::create_backfill,
            analytics::list_backfills
        ))
        .routes(routes!(analytics::get_backfill))
        .routes(routes!(analytics::cancel_backfill))
        .routes(routes!(analytics::get_overview))
        .routes(routes!(analytics::get_top_leads))
        .routes(routes!(analytics::get_sentiment_trend))
        .routes(routes!(analytics::get_intents))
        .routes(routes!(analytics::get_quality))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(monitor::monitor_stream))
        .routes(routes!(monitor::get_active_calls))
        .routes(routes!(monitor::create_monitor_token))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI document of the API (what `call-insights openapi` prints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().into_openapi();
    // After the routes: their schemas are only in the document once they are merged.
    ExactlyOne.modify(&mut doc);
    MinProperties.modify(&mut doc);
    RateLimited.modify(&mut doc);
    BinaryBodies.modify(&mut doc);
    doc
}

/// Records every response's duration by route template and status.
async fn record_http(
    State(AppState(app)): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    app.http_metrics.observe(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn cors(origins: Option<&str>) -> Option<CorsLayer> {
    let origins = origins.map(str::trim).filter(|o| !o.is_empty())?;
    let allow = if origins == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::RANGE,
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                axum::http::header::CONTENT_RANGE,
            ]),
    )
}

pub fn router(app: Arc<App>) -> Router {
    let (router, mut doc) = api_router().split_for_parts();
    ExactlyOne.modify(&mut doc);
    MinProperties.modify(&mut doc);
    RateLimited.modify(&mut doc);
    BinaryBodies.modify(&mut doc);
    let state = AppState(app.clone());
    let config = &app.config;
    let router =
        router
            .route(
                "/api/v1/audio-files/{*key}",
                axum::routing::get(audio::serve_audio_file),
            )
            .merge(SwaggerUi::new("/docs").url("/api-docs/openapi.json", doc))
            .merge(crate::ui::router(state.clone()))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                ratelimit::limit,
            ))
            .layer(middleware::from_fn_with_state(state.clone(), record_http))
            // Not audio: a gzipped full-length WAV loses `Accept-Ranges` and players cannot seek.
            // (`text/event-stream` is already skipped by the default predicate.)
            .layer(CompressionLayer::new().compress_when(
                tower_http::compression::predicate::DefaultPredicate::new().and(
                    tower_http::compression::predicate::NotForContentType::const_new("audio/"),
                ),
            ))
            .layer(axum::extract::DefaultBodyLimit::max(
                config.http_body_limit_bytes,
            ))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(config.http_timeout_ms),
            ));
    // Uploads: their own body limit (`INSIGHTS_RECORDING_MAX_BYTES`, checked again while streaming)
    // and no request timeout (a large file takes as long as the client's link needs).
    let uploads = Router::new()
        .route(
            "/api/v1/recordings",
            axum::routing::post(recordings::create_recording),
        )
        .merge(crate::ui::upload_router(state.clone()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record_http))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(app.recordings.settings.max_bytes.saturating_add(1 << 20))
                .unwrap_or(usize::MAX),
        ));
    let router = router.merge(uploads);
    let router = match cors(config.cors_origins.as_deref()) {
        Some(c) => router.layer(c),
        None => router,
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    router
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state)
}
