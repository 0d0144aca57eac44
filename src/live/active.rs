//! Active calls: sessions with a partial report and no final, silent for less than
//! `INSIGHTS_ACTIVE_CALL_TIMEOUT_MS`. A sweep reports calls that went silent longer as ended
//! (`call_ended` with `reason: timeout`), once across every replica (a Redis marker per call).

use super::LiveEvent;
use super::hub::Hub;
use crate::db::stmt;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, ToSchema, FromQueryResult)]
pub struct ActiveCall {
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    pub started_at: DateTime<Utc>,
    /// When the newest report of the call was stored.
    pub last_report_at: DateTime<Utc>,
    /// Turns so far (caller and agent).
    pub turns: i64,
    pub last_e2e_latency_ms: Option<f64>,
    /// Diagnosis issues found so far.
    pub open_issues: i64,
}

/// Calls with a partial report, no final, and a report within `timeout`.
pub async fn active_calls(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    agent: Option<&str>,
    timeout: std::time::Duration,
    limit: u64,
) -> Result<Vec<ActiveCall>, DbErr> {
    let since = Utc::now() - Duration::from_std(timeout).unwrap_or_default();
    let mut sql = String::from(
        "SELECT s.id AS session_id, s.call_id, s.tenant_id, s.agent_id, s.started_at, s.updated_at AS last_report_at, \
         CAST(s.total_user_turns + s.total_agent_turns AS BIGINT) AS turns, \
         (SELECT t.e2e_latency_ms FROM conversation_turns t WHERE t.session_id = s.id AND t.e2e_latency_ms IS NOT NULL \
          ORDER BY t.turn_index DESC LIMIT 1) AS last_e2e_latency_ms, \
         (SELECT CAST(COUNT(*) AS BIGINT) FROM diagnosis_issues i WHERE i.session_id = s.id) AS open_issues \
         FROM call_sessions s WHERE s.is_final = false AND s.updated_at >= ?",
    );
    // `is_final = false` is a literal: it matches the partial index of running calls
    // (migration 6) even in a generic prepared plan, where a parameter could not.
    let mut values: Vec<Value> = vec![since.into()];
    if let Some(t) = tenant {
        sql.push_str(" AND s.tenant_id = ?");
        values.push(t.into());
    }
    if let Some(a) = agent {
        sql.push_str(" AND s.agent_id = ?");
        values.push(a.into());
    }
    sql.push_str(&format!(" ORDER BY s.started_at DESC LIMIT {limit}"));
    ActiveCall::find_by_statement(stmt(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}

#[derive(Debug, FromQueryResult)]
struct Silent {
    id: Uuid,
    call_id: String,
    tenant_id: String,
    agent_id: Option<String>,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Reports calls silent past `timeout` as ended every `every` (`timing` `None`: live events are
/// off, nothing to do), until `shutdown`.
pub async fn run_sweeper(
    db: DatabaseConnection,
    hub: std::sync::Arc<Hub>,
    redis: crate::broker::Broker,
    timing: Option<(std::time::Duration, std::time::Duration)>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::background::{Pass, Schedule, run};
    let Some((timeout, every)) = timing else {
        return;
    };
    let (db, hub, redis) = (&db, &hub, &redis);
    run(
        Schedule::every("active-call sweep", every),
        None,
        shutdown,
        || async move {
            let n = sweep(db, hub, redis, timeout).await?;
            if n > 0 {
                tracing::info!(calls = n, "silent calls reported as ended (timeout)");
            }
            Ok::<_, DbErr>(Pass::Idle)
        },
    )
    .await;
}

/// Reports calls silent past `timeout` (within the last day) as ended, once each.
pub async fn sweep(
    db: &DatabaseConnection,
    hub: &Hub,
    redis: &crate::broker::Broker,
    timeout: std::time::Duration,
) -> Result<usize, DbErr> {
    let now = Utc::now();
    let cutoff = now - Duration::from_std(timeout).unwrap_or_default();
    let silent = Silent::find_by_statement(stmt(
        db.get_database_backend(),
        "SELECT id, call_id, tenant_id, agent_id, started_at, updated_at FROM call_sessions \
         WHERE is_final = ? AND updated_at < ? AND updated_at >= ? ORDER BY updated_at LIMIT 500",
        [
            false.into(),
            cutoff.into(),
            (cutoff - Duration::days(1)).into(),
        ],
    ))
    .all(db)
    .await?;
    if silent.is_empty() {
        return Ok(0);
    }
    let Ok(mut conn) = redis.conn().await else {
        return Ok(0);
    };
    let mut events = Vec::new();
    for s in silent {
        // The marker names the report time: a call that reports again and goes silent again ends again.
        let key = format!(
            "{}:timedout:{}:{}",
            hub.stream,
            s.id,
            s.updated_at.timestamp_millis()
        );
        let first: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(2 * 86_400)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        if first.is_none() {
            continue;
        }
        events.push(LiveEvent::new(
            "call_ended",
            s.id,
            &s.call_id,
            &s.tenant_id,
            s.agent_id.as_deref(),
            json!({
                "reason": "timeout",
                "started_at": s.started_at,
                "last_report_at": s.updated_at,
                "silent_ms": (now - s.updated_at).num_milliseconds(),
            }),
        ));
    }
    let n = events.len();
    hub.publish(&events).await;
    Ok(n)
}
