//! Backfill and re-runs: a job queues stored final calls matching a filter (every call, only those
//! without analytics, or those analysed with an older schema), with progress counters kept by the
//! transactions that store each result, and cancel. A re-run of one call is a one-call job. Rows
//! analysed before keep their previous result until the new one is stored.

use crate::db::stmt;
use crate::error::Error;
use crate::tenancy::Scope;
use chrono::{DateTime, Utc};
use entity::analytics_backfill_jobs as bj;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The most calls one backfill job takes.
pub const MAX_JOB_CALLS: usize = 1_000_000;

/// Which stored calls a backfill re-analyses (final reports only).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillFilter {
    /// Calls that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Calls that started before this time.
    pub until: Option<DateTime<Utc>>,
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    /// Only calls without an analytics row (default true).
    pub only_missing: Option<bool>,
    /// Calls whose stored analytics has a schema version below this (their missing ones too when
    /// `only_missing` is true).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::json_num::json_opt_u32")]
    pub schema_version_below: Option<u32>,
}

/// A job with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillJob {
    pub id: Uuid,
    /// `running`, `completed` or `cancelled`.
    pub status: String,
    pub tenant_id: Option<String>,
    pub filter: BackfillFilter,
    pub total: i32,
    pub completed: i32,
    pub skipped: i32,
    pub failed: i32,
    pub cancelled: i32,
    pub running: i64,
    pub queued: i64,
    /// done / total, 0..1.
    pub progress: f64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

async fn view(db: &DatabaseConnection, m: bj::Model) -> Result<BackfillJob, DbErr> {
    #[derive(FromQueryResult)]
    struct N {
        n: Option<i64>,
    }
    let running = N::find_by_statement(stmt(
        db.get_database_backend(),
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM analytics_queue WHERE job_id = ? AND status = 'running'",
        [m.id.into()],
    ))
    .one(db)
    .await?
    .and_then(|r| r.n)
    .unwrap_or(0);
    let done = i64::from(m.completed + m.skipped + m.failed + m.cancelled);
    let total = i64::from(m.total);
    Ok(BackfillJob {
        id: m.id,
        status: m.status.to_string(),
        tenant_id: m.tenant_id,
        filter: serde_json::from_value(m.filter).unwrap_or_default(),
        total: m.total,
        completed: m.completed,
        skipped: m.skipped,
        failed: m.failed,
        cancelled: m.cancelled,
        running,
        queued: (total - done - running).max(0),
        progress: if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64 * 1000.0).round() / 1000.0
        },
        created_at: m.created_at,
        finished_at: m.finished_at,
    })
}

#[derive(FromQueryResult)]
struct Target {
    id: Uuid,
    tenant_id: String,
    report_seq: i64,
}

