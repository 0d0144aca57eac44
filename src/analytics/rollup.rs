//! Dashboard rollups kept current on write: hourly additive counters per (tenant, agent, hour,
//! intent), per-turn end-to-end latency histograms and topic counts. Each stored result adds its
//! contribution and takes back the one of the result it replaces, in the same transaction, so the
//! rollups always equal a scan of `call_analytics` (a test checks exactly that).

use crate::db::stmt;
use sea_orm::{ConnectionTrait, DbErr, Value};
use serde::{Deserialize, Serialize};

/// Histogram buckets: 5 % wide from 20 ms (bucket 0 holds everything below).
const BUCKET_BASE_MS: f64 = 20.0;
const BUCKET_RATIO: f64 = 1.05;
const BUCKETS: i32 = 200;

pub fn bucket_of(ms: f64) -> i32 {
    if !ms.is_finite() || ms <= BUCKET_BASE_MS {
        return 0;
    }
    ((ms / BUCKET_BASE_MS).ln() / BUCKET_RATIO.ln())
        .floor()
        .clamp(0.0, f64::from(BUCKETS - 1)) as i32
}

/// The middle of a bucket (geometric), what percentiles report: within 2.5 % of any value in it.
pub fn bucket_value(b: i32) -> f64 {
    BUCKET_BASE_MS * BUCKET_RATIO.powf(f64::from(b) + 0.5)
}

/// The `q` quantile (0..1) of a histogram of (bucket, count).
pub fn quantile(hist: &[(i32, i64)], q: f64) -> Option<f64> {
    let total: i64 = hist.iter().map(|(_, n)| n).sum();
    if total <= 0 {
        return None;
    }
    let mut sorted = hist.to_vec();
    sorted.sort();
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (b, n) in sorted {
        seen += n;
        if seen >= rank {
            return Some(bucket_value(b));
        }
    }
    None
}

/// What one `call_analytics` row adds to the rollups (stored on the row, taken back on replace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// `YYYY-MM-DDTHH` of the call's `started_at` (UTC).
    pub hour: String,
    /// Empty when the call has no agent id.
    pub agent: String,
    /// Empty for skipped and failed rows.
    pub intent: String,
    pub status: String,
    pub with_issues: bool,
    pub duration: Option<f64>,
    pub sentiment: Option<f64>,
    pub satisfaction: Option<i32>,
    pub escalated: bool,
    pub resolution: Option<String>,
    pub hot_lead: bool,
    pub latency: Vec<(i32, i64)>,
    pub topics: Vec<String>,
}

pub fn hour_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H").to_string()
}

fn b(x: bool) -> i64 {
    i64::from(x)
}

/// Adds (`sign` 1) or takes back (`sign` −1) a contribution.
pub async fn apply<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    x: &Contribution,
    sign: i64,
) -> Result<(), DbErr> {
    let backend = c.get_database_backend();
    let completed = x.status == "completed";
    let counters: [(&str, Value); 15] = [
        ("calls", sign.into()),
        ("completed", (sign * b(completed)).into()),
        ("skipped", (sign * b(x.status == "skipped")).into()),
        ("failed", (sign * b(x.status == "failed")).into()),
        ("with_issues", (sign * b(x.with_issues)).into()),
        (
            "duration_sum",
            (sign as f64 * x.duration.unwrap_or(0.0)).into(),
        ),
        ("duration_n", (sign * b(x.duration.is_some())).into()),
        (
            "sentiment_sum",
            (sign as f64 * x.sentiment.filter(|_| completed).unwrap_or(0.0)).into(),
        ),
        (
            "sentiment_n",
            (sign * b(completed && x.sentiment.is_some())).into(),
        ),
        (
            "satisfaction_sum",
            (sign as f64 * f64::from(x.satisfaction.filter(|_| completed).unwrap_or(0))).into(),
        ),
        (
            "satisfaction_n",
            (sign * b(completed && x.satisfaction.is_some())).into(),
        ),
        ("escalated", (sign * b(completed && x.escalated)).into()),
        (
            "resolved",
            (sign * b(completed && x.resolution.as_deref() == Some("resolved"))).into(),
        ),
        (
            "dropped",
            (sign * b(completed && x.resolution.as_deref() == Some("dropped"))).into(),
        ),
        ("hot_leads", (sign * b(completed && x.hot_lead)).into()),
    ];
    let names: Vec<&str> = counters.iter().map(|(n, _)| *n).collect();
    let sql = format!(
        "INSERT INTO analytics_rollups (tenant_id, agent_id, hour, intent, {}) VALUES (?, ?, ?, ?, {}) \
         ON CONFLICT (tenant_id, agent_id, hour, intent) DO UPDATE SET {}",
        names.join(", "),
        vec!["?"; names.len()].join(", "),
        names
            .iter()
            .map(|n| format!("{n} = analytics_rollups.{n} + excluded.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut values: Vec<Value> = vec![
        tenant.into(),
        x.agent.clone().into(),
        x.hour.clone().into(),
        x.intent.clone().into(),
    ];
    values.extend(counters.into_iter().map(|(_, v)| v));
    c.execute_raw(stmt(backend, &sql, values)).await?;
    for (bucket, n) in &x.latency {
        c.execute_raw(stmt(
            backend,
            "INSERT INTO analytics_latency_rollups (tenant_id, agent_id, hour, bucket, turns) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, agent_id, hour, bucket) DO UPDATE SET turns = analytics_latency_rollups.turns + excluded.turns",
            [tenant.into(), x.agent.clone().into(), x.hour.clone().into(), (*bucket).into(), (sign * n).into()],
        ))
        .await?;
    }
    if completed {
        for topic in &x.topics {
            c.execute_raw(stmt(
                backend,
                "INSERT INTO analytics_topic_rollups (tenant_id, agent_id, hour, intent, topic, calls) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tenant_id, agent_id, hour, intent, topic) DO UPDATE SET calls = analytics_topic_rollups.calls + excluded.calls",
                [tenant.into(), x.agent.clone().into(), x.hour.clone().into(), x.intent.clone().into(), topic.clone().into(), sign.into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// Per-turn e2e latencies as histogram buckets.
pub fn latency_histogram(latencies: impl Iterator<Item = f64>) -> Vec<(i32, i64)> {
    let mut map = std::collections::BTreeMap::new();
    for ms in latencies {
        *map.entry(bucket_of(ms)).or_insert(0i64) += 1;
    }
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets_are_within_the_bucket_width() {
        let values: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 2.0).collect();
        let hist = latency_histogram(values.iter().copied());
        let p95 = quantile(&hist, 0.95).unwrap();
        assert!((p95 / 1900.0 - 1.0).abs() < 0.05, "{p95}");
        let p50 = quantile(&hist, 0.5).unwrap();
        assert!((p50 / 1000.0 - 1.0).abs() < 0.05, "{p50}");
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(bucket_of(5.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
    }
}
