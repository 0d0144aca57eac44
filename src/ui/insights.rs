//! Business pages: dashboards (overview, sentiment per agent, top leads, intents, quality per agent)
//! and the analytics review queue with the accuracy-over-time chart, from `analytics::dashboards`
//! and `analytics::review` like the API's.

use super::auth::Ctx;
use super::{UiError, render};
use crate::analytics::dashboards::{self, Window};
use crate::analytics::review::{self, FieldVerdict, REVIEWABLE, ReviewVerdicts};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::sessions as domain;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
pub struct DashQuery {
    #[serde(default)]
    pub days: String,
    #[serde(default)]
    pub agent_id: String,
}

pub async fn dashboards(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DashQuery>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let days: i64 = match q.days.trim() {
        "" => 7,
        d => d
            .parse()
            .ok()
            .filter(|d| (1..=366).contains(d))
            .ok_or_else(|| {
                ApiError::bad_request("days", format!("days must be 1–366, got {d:?}"))
            })?,
    };
    let agent = Some(q.agent_id.trim().to_string()).filter(|a| !a.is_empty());
    let w = Window::last_hours(
        ctx.scope.tenant().map(str::to_string),
        agent.clone(),
        days * 24,
    );
    let db = &app.db;
    let (overview, trend, leads, intents, quality) = tokio::try_join!(
        dashboards::overview(db, &w),
        dashboards::sentiment_trend(db, &w),
        dashboards::top_leads(db, &app.analytics.keys, &w, 10),
        dashboards::intents(db, &w),
        dashboards::quality(db, &w),
    )?;
    let agents = domain::agents(db, &ctx.scope).await?;
    let share_issues = {
        let (n, with) = quality.iter().fold((0i64, 0.0), |(n, s), p| {
            (
                n + p.calls,
                s + p.share_with_issues.unwrap_or(0.0) * p.calls as f64,
            )
        });
        (n > 0).then(|| with / n as f64)
    };
    let p95 = quality
        .iter()
        .filter_map(|p| p.p95_e2e_latency_ms)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let charts = json!({
        "since": overview.since,
        "trend": trend,
        "quality": quality,
    });
    render(
        "dashboards.html",
        &ctx,
        "dashboards",
        json!({
            "days": days,
            "agent_id": agent,
            "agents": agents,
            "overview": overview,
            "share_with_issues": share_issues,
            "worst_p95_ms": p95,
            "trend": trend,
            "leads": leads,
            "intents": intents,
            "quality": quality,
            "charts": super::script_json(&charts),
        }),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ReviewQuery {
    #[serde(default)]
    pub i: Option<usize>,
    #[serde(default)]
    pub done: Option<String>,
}

pub async fn review(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ReviewQuery>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let a = &app.analytics;
    let tenant = ctx.scope.tenant();
    let (queue, accuracy) = tokio::try_join!(
        review::queue(a, &app.db, tenant, a.settings.review_per_day),
        review::accuracy(&app.db, tenant, 90),
    )?;
    let i = q.i.unwrap_or(0).min(queue.len().saturating_sub(1));
    let current = queue.get(i);
    let transcript = match current {
        Some(c) => domain::turns_of(&app.db, c.session_id).await?,
        None => Vec::new(),
    };
    let fields: Vec<Value> = current
        .map(|c| {
            let v = serde_json::to_value(c).unwrap_or_default();
            REVIEWABLE
                .iter()
                .map(|f| json!({"name": f, "value": display(v.get(*f))}))
                .collect()
        })
        .unwrap_or_default();
    render(
        "review.html",
        &ctx,
        "review",
        json!({
            "queue_len": queue.len(),
            "i": i,
            "current": current,
            "fields": fields,
            "transcript": transcript.iter().map(|t| json!({"turn_index": t.turn_index, "role": t.role, "content": t.content})).collect::<Vec<_>>(),
            "accuracy": accuracy,
            "accuracy_chart": super::script_json(&json!(accuracy.groups)),
            "done": q.done,
            "per_day": a.settings.review_per_day,
        }),
    )
}

fn display(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "—".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// A corrected value as typed: a number, true/false, a comma list (topics), or text.
fn typed(field: &str, raw: &str) -> Value {
    let raw = raw.trim();
    match field {
        "sentiment_score" | "lead_score" | "satisfaction" => raw
            .parse::<f64>()
            .ok()
            .and_then(|n| {
                if field == "sentiment_score" {
                    serde_json::Number::from_f64(n).map(Value::Number)
                } else {
                    Some(json!(n.round() as i64))
                }
            })
            .unwrap_or_else(|| json!(raw)),
        "escalated" => match raw {
            "true" | "yes" => json!(true),
            "false" | "no" => json!(false),
            other => json!(other),
        },
        "topics" => json!(
            raw.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        ),
        "entities" => serde_json::from_str(raw).unwrap_or_else(|_| json!(raw)),
        _ => json!(raw),
    }
}

/// `verdict_<field>=correct|wrong` and `value_<field>=…` into the API's verdicts.
fn verdicts_of(form: &[(String, String)]) -> Result<ReviewVerdicts, ApiError> {
    let mut map = serde_json::Map::new();
    for f in REVIEWABLE {
        let verdict = form
            .iter()
            .find(|(k, _)| k == &format!("verdict_{f}"))
            .map(|(_, v)| v.as_str());
        let value = form
            .iter()
            .find(|(k, _)| k == &format!("value_{f}"))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty());
        let v = match verdict {
            Some("correct") => FieldVerdict {
                correct: true,
                value: None,
            },
            Some("wrong") => FieldVerdict {
                correct: false,
                value: value.map(|v| typed(f, v)),
            },
            _ => continue,
        };
        map.insert(
            f.to_string(),
            serde_json::to_value(v).map_err(ApiError::internal)?,
        );
    }
    if map.is_empty() {
        return Err(ApiError::bad_request(
            "verdicts",
            "mark at least one field correct (y) or wrong (n) before saving",
        ));
    }
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request("verdicts", e.to_string()))
}

pub async fn submit_review(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let s = domain::load(&app.db, &ctx.scope, parse_uuid("session_id", &id)?).await?;
    let verdicts = verdicts_of(&form)?;
    let reviewer = form
        .iter()
        .find(|(k, _)| k == "reviewer")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    review::review_session(&app.db, s.id, reviewer, verdicts).await?;
    Ok(Redirect::to(&format!("/review?done={}", s.call_id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_verdicts_become_the_apis() {
        let form = vec![
            ("verdict_sentiment".to_string(), "correct".to_string()),
            ("verdict_sentiment_score".into(), "wrong".into()),
            ("value_sentiment_score".into(), "-0.4".into()),
            ("verdict_topics".into(), "wrong".into()),
            ("value_topics".into(), "billing, refund".into()),
            ("verdict_intent".into(), "".into()),
        ];
        let v = serde_json::to_value(verdicts_of(&form).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"sentiment": {"correct": true}, "sentiment_score": {"correct": false, "value": -0.4},
                "topics": {"correct": false, "value": ["billing", "refund"]}})
        );
        assert!(verdicts_of(&[]).is_err());
    }
}