/// Creates a job over the calls `filter` selects (within `scope`).
pub async fn create(
    db: &DatabaseConnection,
    scope: &Scope,
    mut filter: BackfillFilter,
) -> Result<BackfillJob, Error> {
    if let Some(t) = scope.tenant() {
        match &filter.tenant_id {
            Some(x) if x != t => return Err(Error::NotFound(format!("tenant {x}"))),
            _ => filter.tenant_id = Some(t.to_string()),
        }
    }
    // An empty window (since ≥ until) selects nothing: the job is created empty.
    let empty_window = matches!((filter.since, filter.until), (Some(a), Some(b)) if a >= b);
    if filter
        .schema_version_below
        .is_some_and(|v| !(1..=1000).contains(&v))
    {
        return Err(Error::invalid(
            "body",
            "schema_version_below must be between 1 and 1000",
        ));
    }
    let only_missing = filter.only_missing.unwrap_or(true);
    // Ingest stores no NUL, so a filter value holding one matches nothing.
    let impossible = [&filter.tenant_id, &filter.agent_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| v.contains('\0')));
    let mut sql = String::from(
        "SELECT s.id AS id, s.tenant_id AS tenant_id, s.report_seq AS report_seq FROM call_sessions s \
         LEFT JOIN call_analytics a ON a.session_id = s.id WHERE s.is_final = ?",
    );
    let mut values: Vec<Value> = vec![true.into()];
    if let Some(t) = &filter.since {
        sql.push_str(" AND s.started_at >= ?");
        values.push((*t).into());
    }
    if let Some(t) = &filter.until {
        sql.push_str(" AND s.started_at < ?");
        values.push((*t).into());
    }
    if let Some(t) = &filter.tenant_id {
        sql.push_str(" AND s.tenant_id = ?");
        values.push(t.clone().into());
    }
    if let Some(a) = &filter.agent_id {
        sql.push_str(" AND s.agent_id = ?");
        values.push(a.clone().into());
    }
    match (only_missing, filter.schema_version_below) {
        (true, Some(v)) => {
            sql.push_str(" AND (a.session_id IS NULL OR a.schema_version < ?)");
            values.push((v as i32).into());
        }
        (false, Some(v)) => {
            sql.push_str(" AND a.schema_version < ?");
            values.push((v as i32).into());
        }
        (true, None) => sql.push_str(" AND a.session_id IS NULL"),
        (false, None) => {}
    }

    sql.push_str(&format!(
        " ORDER BY s.started_at LIMIT {}",
        MAX_JOB_CALLS + 1
    ));
    let targets = if impossible || empty_window {
        Vec::new()
    } else {
        Target::find_by_statement(stmt(db.get_database_backend(), &sql, values))
            .all(db)
            .await?
    };
    if targets.len() > MAX_JOB_CALLS {
        return Err(Error::invalid(
            "body",
            format!(
                "the filter selects more than {MAX_JOB_CALLS} calls; narrow it with since/until or tenant_id"
            ),
        ));
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    for v in [&mut filter.tenant_id, &mut filter.agent_id]
        .into_iter()
        .flatten()
    {
        *v = v.replace('\0', "\u{FFFD}");
    }
    let txn = db.begin().await?;
    let filter_json = serde_json::to_value(&filter).unwrap_or_default();
    insert_job(&txn, id, filter.tenant_id.clone(), filter_json, 0, now).await?;
    // An item already queued by another job stays with it; one running now is left alone.
    let total = queue_for_job(&txn, id, &targets, now, false).await?;
    let backend = txn.get_database_backend();
    let finished = (total == 0).then_some(now);
    txn.execute_raw(stmt(
        backend,
        "UPDATE analytics_backfill_jobs SET total = ?, status = ?, finished_at = ? WHERE id = ?",
        [
            (total as i32).into(),
            if total == 0 { "completed" } else { "running" }.into(),
            finished.into(),
            id.into(),
        ],
    ))
    .await?;
    txn.commit().await?;
    tracing::info!(job_id = %id, total, "analytics backfill queued");
    get(db, scope, id).await
}

/// A re-run of one call's analytics (a one-call job, run even when nothing changed).
pub async fn rerun(
    db: &DatabaseConnection,
    scope: &Scope,
    session: &entity::call_sessions::Model,
) -> Result<BackfillJob, Error> {
    let id = Uuid::now_v7();
    let now = Utc::now();
    let txn = db.begin().await?;
    let filter = serde_json::json!({"session_id": session.id});
    insert_job(&txn, id, Some(session.tenant_id.clone()), filter, 1, now).await?;
    let target = Target {
        id: session.id,
        tenant_id: session.tenant_id.clone(),
        report_seq: session.report_seq,
    };
    // A re-run takes the call from any queued job (it runs now either way).
    let queued = queue_for_job(&txn, id, std::slice::from_ref(&target), now, true).await?;
    if queued == 0 {
        txn.rollback().await?;
        return Err(Error::Conflict(format!(
            "the analytics of session {} is running now",
            session.id
        )));
    }
    txn.commit().await?;
    get(db, scope, id).await
}

