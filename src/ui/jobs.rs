//! Batch STT analysis jobs: start one from the sessions filter, progress, cancel (through
//! `stt_replay::batch`). The STT reports pages are in `reports.rs`.

use super::auth::Ctx;
use super::sessions::ListQuery;
use super::{UiError, render};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::stt_replay::batch::{self, BatchRequest};
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    pub cursor: String,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<JobsQuery>,
) -> Result<Response, UiError> {
    let cursor = Some(q.cursor.trim()).filter(|c| !c.is_empty());
    let jobs = batch::list_jobs(&state.0.db, &ctx.scope, None, None, Some(50), cursor).await?;
    render("batches.html", &ctx, "batches", json!({"jobs": jobs}))
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(flatten)]
    pub filter: ListQuery,
    #[serde(default)]
    pub limit: String,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<CreateForm>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let limit = match f.limit.trim() {
        "" => Some(50),
        l => Some(l.parse::<u32>().map_err(|_| {
            ApiError::bad_request("limit", format!("limit must be a number 1–50, got {l:?}"))
        })?),
    };
    let req = BatchRequest {
        session_ids: None,
        filter: Some(f.filter.filter()?),
        limit,
        providers: None,
        language: None,
    };
    let providers = batch::parse_providers(&app.stt, None)?;
    let view = batch::create(&app.analysis_runner(), &ctx.scope, &req, providers, None).await?;
    Ok(Redirect::to(&format!("/batches/{}", view.job_id)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let db = &state.0.db;
    let j = batch::load_job(db, &ctx.scope, parse_uuid("job_id", &id)?).await?;
    let view = batch::batch_view(db, j).await?;
    let finished = view.done + view.failed + view.cancelled;
    let pct = if view.total > 0 {
        finished as f64 * 100.0 / f64::from(view.total)
    } else {
        100.0
    };
    render(
        "batch.html",
        &ctx,
        "batches",
        json!({"job": view, "finished": finished, "pct": pct}),
    )
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let view = batch::cancel(
        &state.0.analysis_runner(),
        &ctx.scope,
        parse_uuid("job_id", &id)?,
    )
    .await?;
    Ok(Redirect::to(&format!("/batches/{}", view.job_id)).into_response())
}
