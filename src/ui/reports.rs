//! The STT reports list with their clips and analyses, and a report's analysis (through
//! `stt_reports`).

use super::auth::Ctx;
use super::{UiError, render};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::api::urls::{base_url, object_url};
use crate::stt_replay::batch;
use crate::stt_reports::{self as reports, ReportFilter};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
pub struct ReportsQuery {
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub cursor: String,
}

pub async fn reports(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ReportsQuery>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let app = &state.0;
    let session_id = match q.session_id.trim() {
        "" => None,
        s => Some(crate::api::extract::parse_uuid("session_id", s)?),
    };
    let f = ReportFilter {
        session_id,
        cursor: Some(q.cursor.trim().to_string()).filter(|c| !c.is_empty()),
        limit: Some(50),
        ..ReportFilter::default()
    };
    let page = reports::list(&app.db, &ctx.scope, &f).await?;
    let base = base_url(app, &headers);
    let ids: Vec<uuid::Uuid> = page.items.iter().map(|r| r.id).collect();
    let analyses = reports::analyses(&app.db, &ids).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for r in &page.items {
        let url = match &r.source_s3_key {
            Some(k) => Some(
                object_url(app, &base, None, k)
                    .await
                    .map_err(ApiError::internal)?
                    .0,
            ),
            None => None,
        };
        let best = analyses.get(&r.id).map(best_providers);
        items.push(json!({"r": r, "url": url, "analysis": best}));
    }
    render(
        "reports.html",
        &ctx,
        "reports",
        json!({"items": items, "next_cursor": page.next_cursor, "session_id": session_id}),
    )
}

/// A report analysis's cells (the reported clip and the turn's renditions through every provider),
/// best WER against what the user said first.
fn best_providers(a: &serde_json::Value) -> serde_json::Value {
    let clip = a
        .pointer("/clip/rendition")
        .map(|r| ("reported clip".to_string(), r));
    let turn = a
        .pointer("/turn/renditions")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .map(|r| {
            let label = r.get("rendition").and_then(|v| v.as_str()).unwrap_or("?");
            (format!("turn's {label}"), r)
        });
    let mut cells: Vec<serde_json::Value> = clip
        .into_iter()
        .chain(turn)
        .flat_map(|(label, r)| {
            r.get("results")
                .and_then(|x| x.as_array())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |c| {
                    json!({
                        "rendition": label,
                        "provider": c.get("provider"),
                        "transcript": c.pointer("/transcription/transcript"),
                        "wer": c.pointer("/wer_vs_expected/wer"),
                        "error": c.pointer("/error/message"),
                    })
                })
        })
        .collect();
    cells.sort_by(|x, y| {
        let w = |v: &serde_json::Value| v.get("wer").and_then(|w| w.as_f64()).unwrap_or(f64::MAX);
        w(x).total_cmp(&w(y))
    });
    json!(cells)
}

/// Run the report's provider comparison now, then show it in the list.
pub async fn analyze_report(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let r = reports::load(&app.db, &ctx.scope, parse_uuid("report_id", &id)?).await?;
    let providers = batch::parse_providers(&app.stt, None)?;
    reports::analyze(&app.reports(), &r, providers, None).await?;
    Ok(Redirect::to(&format!(
        "/reports?session_id={}#report-{}",
        r.session_id, r.id
    ))
    .into_response())
}