/// A job row with zero progress.
async fn insert_job<C: ConnectionTrait>(
    c: &C,
    id: Uuid,
    tenant_id: Option<String>,
    filter: serde_json::Value,
    total: i32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    bj::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        status: Set(bj::Status::Running),
        filter: Set(filter),
        total: Set(total),
        completed: Set(0),
        skipped: Set(0),
        failed: Set(0),
        cancelled: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
    }
    .insert(c)
    .await?;
    Ok(())
}

/// Queues `targets` for `job` (a forced run: the unchanged-conversation shortcut does not apply);
/// an item running now is left alone, and one queued by another job stays with it unless
/// `take_queued`. Returns how many were queued.
async fn queue_for_job<C: ConnectionTrait>(
    c: &C,
    job: Uuid,
    targets: &[Target],
    now: DateTime<Utc>,
    take_queued: bool,
) -> Result<usize, DbErr> {
    let keep = if take_queued {
        ""
    } else {
        " AND NOT (analytics_queue.status = 'queued' AND analytics_queue.job_id IS NOT NULL)"
    };
    let mut queued = 0;
    for chunk in targets.chunks(500) {
        let rows = vec!["(?, ?, ?, 'queued', 0, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO analytics_queue (session_id, tenant_id, report_seq, status, attempts, job_id, available_at, enqueued_at) VALUES {rows} \
             ON CONFLICT (session_id) DO UPDATE SET status = 'queued', attempts = 0, job_id = excluded.job_id, \
             report_seq = excluded.report_seq, claim_token = NULL, claimed_by = NULL, lease_until = NULL, error = NULL, \
             finished_at = NULL, available_at = excluded.available_at, enqueued_at = excluded.enqueued_at \
             WHERE analytics_queue.status <> 'running'{keep} RETURNING session_id"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for t in chunk {
            values.extend([
                t.id.into(),
                t.tenant_id.clone().into(),
                t.report_seq.into(),
                job.into(),
                now.into(),
                now.into(),
            ]);
        }
        queued += c
            .query_all_raw(stmt(c.get_database_backend(), &sql, values))
            .await?
            .len();
    }
    Ok(queued)
}

pub async fn get(db: &DatabaseConnection, scope: &Scope, id: Uuid) -> Result<BackfillJob, Error> {
    let m = bj::Entity::find_by_id(id).one(db).await?;
    match m {
        Some(m)
            if m.tenant_id.as_deref().is_some_and(|t| scope.allows(t)) || scope == &Scope::All =>
        {
            Ok(view(db, m).await?)
        }
        _ => Err(Error::NotFound(format!("backfill job {id}"))),
    }
}

pub async fn list(
    db: &DatabaseConnection,
    scope: &Scope,
    limit: u64,
) -> Result<Vec<BackfillJob>, DbErr> {
    let mut q = bj::Entity::find()
        .order_by_desc(bj::Column::CreatedAt)
        .limit(limit);
    if let Some(t) = scope.tenant() {
        q = q.filter(bj::Column::TenantId.eq(t));
    }
    let mut out = Vec::new();
    for m in q.all(db).await? {
        out.push(view(db, m).await?);
    }
    Ok(out)
}

/// Cancels what is still queued; items running now finish.
pub async fn cancel(
    db: &DatabaseConnection,
    scope: &Scope,
    id: Uuid,
) -> Result<BackfillJob, Error> {
    let job = get(db, scope, id).await?;
    if job.status != "running" {
        return Err(Error::Conflict(format!(
            "backfill job {id} is {}",
            job.status
        )));
    }
    let backend = db.get_database_backend();
    let now = Utc::now();
    let txn = db.begin().await?;
    let n = txn
        .execute_raw(stmt(
            backend,
            "UPDATE analytics_queue SET status = 'cancelled', finished_at = ? WHERE job_id = ? AND status = 'queued'",
            [now.into(), id.into()],
        ))
        .await?
        .rows_affected();
    txn.execute_raw(stmt(
        backend,
        "UPDATE analytics_backfill_jobs SET cancelled = cancelled + ?, status = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ?",
        [(n as i32).into(), now.into(), now.into(), id.into()],
    ))
    .await?;
    txn.commit().await?;
    get(db, scope, id).await
}
