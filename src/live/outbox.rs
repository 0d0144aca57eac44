//! The live-events outbox (`live_outbox`): a live event is written in the transaction that commits
//! its fact, appended to the events stream after the commit, then deleted. What a process that died
//! in between, or a Redis that refused the append, leaves behind is appended by the sweep that
//! every replica runs (rows locked `FOR UPDATE SKIP LOCKED` on PostgreSQL, so each row by one
//! replica), oldest first. A committed fact always reaches the stream, at least once; the rare
//! second copy (a death between the append and the delete) carries the same `event_id`.

use super::LiveEvent;
use super::hub::Hub;
use crate::db::stmt;
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, TransactionTrait, Value,
};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows per INSERT / DELETE statement.
const CHUNK: usize = 500;

/// Rows the sweep appends per round.
pub const SWEEP_BATCH: usize = 500;

/// Rows younger than the grace (`INSIGHTS_LIVE_OUTBOX_GRACE_MS`) are left to the process that wrote
/// them (its publisher appends and deletes them within milliseconds); older ones are the sweep's,
/// which looks every third of the grace (at most every 5 s, at least every 100 ms).
pub fn sweep_every(grace: Duration) -> Duration {
    (grace / 3).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Writes `events` in the caller's transaction: one row per call, its events in order as a JSON
/// array of `[type, body]` (a row per event cost a third of the ingest rate: inserts, foreign-key
/// checks and deletes three times over). Each event learns its row (`outbox_row`).
pub async fn insert(db: &impl ConnectionTrait, events: &mut [LiveEvent]) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    struct OutboxRow {
        id: Uuid,
        session: Uuid,
        tenant: String,
        events: Vec<(&'static str, String)>,
    }
    // In order of each call's first event.
    let mut rows: Vec<OutboxRow> = Vec::new();
    let mut of_session: std::collections::HashMap<Uuid, usize> = Default::default();
    for e in events.iter_mut() {
        let i = *of_session.entry(e.session_id).or_insert_with(|| {
            rows.push(OutboxRow {
                id: e.id,
                session: e.session_id,
                tenant: e.tenant_id.clone(),
                events: Vec::new(),
            });
            rows.len() - 1
        });
        e.outbox_row = Some(rows[i].id);
        rows[i].events.push((e.kind, e.body().to_owned()));
    }
    let bodies =
        |r: &OutboxRow| serde_json::to_string(&r.events).map_err(|e| DbErr::Custom(e.to_string()));
    if rows.is_empty() {
        return Ok(());
    }
    if backend == DbBackend::Postgres {
        // One statement text whatever the number of rows: each column as one binary array.
        use sea_orm::sea_query::ArrayType::{String as Text, Uuid as Id};
        let mut values = vec![now.into()];
        let mut cells = Vec::with_capacity(rows.len());
        for r in &rows {
            cells.push(vec![
                r.id.into(),
                r.session.into(),
                r.tenant.clone().into(),
                bodies(r)?.into(),
            ]);
        }
        values.extend(crate::db::array_columns(
            &[Id, Id, Text, Text],
            cells.into_iter(),
        )?);
        db.execute_raw(stmt(
            backend,
            "INSERT INTO live_outbox (id, session_id, tenant_id, events, created_at) \
             SELECT i, s, t, e, ? FROM unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[]) AS r(i, s, t, e)",
            values,
        ))
        .await?;
        return Ok(());
    }
    for chunk in rows.chunks(CHUNK) {
        let marks = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO live_outbox (id, session_id, tenant_id, events, created_at) VALUES {marks}"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for r in chunk {
            values.extend([
                r.id.into(),
                r.session.into(),
                r.tenant.clone().into(),
                bodies(r)?.into(),
                now.into(),
            ]);
        }
        db.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// The distinct outbox rows of `events`.
pub fn rows_of(events: &[LiveEvent]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = events.iter().filter_map(|e| e.outbox_row).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Deletes outbox rows whose events were appended.
pub async fn delete(db: &impl ConnectionTrait, ids: &[Uuid]) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut n = 0;
    for chunk in ids.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("DELETE FROM live_outbox WHERE id IN ({marks})");
        n += db
            .execute_raw(stmt(backend, &sql, chunk.iter().map(|&id| id.into())))
            .await?
            .rows_affected();
    }
    Ok(n)
}

#[derive(Debug, FromQueryResult)]
struct Row {
    id: Uuid,
    tenant_id: String,
    events: String,
}

/// One sweep round: appends the events of up to `limit` rows older than `older_than` that this
/// process is not publishing itself, deletes the rows, and returns how many events it appended. On PostgreSQL the round is one
/// transaction and the rows stay locked until they are deleted, so two replicas never append the
/// same row. SQLite (one process) runs it without a transaction: a read-then-write transaction
/// there fails when ingest commits in between, after the append, which would append them again.
pub async fn sweep(
    db: &DatabaseConnection,
    hub: &Hub,
    older_than: DateTime<Utc>,
    limit: usize,
) -> Result<usize, SweepError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return sweep_on(db, hub, older_than, limit, "").await;
    }
    let txn = db.begin().await?;
    let n = sweep_on(&txn, hub, older_than, limit, " FOR UPDATE SKIP LOCKED").await?;
    txn.commit().await?;
    Ok(n)
}

async fn sweep_on(
    c: &impl ConnectionTrait,
    hub: &Hub,
    older_than: DateTime<Utc>,
    limit: usize,
    lock: &str,
) -> Result<usize, SweepError> {
    let rows = Row::find_by_statement(stmt(
        c.get_database_backend(),
        &format!(
            "SELECT id, tenant_id, events FROM live_outbox WHERE created_at < ? ORDER BY id LIMIT {limit}{lock}"
        ),
        [older_than.into()],
    ))
    .all(c)
    .await?;
    let rows: Vec<Row> = rows.into_iter().filter(|r| !hub.is_pending(r.id)).collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let mut entries: Vec<(String, &str, String)> = Vec::new();
    for r in &rows {
        let evs: Vec<(String, String)> = serde_json::from_str(&r.events)
            .map_err(|e| SweepError::Db(DbErr::Custom(format!("live_outbox row {}: {e}", r.id))))?;
        entries.extend(evs.into_iter().map(|(k, b)| (k, r.tenant_id.as_str(), b)));
    }
    hub.append(entries.iter().map(|(k, t, b)| (k.as_str(), *t, b.as_str())))
        .await
        .map_err(SweepError::Redis)?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    delete(c, &ids).await?;
    Ok(entries.len())
}

/// Why a sweep round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("redis: {0}")]
    Redis(redis::RedisError),
}

/// Sweeps every [`sweep_every`] until `shutdown`, draining rows older than `grace` in rounds of
/// `SWEEP_BATCH`.
pub async fn run_sweeper(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    grace: Duration,
    shutdown: CancellationToken,
) {
    use crate::background::{Pass, Schedule, run};
    let (db, hub) = (&db, &hub);
    run(
        Schedule::every("live-events outbox sweep", sweep_every(grace)),
        None,
        shutdown,
        || async move {
            let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
            let n = sweep(db, hub, cutoff, SWEEP_BATCH).await?;
            if n == 0 {
                return Ok::<_, SweepError>(Pass::Idle);
            }
            hub.metrics.outbox_swept.fetch_add(n as u64, Relaxed);
            tracing::info!(
                events = n,
                "live events left in the outbox appended to the events stream"
            );
            Ok(if n < SWEEP_BATCH {
                Pass::Idle
            } else {
                Pass::More
            })
        },
    )
    .await;
}
