//! Recordings in the UI: the list with the upload form (streamed through the same intake as the
//! API, with upload progress), a recording's status while it is worked on, its original audio, and the
//! recorded call's panel on the session page — both channels' waveforms on one time axis with silences
//! and talk-over marked, conversation metrics, transcript versions with the switch, the channel map.

use super::auth::Ctx;
use super::{UiError, render};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::conversation::ConversationMetrics;
use crate::recordings::store::{self, Filter, RecordingView};
use crate::recordings::{Status, intake};
use axum::Extension;
use axum::extract::{Form, FromRequest, Multipart, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub cursor: String,
}

fn parse_id(raw: &str) -> Result<Uuid, UiError> {
    Ok(crate::api::extract::parse_uuid("recording_id", raw)?)
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let f = Filter {
        status: Some(q.status.trim().to_string()).filter(|s| !s.is_empty()),
        cursor: Some(q.cursor.trim().to_string()).filter(|c| !c.is_empty()),
        limit: Some(50),
        ..Default::default()
    };
    let page = store::list(&app.db, ctx.scope.tenant(), &f)
        .await
        .map_err(ApiError::from)?;
    render(
        "recordings.html",
        &ctx,
        "recordings",
        json!({
            "items": page.items,
            "next_cursor": page.next_cursor,
            "status": q.status,
            "statuses": Status::ALL,
            "providers": app.recordings.configured(),
            "default_provider": app.recordings.settings.default_provider,
            "max_mb": app.recordings.settings.max_bytes / (1 << 20),
        }),
    )
}

/// The upload form's POST (multipart, CSRF token in the header): answers JSON for the page's script.
pub async fn upload(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    request: Request,
) -> Response {
    let app = &state.0;
    let result = async {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request("body", e.body_text()))?;
        let u = crate::api::recordings::receive_upload(multipart, &app.recordings.settings).await?;
        let a = intake::accept_upload(
            &app.recordings,
            &app.db,
            &app.store,
            ctx.scope.tenant(),
            &u.metadata,
            u.file,
            u.file_name,
            u.content_type,
        )
        .await?;
        Ok::<_, ApiError>(a)
    }
    .await;
    match result {
        Ok(a) => axum::Json(json!({"recording_id": a.recording_id, "location": format!("/recordings/{}", a.recording_id), "duplicate": a.duplicate})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A recording: its session once analysed, else its progress (the page refreshes itself).
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_id(&raw)?;
    let v = store::detail(&state.0.db, ctx.scope.tenant(), id)
        .await
        .map_err(ApiError::from)?;
    if let (Some(s), "completed") = (v.session_id, v.status.as_str()) {
        return Ok(Redirect::to(&format!("/sessions/{s}")).into_response());
    }
    let working = v.status != Status::Completed.as_str() && v.status != Status::Failed.as_str();
    render(
        "recording.html",
        &ctx,
        "recordings",
        json!({"r": v, "working": working, "steps": Status::ALL}),
    )
}

pub async fn audio(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
    request: Request,
) -> Result<Response, UiError> {
    let id = parse_id(&raw)?;
    let m = store::load(&state.0.db, ctx.scope.tenant(), id)
        .await
        .map_err(ApiError::from)?;
    Ok(crate::api::recordings::serve_original(&state.0, &m, request).await?)
}

async fn editable(
    state: &AppState,
    ctx: &Ctx,
    raw: &str,
) -> Result<entity::recordings::Model, UiError> {
    let id = parse_id(raw)?;
    Ok(store::load(&state.0.db, ctx.scope.tenant(), id)
        .await
        .map_err(ApiError::from)?)
}

fn back(m: &entity::recordings::Model) -> Response {
    Redirect::to(&format!("/recordings/{}", m.id)).into_response()
}

/// `channel_0=agent&channel_1=customer`.
pub async fn roles(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let m = editable(&state, &ctx, &raw).await?;
    let mut roles: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("channel_")?.parse().ok()?, v.clone())))
        .collect();
    roles.sort();
    let roles: Vec<String> = roles.into_iter().map(|(_, r)| r).collect();
    store::set_roles(&state.0.db, &m, &roles)
        .await
        .map_err(ApiError::from)?;
    Ok(back(&m))
}

