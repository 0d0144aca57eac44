//! Accuracy you can see: a daily random sample of completed analyses per tenant for reviewers, their
//! verdicts field by field, and agreement and sentiment MAE per analyzer, model, prompt version and
//! week, so drift shows up as a number.

use super::Analytics;
use super::store::CallAnalyticsView;
use crate::db::stmt;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use entity::{analytics_reviews as ar, call_analytics as ca};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use utoipa::ToSchema;
use uuid::Uuid;

/// Fields a reviewer can judge.
pub const REVIEWABLE: [&str; 10] = [
    "summary",
    "sentiment",
    "sentiment_score",
    "intent",
    "lead_score",
    "satisfaction",
    "escalated",
    "resolution",
    "entities",
    "topics",
];

fn seed(tenant: &str, day: NaiveDate) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tenant, day.num_days_from_ce()).hash(&mut h);
    h.finish()
}

/// Today's sample for a tenant (or every tenant): completed, unreviewed analyses of calls analysed in
/// the last 7 days, drawn with a seed of (tenant, day) so the queue is stable within a day; each
/// tenant's daily quota shrinks with the reviews already done today.
pub async fn queue(
    a: &Analytics,
    db: &DatabaseConnection,
    tenant: Option<&str>,
    per_day: usize,
) -> Result<Vec<CallAnalyticsView>, DbErr> {
    let today = Utc::now().date_naive();
    let day_start: DateTime<Utc> = today
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or_else(Utc::now);
    let backend = db.get_database_backend();
    #[derive(FromQueryResult)]
    struct Candidate {
        session_id: Uuid,
        tenant_id: String,
    }
    let mut sql = String::from(
        "SELECT a.session_id AS session_id, a.tenant_id AS tenant_id FROM call_analytics a WHERE a.status = 'completed' \
         AND a.analyzed_at >= ? AND NOT EXISTS (SELECT 1 FROM analytics_reviews r WHERE r.session_id = a.session_id)",
    );
    let mut values: Vec<sea_orm::Value> = vec![(Utc::now() - Duration::days(7)).into()];
    if let Some(t) = tenant {
        sql.push_str(" AND a.tenant_id = ?");
        values.push(t.into());
    }
    sql.push_str(" ORDER BY a.session_id LIMIT 20000");
    let candidates = Candidate::find_by_statement(stmt(backend, &sql, values))
        .all(db)
        .await?;
    #[derive(FromQueryResult)]
    struct Done {
        tenant_id: String,
        n: Option<i64>,
    }
    let done = Done::find_by_statement(stmt(
        backend,
        "SELECT tenant_id, CAST(COUNT(*) AS BIGINT) AS n FROM analytics_reviews WHERE reviewed_at >= ? GROUP BY tenant_id",
        [day_start.into()],
    ))
    .all(db)
    .await?;
    let mut by_tenant: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for c in candidates {
        by_tenant.entry(c.tenant_id).or_default().push(c.session_id);
    }
    let mut picked = Vec::new();
    for (t, mut ids) in by_tenant {
        let quota = per_day.saturating_sub(
            done.iter()
                .find(|d| d.tenant_id == t)
                .and_then(|d| d.n)
                .unwrap_or(0) as usize,
        );
        let mut rng = fastrand::Rng::with_seed(seed(&t, today));
        rng.shuffle(&mut ids);
        picked.extend(ids.into_iter().take(quota));
    }
    let rows = ca::Entity::find()
        .filter(ca::Column::SessionId.is_in(picked))
        .all(db)
        .await?;
    Ok(rows
        .iter()
        .map(|m| CallAnalyticsView::of(m, &a.keys))
        .collect())
}

/// One field's verdict: correct, or not (with the corrected value when the reviewer gives one).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldVerdict {
    pub correct: bool,
    /// The corrected value (for `sentiment_score`, a number in −1..1 feeds the MAE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Verdicts per reviewable field (at least one).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewVerdicts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub summary: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sentiment: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sentiment_score: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub intent: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub lead_score: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub satisfaction: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub escalated: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resolution: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub entities: Option<FieldVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub topics: Option<FieldVerdict>,
}

