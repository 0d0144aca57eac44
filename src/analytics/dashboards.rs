//! Dashboard queries, tenant-scoped, windowed by the call's `started_at` (UTC hours): overview, top
//! leads, sentiment trend, intents and quality per agent. Everything but top leads reads the hourly
//! rollups (a few rows per agent and hour, whatever the call volume); top leads reads the
//! `(tenant, lead_score, started_at)` index. Averages are over completed analyses.

use super::rollup;
use super::schema::Entities;
use crate::crypto::Keys;
use crate::db::stmt;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Which calls a dashboard counts.
#[derive(Debug, Clone)]
pub struct Window {
    /// None: every tenant (operator keys).
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    pub since: DateTime<Utc>,
    /// A filter value no stored call can have (e.g. holding NUL): everything is empty.
    pub impossible: bool,
}

impl Window {
    /// The last `hours` (whole hours, the current one included).
    pub fn last_hours(tenant_id: Option<String>, agent_id: Option<String>, hours: i64) -> Self {
        let now = Utc::now().timestamp();
        let floor =
            DateTime::from_timestamp(now - now.rem_euclid(3600), 0).unwrap_or_else(Utc::now);
        Window {
            tenant_id,
            agent_id,
            since: floor - Duration::hours(hours.max(1) - 1),
            impossible: false,
        }
    }

    fn since_hour(&self) -> String {
        rollup::hour_of(self.since)
    }

    /// ` AND …` conditions on a rollup table, with their values.
    fn rollup_where(&self) -> (String, Vec<Value>) {
        let mut sql = String::from("hour >= ?");
        let mut values: Vec<Value> = vec![self.since_hour().into()];
        if let Some(t) = &self.tenant_id {
            sql.push_str(" AND tenant_id = ?");
            values.push(t.clone().into());
        }
        if let Some(a) = &self.agent_id {
            sql.push_str(" AND agent_id = ?");
            values.push(a.clone().into());
        }
        if self.impossible {
            return ("1 = 0".into(), Vec::new());
        }
        (sql, values)
    }
}

#[derive(Debug, Serialize, ToSchema, Default)]
pub struct ResolutionCounts {
    pub resolved: i64,
    pub escalated: i64,
    pub dropped: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// Calls with an analytics row (any status) that started in the window.
    pub total_calls: i64,
    /// Completed analyses.
    pub analyzed_calls: i64,
    pub avg_duration_seconds: Option<f64>,
    pub avg_sentiment: Option<f64>,
    pub resolution: ResolutionCounts,
    /// Completed analyses per intent.
    pub intents: BTreeMap<String, i64>,
    /// Escalated share of completed analyses.
    pub escalation_rate: Option<f64>,
    pub hot_leads: i64,
    pub failed: i64,
    pub skipped: i64,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Default, FromQueryResult)]
struct Sums {
    intent: String,
    calls: Option<i64>,
    completed: Option<i64>,
    skipped: Option<i64>,
    failed: Option<i64>,
    duration_sum: Option<f64>,
    duration_n: Option<i64>,
    sentiment_sum: Option<f64>,
    sentiment_n: Option<i64>,
    escalated: Option<i64>,
    resolved: Option<i64>,
    dropped: Option<i64>,
    hot_leads: Option<i64>,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        let i = |a: &mut Option<i64>, b: Option<i64>| *a = Some(a.unwrap_or(0) + b.unwrap_or(0));
        let f =
            |a: &mut Option<f64>, b: Option<f64>| *a = Some(a.unwrap_or(0.0) + b.unwrap_or(0.0));
        i(&mut self.calls, o.calls);
        i(&mut self.completed, o.completed);
        i(&mut self.skipped, o.skipped);
        i(&mut self.failed, o.failed);
        f(&mut self.duration_sum, o.duration_sum);
        i(&mut self.duration_n, o.duration_n);
        f(&mut self.sentiment_sum, o.sentiment_sum);
        i(&mut self.sentiment_n, o.sentiment_n);
        i(&mut self.escalated, o.escalated);
        i(&mut self.resolved, o.resolved);
        i(&mut self.dropped, o.dropped);
        i(&mut self.hot_leads, o.hot_leads);
    }
}