#[derive(Debug, Deserialize)]
pub struct TranscribeForm {
    pub provider: String,
}

pub async fn transcribe(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
    Form(form): Form<TranscribeForm>,
) -> Result<Response, UiError> {
    let m = editable(&state, &ctx, &raw).await?;
    let app = &state.0;
    let provider = app
        .recordings
        .pick_provider(Some(&form.provider))
        .map_err(ApiError::from)?;
    store::queue_transcript(&app.db, &m, provider, None)
        .await
        .map_err(ApiError::from)?;
    Ok(back(&m))
}

#[derive(Debug, Deserialize)]
pub struct RecordForm {
    pub version: i32,
}

pub async fn record(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
    Form(form): Form<RecordForm>,
) -> Result<Response, UiError> {
    let m = editable(&state, &ctx, &raw).await?;
    store::set_transcript_of_record(&state.0.db, &m, i64::from(form.version))
        .await
        .map_err(ApiError::from)?;
    Ok(back(&m))
}

/// What the session page shows of a recorded call.
#[derive(Debug, Serialize)]
pub struct Panel {
    pub r: RecordingView,
    pub svg: String,
    pub metrics: Option<ConversationMetrics>,
    pub versions: Vec<store::TranscriptVersion>,
    pub providers: Vec<crate::stt::ProviderId>,
    pub working: bool,
}