/// Stores a reviewer's verdicts on a call's analytics.
pub async fn submit(
    db: &DatabaseConnection,
    row: &ca::Model,
    reviewer: Option<String>,
    verdicts: &ReviewVerdicts,
) -> Result<ar::Model, crate::error::Error> {
    if row.status != ca::Status::Completed {
        return Err(crate::error::Error::invalid(
            "verdicts",
            format!(
                "the call's analytics is {}, only completed analyses are reviewed",
                row.status
            ),
        ));
    }
    let mut clean = match serde_json::to_value(verdicts) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if clean.is_empty() {
        return Err(crate::error::Error::invalid(
            "verdicts",
            format!("verdicts must judge at least one of {REVIEWABLE:?}"),
        ));
    }
    for v in clean.values_mut() {
        if v["correct"] == true {
            *v = json!({"correct": true});
        }
    }
    // A corrected score outside −1..1 (or not a number) is kept but feeds no MAE.
    let reviewed_sentiment = match &verdicts.sentiment_score {
        Some(v) if v.correct => row.sentiment_score,
        Some(v) => v
            .value
            .as_ref()
            .and_then(Value::as_f64)
            .filter(|x| (-1.0..=1.0).contains(x)),
        None => None,
    };
    Ok(ar::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(row.session_id),
        tenant_id: Set(row.tenant_id.clone()),
        reviewer: Set(reviewer),
        analyzer: Set(row.analyzer.clone()),
        model: Set(row.model.clone()),
        prompt_version: Set(row.prompt_version.clone()),
        verdicts: Set(Value::Object(clean)),
        analyzed_sentiment: Set(row.sentiment_score),
        reviewed_sentiment: Set(reviewed_sentiment),
        reviewed_at: Set(Utc::now()),
    }
    .insert(db)
    .await?)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldAgreement {
    pub reviewed: i64,
    pub correct: i64,
    /// correct / reviewed.
    pub agreement: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccuracyGroup {
    pub analyzer: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    /// ISO week of the reviews, `YYYY-Www`.
    pub week: String,
    pub reviews: i64,
    pub fields: BTreeMap<String, FieldAgreement>,
    /// Mean absolute error of `sentiment_score` against reviewers.
    pub sentiment_mae: Option<f64>,
    pub sentiment_reviewed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accuracy {
    pub since: DateTime<Utc>,
    pub groups: Vec<AccuracyGroup>,
}

pub async fn accuracy(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    days: i64,
) -> Result<Accuracy, DbErr> {
    let since = Utc::now() - Duration::days(days);
    let mut q = ar::Entity::find().filter(ar::Column::ReviewedAt.gte(since));
    if let Some(t) = tenant {
        q = q.filter(ar::Column::TenantId.eq(t));
    }
    let reviews = q.all(db).await?;
    type Key = (String, Option<String>, Option<String>, String);
    /// Reviews, (reviewed, correct) per field, sentiment error sum and count.
    type Tally = (i64, BTreeMap<String, (i64, i64)>, f64, i64);
    let mut groups: BTreeMap<Key, Tally> = BTreeMap::new();
    for r in reviews {
        let w = r.reviewed_at.iso_week();
        let key = (
            r.analyzer.clone(),
            r.model.clone(),
            r.prompt_version.clone(),
            format!("{}-W{:02}", w.year(), w.week()),
        );
        let g = groups.entry(key).or_default();
        g.0 += 1;
        if let Some(o) = r.verdicts.as_object() {
            for (field, v) in o {
                let e = g.1.entry(field.clone()).or_default();
                e.0 += 1;
                e.1 += i64::from(v["correct"] == true);
            }
        }
        if let (Some(a), Some(b)) = (r.analyzed_sentiment, r.reviewed_sentiment) {
            g.2 += (a - b).abs();
            g.3 += 1;
        }
    }
    Ok(Accuracy {
        since,
        groups: groups
            .into_iter()
            .map(
                |((analyzer, model, prompt_version, week), (n, fields, mae_sum, mae_n))| {
                    AccuracyGroup {
                        analyzer,
                        model,
                        prompt_version,
                        week,
                        reviews: n,
                        fields: fields
                            .into_iter()
                            .map(|(f, (rev, ok))| {
                                (
                                    f,
                                    FieldAgreement {
                                        reviewed: rev,
                                        correct: ok,
                                        agreement: (ok as f64 / rev.max(1) as f64 * 1000.0).round()
                                            / 1000.0,
                                    },
                                )
                            })
                            .collect(),
                        sentiment_mae: (mae_n > 0)
                            .then(|| (mae_sum / mae_n as f64 * 1000.0).round() / 1000.0),
                        sentiment_reviewed: mae_n,
                    }
                },
            )
            .collect(),
    })
}

/// PostgreSQL text and jsonb cannot hold NUL: it becomes U+FFFD, as ingest does. Numbers beyond
/// ±1e15 are kept as their text: jsonb writes them out digit by digit, past what a reader parses.
fn without_nul(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|x| x.abs() > 1e15) => {
            *v = serde_json::Value::String(n.to_string());
        }
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(without_nul),
        serde_json::Value::Object(o) => {
            let entries: Vec<(String, serde_json::Value)> = std::mem::take(o).into_iter().collect();
            for (k, mut x) in entries {
                without_nul(&mut x);
                o.insert(k.replace('\0', "\u{FFFD}"), x);
            }
        }
        _ => {}
    }
}

/// A reviewer's verdicts on a session's completed analytics, checked and stored (the API's and the
/// UI's one path).
pub async fn review_session(
    db: &DatabaseConnection,
    session_id: Uuid,
    reviewer: Option<String>,
    verdicts: ReviewVerdicts,
) -> Result<ar::Model, crate::error::Error> {
    use super::store;
    use crate::error::Error;
    if reviewer.as_ref().is_some_and(|r| r.chars().count() > 200) {
        return Err(Error::invalid(
            "reviewer",
            "reviewer is longer than 200 characters",
        ));
    }
    let row = store::find(db, session_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("analytics of session {}", session_id)))?;
    if row.status != ca::Status::Completed {
        return Err(Error::Conflict(format!(
            "the call's analytics is {}; only completed ones are reviewed",
            row.status
        )));
    }
    let mut verdicts = verdicts;
    for v in [
        &mut verdicts.summary,
        &mut verdicts.sentiment,
        &mut verdicts.sentiment_score,
        &mut verdicts.intent,
        &mut verdicts.lead_score,
        &mut verdicts.satisfaction,
        &mut verdicts.escalated,
        &mut verdicts.resolution,
        &mut verdicts.entities,
        &mut verdicts.topics,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(x) = v.value.as_mut() {
            without_nul(x);
        }
    }
    let reviewer = reviewer.map(|r| r.replace('\0', "\u{FFFD}"));
    submit(db, &row, reviewer, &verdicts).await
}