const SUMS: &str = "CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(completed) AS BIGINT) AS completed, \
    CAST(SUM(skipped) AS BIGINT) AS skipped, CAST(SUM(failed) AS BIGINT) AS failed, \
    CAST(SUM(with_issues) AS BIGINT) AS with_issues, CAST(SUM(duration_sum) AS DOUBLE PRECISION) AS duration_sum, \
    CAST(SUM(duration_n) AS BIGINT) AS duration_n, CAST(SUM(sentiment_sum) AS DOUBLE PRECISION) AS sentiment_sum, \
    CAST(SUM(sentiment_n) AS BIGINT) AS sentiment_n, CAST(SUM(satisfaction_sum) AS DOUBLE PRECISION) AS satisfaction_sum, \
    CAST(SUM(satisfaction_n) AS BIGINT) AS satisfaction_n, CAST(SUM(escalated) AS BIGINT) AS escalated, \
    CAST(SUM(resolved) AS BIGINT) AS resolved, CAST(SUM(dropped) AS BIGINT) AS dropped, \
    CAST(SUM(hot_leads) AS BIGINT) AS hot_leads";

fn ratio(num: Option<f64>, den: Option<i64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0 => Some((n / d as f64 * 10_000.0).round() / 10_000.0),
        _ => None,
    }
}

fn n(x: Option<i64>) -> i64 {
    x.unwrap_or(0)
}

