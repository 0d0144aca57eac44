//! The live page: active calls rendered on the server, then kept current from the SSE stream
//! (`/api/v1/monitor/stream`, resumable with `Last-Event-ID`) with a stream token the page renews.

use super::auth::Ctx;
use super::{UiError, render};
use crate::api::AppState;
use crate::live::{active, token};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use std::time::Duration;

pub async fn page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let calls = active::active_calls(
        &app.db,
        ctx.scope.tenant(),
        None,
        Duration::from_millis(app.config.active_call_timeout_ms),
        500,
    )
    .await?;
    let (token, expires_at) = token::mint(&app.signer, app.config.monitor_token_ttl_ms, &ctx.scope);
    render(
        "live.html",
        &ctx,
        "live",
        json!({
            "calls": calls,
            "token": token,
            "token_expires_at": expires_at,
            "live_enabled": app.config.live,
            "timeout_ms": app.config.active_call_timeout_ms,
        }),
    )
}

/// A fresh stream token for the signed-in page (its `EventSource` reconnects with it).
pub async fn token(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Json<serde_json::Value> {
    let (token, expires_at) = token::mint(
        &state.0.signer,
        state.0.config.monitor_token_ttl_ms,
        &ctx.scope,
    );
    Json(json!({"token": token, "expires_at": expires_at}))
}