/// The recording panel of session `session_id`, when the session has a recording.
pub async fn panel(state: &AppState, session_id: Uuid) -> Result<Option<Panel>, ApiError> {
    let db = &state.0.db;
    let Some(m) = store::of_session(db, session_id).await? else {
        return Ok(None);
    };
    let rows = store::transcripts(db, m.id).await?;
    let versions = store::versions(&rows, m.transcript_version, false);
    let waveform: Vec<Vec<f32>> = m
        .waveform
        .clone()
        .and_then(|w| serde_json::from_value(w).ok())
        .unwrap_or_default();
    let v = store::view(m);
    let svg = waveform_svg(
        &waveform,
        &v.channel_roles,
        v.duration_ms.unwrap_or(0),
        v.conversation_metrics.as_ref(),
    );
    let working = v.status != Status::Completed.as_str() && v.status != Status::Failed.as_str();
    Ok(Some(Panel {
        metrics: v.conversation_metrics.clone(),
        svg,
        versions,
        providers: state.0.recordings.configured(),
        working,
        r: v,
    }))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Both channels' waveforms on one time axis (one row per channel, labelled with its role), the
/// silences shaded grey and each talk-over red, with a minute/second axis: an inline SVG.
pub fn waveform_svg(
    waveform: &[Vec<f32>],
    roles: &[String],
    duration_ms: i64,
    metrics: Option<&ConversationMetrics>,
) -> String {
    const W: f64 = 1000.0;
    const LABEL: f64 = 90.0;
    const ROW: f64 = 56.0;
    const AXIS: f64 = 22.0;
    let rows = waveform.len().max(1);
    let h = ROW * rows as f64 + AXIS;
    let plot = W - LABEL;
    let dur = duration_ms.max(1) as f64;
    let x = |ms: i64| LABEL + plot * (ms as f64 / dur).clamp(0.0, 1.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="rec-wave" viewBox="0 0 {W} {h}" preserveAspectRatio="none" role="img" aria-label="Waveforms of each channel on one time axis, silences in grey, talk-over in red" data-duration-ms="{duration_ms}">"#
    );
    if let Some(m) = metrics {
        for s in &m.silences {
            let _ = write!(
                out,
                r#"<rect class="silence" x="{:.1}" y="0" width="{:.1}" height="{:.1}"><title>silence {:.1} s</title></rect>"#,
                x(s.start_ms),
                (x(s.end_ms) - x(s.start_ms)).max(1.0),
                ROW * rows as f64,
                s.len() as f64 / 1000.0
            );
        }
        for o in &m.overlaps {
            let _ = write!(
                out,
                r#"<rect class="talk-over" x="{:.1}" y="0" width="{:.1}" height="{:.1}"><title>{} talked over the {} for {:.1} s</title></rect>"#,
                x(o.start_ms),
                (x(o.end_ms) - x(o.start_ms)).max(1.5),
                ROW * rows as f64,
                esc(&o.by),
                esc(&o.over),
                (o.end_ms - o.start_ms) as f64 / 1000.0
            );
        }
    }
    for (c, peaks) in waveform.iter().enumerate() {
        let top = ROW * c as f64;
        let mid = top + ROW / 2.0;
        let label = if waveform.len() == 1 && roles.len() > 1 {
            "mixed (diarized)".to_string()
        } else {
            crate::recordings::turns::role_of(roles, c)
        };
        let _ = write!(
            out,
            r#"<text class="ch-label" x="4" y="{:.1}">{}</text><line class="ch-mid" x1="{LABEL}" y1="{mid:.1}" x2="{W}" y2="{mid:.1}"/>"#,
            mid + 4.0,
            esc(&label)
        );
        // One column per SVG unit: the loudest peak of the 100 ms steps that fall in it.
        let cols = plot as usize;
        let n = peaks.len().max(1);
        let mut d = String::new();
        for col in 0..cols {
            let a = col * n / cols;
            let b = ((col + 1) * n / cols).max(a + 1).min(n);
            let p = peaks
                .get(a..b)
                .map_or(0.0, |s| s.iter().copied().fold(0.0f32, f32::max));
            if p <= 0.0 {
                continue;
            }
            let amp = f64::from(p.min(1.0)) * (ROW / 2.0 - 3.0);
            let xx = LABEL + col as f64 + 0.5;
            let _ = write!(d, "M{xx:.1} {:.1}V{:.1}", mid - amp, mid + amp);
        }
        let _ = write!(out, r#"<path class="ch-wave ch-{c}" d="{d}"/>"#);
    }
    // Axis: a tick every 10 s up to 2 min, then every minute (every 5 past 20 min).
    let step = if duration_ms <= 120_000 {
        10_000
    } else if duration_ms <= 1_200_000 {
        60_000
    } else {
        300_000
    };
    let base = ROW * rows as f64;
    let mut t = 0;
    while t <= duration_ms {
        let xx = x(t);
        let _ = write!(
            out,
            r#"<line class="tick" x1="{xx:.1}" y1="{base:.1}" x2="{xx:.1}" y2="{:.1}"/><text class="tick-label" x="{:.1}" y="{:.1}">{}</text>"#,
            base + 4.0,
            xx + 2.0,
            base + 16.0,
            super::clock(t as f64).trim_end_matches(".0")
        );
        t += step;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Overlap, Span};

    #[test]
    fn the_waveform_picture_marks_silences_and_talk_over_on_one_axis() {
        let metrics = crate::conversation::compute(&crate::conversation::Input::default(), 10_000);
        let mut m = metrics;
        m.silences = vec![Span {
            start_ms: 10_000,
            end_ms: 25_000,
        }];
        m.overlaps = vec![Overlap {
            by: "customer".into(),
            over: "agent".into(),
            start_ms: 50_000,
            end_ms: 52_000,
        }];
        let wave = vec![vec![0.5; 600], vec![0.0; 600]];
        let svg = waveform_svg(
            &wave,
            &["customer".into(), "agent".into()],
            60_000,
            Some(&m),
        );
        assert!(svg.contains(r#"class="silence" x="241.7""#), "{svg}");
        assert!(svg.contains("customer talked over the agent for 2.0 s"));
        assert!(svg.contains(">customer</text>") && svg.contains(">agent</text>"));
        assert_eq!(svg.matches("class=\"tick\"").count(), 7);
        assert!(!svg.contains("<script"));
    }
}