pub async fn overview(db: &DatabaseConnection, w: &Window) -> Result<Overview, DbErr> {
    let (cond, values) = w.rollup_where();
    // One scan, grouped by intent: the totals are the sum of the groups.
    let groups = Sums::find_by_statement(stmt(
        db.get_database_backend(),
        &format!("SELECT intent, {SUMS} FROM analytics_rollups WHERE {cond} GROUP BY intent"),
        values,
    ))
    .all(db)
    .await?;
    let mut s = Sums::default();
    for g in &groups {
        s.add(g);
    }
    let intents: Vec<(String, i64)> = groups
        .iter()
        .filter(|g| !g.intent.is_empty() && n(g.completed) > 0)
        .map(|g| (g.intent.clone(), n(g.completed)))
        .collect();
    Ok(Overview {
        total_calls: n(s.calls),
        analyzed_calls: n(s.completed),
        avg_duration_seconds: ratio(s.duration_sum, s.duration_n),
        avg_sentiment: ratio(s.sentiment_sum, s.sentiment_n),
        resolution: ResolutionCounts {
            resolved: n(s.resolved),
            escalated: n(s.escalated),
            dropped: n(s.dropped),
        },
        intents: intents.into_iter().collect(),
        escalation_rate: ratio(s.escalated.map(|x| x as f64), s.completed),
        hot_leads: n(s.hot_leads),
        failed: n(s.failed),
        skipped: n(s.skipped),
        since: w.since,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopLead {
    pub session_id: Uuid,
    pub call_id: String,
    pub agent_id: Option<String>,
    pub lead_score: i32,
    pub intent: Option<String>,
    pub entities: Option<Entities>,
    pub summary: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    pub hot_lead: bool,
}

#[derive(Debug, FromQueryResult)]
struct LeadRow {
    session_id: Uuid,
    call_id: String,
    agent_id: Option<String>,
    lead_score: i32,
    intent: Option<String>,
    entities: Option<String>,
    summary: Option<String>,
    ended_at: Option<DateTime<Utc>>,
    hot_lead: bool,
}

pub async fn top_leads(
    db: &DatabaseConnection,
    keys: &Keys,
    w: &Window,
    limit: u64,
) -> Result<Vec<TopLead>, DbErr> {
    let mut sql = String::from(
        "SELECT session_id, call_id, agent_id, lead_score, intent, entities, summary, ended_at, hot_lead \
         FROM call_analytics WHERE status = 'completed' AND lead_score IS NOT NULL AND started_at >= ?",
    );
    let mut values: Vec<Value> = vec![w.since.into()];
    if let Some(t) = &w.tenant_id {
        sql.push_str(" AND tenant_id = ?");
        values.push(t.clone().into());
    }
    if let Some(a) = &w.agent_id {
        sql.push_str(" AND agent_id = ?");
        values.push(a.clone().into());
    }
    if w.impossible {
        return Ok(Vec::new());
    }
    if w.impossible {
        return Ok(Vec::new());
    }
    sql.push_str(&format!(
        " ORDER BY lead_score DESC, started_at DESC LIMIT {}",
        limit.clamp(1, 200)
    ));
    let rows = LeadRow::find_by_statement(stmt(db.get_database_backend(), &sql, values))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let open = |v: &Option<String>| v.as_ref().and_then(|s| keys.open(s).ok());
            TopLead {
                session_id: r.session_id,
                call_id: r.call_id,
                agent_id: r.agent_id,
                lead_score: r.lead_score,
                intent: r.intent,
                entities: open(&r.entities).and_then(|t| serde_json::from_str(&t).ok()),
                summary: open(&r.summary),
                ended_at: r.ended_at,
                hot_lead: r.hot_lead,
            }
        })
        .collect())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrendPoint {
    /// `YYYY-MM-DD` (UTC) of the calls' start.
    pub day: String,
    pub avg_sentiment: Option<f64>,
    /// Completed analyses that day.
    pub calls: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrendSeries {
    /// Empty for calls without an agent id.
    pub agent_id: String,
    pub points: Vec<TrendPoint>,
}

#[derive(Debug, FromQueryResult)]
struct DayRow {
    agent_id: String,
    day: String,
    calls: Option<i64>,
    completed: Option<i64>,
    with_issues: Option<i64>,
    sentiment_sum: Option<f64>,
    sentiment_n: Option<i64>,
    escalated: Option<i64>,
}

async fn per_agent_day(db: &DatabaseConnection, w: &Window) -> Result<Vec<DayRow>, DbErr> {
    let (cond, values) = w.rollup_where();
    DayRow::find_by_statement(stmt(
        db.get_database_backend(),
        &format!(
            "SELECT agent_id, substr(hour, 1, 10) AS day, CAST(SUM(calls) AS BIGINT) AS calls, \
             CAST(SUM(completed) AS BIGINT) AS completed, CAST(SUM(with_issues) AS BIGINT) AS with_issues, \
             CAST(SUM(sentiment_sum) AS DOUBLE PRECISION) AS sentiment_sum, CAST(SUM(sentiment_n) AS BIGINT) AS sentiment_n, \
             CAST(SUM(escalated) AS BIGINT) AS escalated \
             FROM analytics_rollups WHERE {cond} GROUP BY agent_id, substr(hour, 1, 10) ORDER BY agent_id, day"
        ),
        values,
    ))
    .all(db)
    .await
}

pub async fn sentiment_trend(
    db: &DatabaseConnection,
    w: &Window,
) -> Result<Vec<TrendSeries>, DbErr> {
    let mut series: Vec<TrendSeries> = Vec::new();
    for r in per_agent_day(db, w).await? {
        let point = TrendPoint {
            day: r.day,
            avg_sentiment: ratio(r.sentiment_sum, r.sentiment_n),
            calls: n(r.completed),
        };
        match series.last_mut() {
            Some(s) if s.agent_id == r.agent_id => s.points.push(point),
            _ => series.push(TrendSeries {
                agent_id: r.agent_id,
                points: vec![point],
            }),
        }
    }
    Ok(series)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentStats {
    pub intent: String,
    /// Completed analyses with this intent.
    pub calls: i64,
    pub avg_satisfaction: Option<f64>,
    pub escalations: i64,
    /// The intent's most frequent topics, most frequent first (at most 5).
    pub top_topics: Vec<String>,
}

pub async fn intents(db: &DatabaseConnection, w: &Window) -> Result<Vec<IntentStats>, DbErr> {
    let backend = db.get_database_backend();
    let (cond, values) = w.rollup_where();
    #[derive(FromQueryResult)]
    struct Row {
        intent: String,
        calls: Option<i64>,
        satisfaction_sum: Option<f64>,
        satisfaction_n: Option<i64>,
        escalated: Option<i64>,
    }
    let rows = Row::find_by_statement(stmt(
        backend,
        &format!(
            "SELECT intent, CAST(SUM(completed) AS BIGINT) AS calls, CAST(SUM(satisfaction_sum) AS DOUBLE PRECISION) AS satisfaction_sum, \
             CAST(SUM(satisfaction_n) AS BIGINT) AS satisfaction_n, CAST(SUM(escalated) AS BIGINT) AS escalated \
             FROM analytics_rollups WHERE {cond} AND intent <> '' GROUP BY intent"
        ),
        values.clone(),
    ))
    .all(db)
    .await?;
    #[derive(FromQueryResult)]
    struct TopicRow {
        intent: String,
        topic: String,
        calls: Option<i64>,
    }
    let topics = TopicRow::find_by_statement(stmt(
        backend,
        &format!(
            "SELECT intent, topic, CAST(SUM(calls) AS BIGINT) AS calls FROM analytics_topic_rollups WHERE {cond} \
             GROUP BY intent, topic ORDER BY intent, calls DESC, topic"
        ),
        values,
    ))
    .all(db)
    .await?;
    let mut out: Vec<IntentStats> = rows
        .into_iter()
        .filter(|r| n(r.calls) > 0)
        .map(|r| IntentStats {
            top_topics: topics
                .iter()
                .filter(|t| t.intent == r.intent && n(t.calls) > 0)
                .take(5)
                .map(|t| t.topic.clone())
                .collect(),
            intent: r.intent,
            calls: n(r.calls),
            avg_satisfaction: ratio(r.satisfaction_sum, r.satisfaction_n),
            escalations: n(r.escalated),
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.intent.cmp(&b.intent)));
    Ok(out)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualityPoint {
    pub agent_id: String,
    pub day: String,
    pub calls: i64,
    /// Share of calls the diagnosis found issues in.
    pub share_with_issues: Option<f64>,
    /// p95 of per-turn end-to-end latency (histogram buckets 5 % wide).
    pub p95_e2e_latency_ms: Option<f64>,
    pub avg_sentiment: Option<f64>,
    pub escalation_rate: Option<f64>,
}

pub async fn quality(db: &DatabaseConnection, w: &Window) -> Result<Vec<QualityPoint>, DbErr> {
    let (cond, values) = w.rollup_where();
    #[derive(FromQueryResult)]
    struct Bucket {
        agent_id: String,
        day: String,
        bucket: i32,
        turns: Option<i64>,
    }
    let buckets = Bucket::find_by_statement(stmt(
        db.get_database_backend(),
        &format!(
            "SELECT agent_id, substr(hour, 1, 10) AS day, bucket, CAST(SUM(turns) AS BIGINT) AS turns \
             FROM analytics_latency_rollups WHERE {cond} GROUP BY agent_id, substr(hour, 1, 10), bucket"
        ),
        values,
    ))
    .all(db)
    .await?;
    let mut hist: BTreeMap<(String, String), Vec<(i32, i64)>> = BTreeMap::new();
    for b in buckets {
        hist.entry((b.agent_id, b.day))
            .or_default()
            .push((b.bucket, n(b.turns)));
    }
    Ok(per_agent_day(db, w)
        .await?
        .into_iter()
        .map(|r| {
            let p95 = hist
                .get(&(r.agent_id.clone(), r.day.clone()))
                .and_then(|h| rollup::quantile(h, 0.95))
                .map(|v| v.round());
            QualityPoint {
                share_with_issues: ratio(r.with_issues.map(|x| x as f64), r.calls),
                avg_sentiment: ratio(r.sentiment_sum, r.sentiment_n),
                escalation_rate: ratio(r.escalated.map(|x| x as f64), r.completed),
                calls: n(r.calls),
                p95_e2e_latency_ms: p95,
                agent_id: r.agent_id,
                day: r.day,
            }
        })
        .collect())
}
