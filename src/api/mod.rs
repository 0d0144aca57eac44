//! The HTTP API: router and OpenAPI document assembled in one place from per-resource modules.

mod health;

use crate::app::App;
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "call-insights",
        description = "Turns every call a voice AI agent takes into evidence a QA engineer can act on."
    ),
    tags((name = "operations", description = "Liveness, readiness and metrics"))
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of the API (what `call-insights openapi` prints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

pub fn router(app: Arc<App>) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api-docs/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .with_state(AppState(app))
}
