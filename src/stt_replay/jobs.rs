//! Analysis jobs: every full-call analysis — one session asked for through the API (`single`) or up to
//! 50 in a batch — is a job row with one item row per session. Items are the work queue:
//!
//! - a worker claims `queued` items (and `running` ones whose lease ran out: their worker died) in a
//!   transaction, with `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas share the work; SQLite
//!   serialises writers, which is enough for one process;
//! - while it runs an item the worker renews its lease; a renewal that finds the item no longer
//!   `running` under its name (cancelled, or reclaimed) aborts the run;
//! - cancelling a job marks its unfinished items `cancelled` and aborts this process's runs at once
//!   (dropping the replay drops its HTTP calls); other replicas notice at their next renewal;
//! - on shutdown, runs are aborted and their items handed back (`queued`), so a restart resumes them.
//!
//! Provider calls go through each provider's process-wide limiter; batch items ask at batch priority,
//! so single analyses and report analyses are served first.

use super::replay::{ReplayError, ReplayOptions, SessionReplay, replay_session};
use super::summary::{AnalysisSummary, summarize};
use crate::stt::{Priority, ProviderId};
use chrono::{DateTime, Utc};
use entity::analysis_job_items::Status as ItemStatus;
use entity::analysis_jobs::Status as JobStatus;
use entity::{analysis_job_items as item, analysis_jobs as job, session_analyses as sa};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query as SqlQuery};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Most sessions in one batch.
pub const MAX_BATCH: usize = 50;
/// Starts of one item after which it is failed instead of claimed again (a run that keeps killing
/// its worker must not take every replica down in turn; a database that keeps failing it ends it).
pub const MAX_ATTEMPTS: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Single,
    Batch,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Single => "single",
            JobKind::Batch => "batch",
        }
    }
    fn priority(self) -> Priority {
        match self {
            JobKind::Single => Priority::Interactive,
            JobKind::Batch => Priority::Batch,
        }
    }
}

/// Worker settings (`INSIGHTS_ANALYSIS_*`).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Name of this worker in `claimed_by`.
    pub worker_id: String,
    /// Sessions of batch jobs analysed at once by this process (0: this process runs no batch work).
    pub concurrency: usize,
    /// How long a claimed item stays ours without a renewal.
    pub lease: Duration,
    /// How often the queue is looked at when nothing wakes the worker.
    pub poll: Duration,
}

impl WorkerSettings {
    fn renew_every(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(50))
    }
}

/// What to analyse.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    /// Tenant of the caller (`None`: every tenant).
    pub tenant: Option<String>,
    pub sessions: Vec<Uuid>,
    pub providers: Option<Vec<ProviderId>>,
    pub language: Option<String>,
    /// The filter the sessions came from, kept for the record.
    pub filter: Option<serde_json::Value>,
}

/// What analysis runs need, built by the composition root (`App::analysis_runner`): the database,
/// the audio store, the STT providers, the default language, this process's registry of runs and
/// its worker settings.
#[derive(Debug, Clone)]
pub struct Runner {
    pub db: DatabaseConnection,
    pub store: Arc<dyn crate::storage::AudioStore>,
    pub stt: crate::stt::SttProviders,
    /// `INSIGHTS_STT_LANGUAGE`: the language of a job that names none.
    pub language: Option<String>,
    pub registry: Arc<Registry>,
    pub worker: WorkerSettings,
}

/// This process's running items, by job, so a cancel or a shutdown can abort them at once.
#[derive(Debug, Default)]
pub struct Registry {
    running: Mutex<HashMap<(Uuid, Uuid), CancellationToken>>,
    /// Wakes the worker when a job is created here.
    pub wake: Notify,
    /// Wakes whoever waits for runs to stop.
    stopped: Notify,
    /// Cancelled when the process stops: every run hands its item back.
    pub shutdown: CancellationToken,
    /// Runs that found their item taken over by another worker (fenced: nothing stored).
    pub claims_lost: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), CancellationToken>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, job: Uuid, session: Uuid, parent: &CancellationToken) -> CancellationToken {
        let token = parent.child_token();
        self.lock().insert((job, session), token.clone());
        token
    }

    fn unregister(&self, job: Uuid, session: Uuid) {
        self.lock().remove(&(job, session));
        self.stopped.notify_waiters();
    }

    /// Aborts this process's runs of `job` and waits (up to `wait`) until they have stopped.
    pub async fn abort_job(&self, job: Uuid, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let stopped = self.stopped.notified();
            let left: Vec<CancellationToken> = self
                .lock()
                .iter()
                .filter(|((j, _), _)| *j == job)
                .map(|(_, t)| t.clone())
                .collect();
            if left.is_empty() {
                return;
            }
            for t in &left {
                t.cancel();
            }
            if tokio::time::timeout_at(deadline, stopped).await.is_err() {
                warn!(%job, "runs of the cancelled job did not stop in time");
                return;
            }
        }
    }

    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn json_providers(p: &Option<Vec<ProviderId>>) -> Option<serde_json::Value> {
    p.as_ref().and_then(|v| serde_json::to_value(v).ok())
}

/// Creates a job and its items. A single job's item is claimed by `claim_for` at once (the caller
/// runs it); batch items are queued for the workers.
pub async fn create_job(
    db: &DatabaseConnection,
    new: &NewJob,
    claim_for: Option<(&str, Duration)>,
) -> Result<(job::Model, Vec<item::Model>), DbErr> {
    let at = now();
    let id = Uuid::now_v7();
    let txn = db.begin().await?;
    let job_row = job::Model {
        id,
        tenant_id: new.tenant.clone(),
        kind: new.kind.as_str().into(),
        status: JobStatus::Running,
        providers: json_providers(&new.providers),
        language: new.language.clone(),
        filter: new.filter.clone(),
        total: new.sessions.len() as i32,
        created_at: at,
        updated_at: at,
        finished_at: None,
    };
    job::Entity::insert(job::ActiveModel::from(job_row.clone()))
        .exec_without_returning(&txn)
        .await?;
    let items: Vec<item::Model> = new
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| item::Model {
            job_id: id,
            session_id: *s,
            position: i as i32,
            status: if claim_for.is_some() {
                ItemStatus::Running
            } else {
                ItemStatus::Queued
            },
            attempts: i32::from(claim_for.is_some()),
            error: None,
            claimed_by: claim_for.map(|(w, _)| w.to_string()),
            lease_until: claim_for.map(|(_, lease)| at + lease),
            started_at: claim_for.map(|_| at),
            finished_at: None,
        })
        .collect();
    if !items.is_empty() {
        item::Entity::insert_many(items.iter().cloned().map(item::ActiveModel::from))
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok((job_row, items))
}

/// Claims up to `n` runnable items for `worker`: queued batch items, and items of any job whose
/// worker died (an abandoned single analysis is finished by whoever finds it).
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    lease: Duration,
    n: usize,
) -> Result<Vec<(job::Model, item::Model)>, DbErr> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let at = now();
    let txn = db.begin().await?;
    let running_jobs = SqlQuery::select()
        .column(job::Column::Id)
        .from(job::Entity)
        .and_where(Expr::col(job::Column::Status).eq(JobStatus::Running))
        .to_owned();
    let mut q = item::Entity::find()
        .filter(
            Condition::any()
                .add(item::Column::Status.eq(ItemStatus::Queued))
                .add(
                    Condition::all()
                        .add(item::Column::Status.eq(ItemStatus::Running))
                        .add(item::Column::LeaseUntil.lt(at)),
                ),
        )
        .filter(item::Column::JobId.in_subquery(running_jobs))
        // Job ids are UUIDv7: older jobs first, then the batch's own order.
        .order_by_asc(item::Column::JobId)
        .order_by_asc(item::Column::Position)
        .limit(n as u64);
    if db.get_database_backend() == DbBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let candidates = q.all(&txn).await?;
    let mut claimed = Vec::new();
    for c in candidates {
        let abandoned = c.status == ItemStatus::Running;
        if c.attempts >= MAX_ATTEMPTS {
            item::Entity::update_many()
                .col_expr(item::Column::Status, Expr::value(ItemStatus::Failed))
                .col_expr(
                    item::Column::Error,
                    Expr::value(format!(
                        "started {} times without finishing (worker crashes or passing failures){}",
                        c.attempts,
                        c.error
                            .as_deref()
                            .map(|e| format!("; last error: {e}"))
                            .unwrap_or_default()
                    )),
                )
                .col_expr(item::Column::FinishedAt, Expr::value(at))
                .col_expr(
                    item::Column::LeaseUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(item::Column::JobId.eq(c.job_id))
                .filter(item::Column::SessionId.eq(c.session_id))
                .exec(&txn)
                .await?;
            continue;
        }
        // Guarded, so a second process on the same SQLite file cannot take it twice.
        let guard = if abandoned {
            Condition::all()
                .add(item::Column::Status.eq(ItemStatus::Running))
                .add(item::Column::LeaseUntil.lt(at))
        } else {
            Condition::all().add(item::Column::Status.eq(ItemStatus::Queued))
        };
        let res = item::Entity::update_many()
            .col_expr(item::Column::Status, Expr::value(ItemStatus::Running))
            .col_expr(item::Column::ClaimedBy, Expr::value(worker))
            .col_expr(item::Column::LeaseUntil, Expr::value(at + lease))
            .col_expr(item::Column::Attempts, Expr::value(c.attempts + 1))
            .col_expr(
                item::Column::StartedAt,
                Expr::value(c.started_at.unwrap_or(at)),
            )
            .filter(item::Column::JobId.eq(c.job_id))
            .filter(item::Column::SessionId.eq(c.session_id))
            .filter(guard)
            .exec(&txn)
            .await?;
        if res.rows_affected == 1 {
            if abandoned {
                info!(job = %c.job_id, session = %c.session_id, previous = ?c.claimed_by, "reclaiming an abandoned analysis item");
            }
            claimed.push(item::Model {
                status: ItemStatus::Running,
                claimed_by: Some(worker.to_string()),
                lease_until: Some(at + lease),
                attempts: c.attempts + 1,
                started_at: Some(c.started_at.unwrap_or(at)),
                ..c
            });
        }
    }
    let job_ids: Vec<Uuid> = claimed.iter().map(|c| c.job_id).collect();
    let jobs: HashMap<Uuid, job::Model> = if job_ids.is_empty() {
        HashMap::new()
    } else {
        job::Entity::find()
            .filter(job::Column::Id.is_in(job_ids))
            .all(&txn)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect()
    };
    txn.commit().await?;
    Ok(claimed
        .into_iter()
        .filter_map(|c| jobs.get(&c.job_id).cloned().map(|j| (j, c)))
        .collect())
}

/// The stored analysis: the replay grid plus its summary (served as `AnalysisResultView`).
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisResult {
    pub summary: AnalysisSummary,
    pub grid: SessionReplay,
}

/// How an item's run ended.
#[derive(Debug)]
enum RunEnd {
    Completed,
    Failed(String),
    /// A passing failure (the database): back to the queue, this start counted.
    Retry(String),
    /// The job was cancelled.
    Aborted,
    /// Another worker took the item over (this one was away past its lease): nothing of this run
    /// is recorded.
    Lost,
    /// This process is stopping: hand the item back.
    Shutdown,
}

/// Runs one claimed item to its end, recording the outcome. Never fails: errors end in the rows.
/// `marked_at`: when the caller already marked the session's analysis `running` (`mark_running`).
pub async fn run_item(
    app: Runner,
    job_row: job::Model,
    it: item::Model,
    worker: WorkerSettings,
    shutdown: CancellationToken,
    marked_at: Option<DateTime<Utc>>,
) {
    let (job_id, session_id) = (it.job_id, it.session_id);
    let token = app.registry.register(job_id, session_id, &shutdown);
    let end = run_guarded(&app, &job_row, &it, &worker, &token, &shutdown, marked_at).await;
    // Every way a run can find its item taken over is counted here, once.
    let lost = match finish_item(&app.db, &job_row, &it, &worker.worker_id, &end).await {
        Ok(true) => matches!(end, RunEnd::Lost),
        Ok(false) => {
            warn!(job = %job_id, session = %session_id, ?end, "analysis item taken over by another worker while this one was away (lease expired); this run's end is not recorded");
            true
        }
        Err(e) => {
            warn!(job = %job_id, session = %session_id, error = %e, "cannot record the end of an analysis item; its lease will expire and it will run again");
            matches!(end, RunEnd::Lost)
        }
    };
    if lost {
        app.registry
            .claims_lost
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    app.registry.unregister(job_id, session_id);
}

async fn run_guarded(
    app: &Runner,
    job_row: &job::Model,
    it: &item::Model,
    worker: &WorkerSettings,
    token: &CancellationToken,
    shutdown: &CancellationToken,
    marked_at: Option<DateTime<Utc>>,
) -> RunEnd {
    let kind = if job_row.kind == "batch" {
        JobKind::Batch
    } else {
        JobKind::Single
    };
    let providers: Option<Vec<ProviderId>> = job_row
        .providers
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let options = ReplayOptions {
        providers,
        turns: None,
        language: job_row.language.clone().or_else(|| app.language.clone()),
        tenant: job_row.tenant_id.clone(),
        priority: kind.priority(),
        expected: None,
    };
    let started = match marked_at {
        Some(at) => at,
        None => {
            let at = now();
            match mark_running_fenced(&app.db, job_row, it, &worker.worker_id, at).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(job = %job_row.id, session = %it.session_id, "analysis item taken over by another worker while this one was away (lease expired) before its run began; this run stops");
                    return RunEnd::Lost;
                }
                Err(e) => return RunEnd::Retry(format!("database: {e}")),
            }
            at
        }
    };
    let renew = renew_lease(&app.db, it, worker);
    let replay = replay_session(
        &app.db,
        app.store.clone(),
        &app.stt,
        it.session_id,
        &options,
    );
    tokio::pin!(renew);
    tokio::pin!(replay);
    let outcome = tokio::select! {
        _ = token.cancelled() => None,
        () = &mut renew => {
            if taken_over(&app.db, it, &worker.worker_id).await {
                warn!(job = %job_row.id, session = %it.session_id, "analysis item taken over by another worker while this one was away (lease expired); this run stops");
                return RunEnd::Lost;
            }
            None
        }
        r = &mut replay => Some(r),
    };
    let Some(outcome) = outcome else {
        return if shutdown.is_cancelled() {
            RunEnd::Shutdown
        } else {
            RunEnd::Aborted
        };
    };
    match outcome {
        Ok(grid) => {
            let result = AnalysisResult {
                summary: summarize(&grid),
                grid,
            };
            match store_result(&app.db, it, &worker.worker_id, &result, started).await {
                Ok(true) => RunEnd::Completed,
                Ok(false) => {
                    warn!(job = %job_row.id, session = %it.session_id, "analysis item taken over by another worker while this one was away (lease expired); its result is discarded");
                    RunEnd::Lost
                }
                Err(e) => RunEnd::Retry(format!("database: {e}")),
            }
        }
        Err(
            e @ (ReplayError::SessionNotFound(_)
            | ReplayError::NoProviders
            | ReplayError::ProviderNotConfigured(_)),
        ) => RunEnd::Failed(e.to_string()),
        Err(ReplayError::Db(e)) => RunEnd::Retry(format!("database: {e}")),
    }
}

/// Another worker claimed the item (it may have finished it already).
async fn taken_over(db: &DatabaseConnection, it: &item::Model, worker: &str) -> bool {
    matches!(
        item::Entity::find()
            .filter(item::Column::JobId.eq(it.job_id))
            .filter(item::Column::SessionId.eq(it.session_id))
            .one(db)
            .await,
        Ok(Some(row)) if row.claimed_by.is_some() && row.claimed_by.as_deref() != Some(worker)
    )
}

/// Renews the item's lease until it is no longer ours; resolves when that happens.
async fn renew_lease(db: &DatabaseConnection, it: &item::Model, worker: &WorkerSettings) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(worker.renew_every()).await;
        let res = item::Entity::update_many()
            .col_expr(item::Column::LeaseUntil, Expr::value(now() + worker.lease))
            .filter(item::Column::JobId.eq(it.job_id))
            .filter(item::Column::SessionId.eq(it.session_id))
            .filter(item::Column::Status.eq(ItemStatus::Running))
            .filter(item::Column::ClaimedBy.eq(worker.worker_id.as_str()))
            .exec(db)
            .await;
        match res {
            Ok(r) if r.rows_affected == 0 => {
                info!(job = %it.job_id, session = %it.session_id, "analysis item cancelled or taken over: stopping its run");
                return;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "cannot renew an analysis item's lease");
            }
        }
    }
}

/// Marks the session's analysis `running` for this job (creating its row on the first run).
pub async fn mark_running(
    db: &impl ConnectionTrait,
    job_row: &job::Model,
    session_id: Uuid,
    started: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(session) = entity::call_sessions::Entity::find_by_id(session_id)
        .one(db)
        .await?
    else {
        return Ok(());
    };
    let row = sa::ActiveModel {
        session_id: Set(session_id),
        tenant_id: Set(session.tenant_id),
        call_id: Set(session.call_id),
        status: Set(sa::Status::Running),
        job_id: Set(Some(job_row.id)),
        requested_providers: Set(job_row.providers.clone()),
        providers: Set(None),
        language: Set(job_row.language.clone()),
        result: Set(None),
        error: Set(None),
        started_at: Set(started),
        ran_at: Set(None),
        duration_ms: Set(None),
        updated_at: Set(started),
    };
    // A re-run keeps the previous result (and when and with what it ran) until it completes.
    sa::Entity::insert(row)
        .on_conflict(
            OnConflict::column(sa::Column::SessionId)
                .update_columns([
                    sa::Column::Status,
                    sa::Column::JobId,
                    sa::Column::RequestedProviders,
                    sa::Column::Error,
                    sa::Column::StartedAt,
                    sa::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Whether the item is still ours (running, claimed by `worker`), and if so holds it until `txn`
/// ends: the first statement of the transaction is a no-op write of the item, which takes its row
/// lock on PostgreSQL (a worker taking it over waits, or skips it) and SQLite's write lock (a read
/// first would pin an old snapshot that SQLite refuses to upgrade once another connection wrote).
async fn lock_if_ours(
    txn: &DatabaseTransaction,
    it: &item::Model,
    worker: &str,
) -> Result<bool, DbErr> {
    let res = item::Entity::update_many()
        .col_expr(
            item::Column::LeaseUntil,
            Expr::col(item::Column::LeaseUntil),
        )
        .filter(item::Column::JobId.eq(it.job_id))
        .filter(item::Column::SessionId.eq(it.session_id))
        .filter(item::Column::Status.eq(ItemStatus::Running))
        .filter(item::Column::ClaimedBy.eq(worker))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// `mark_running`, fenced like `store_result`: a worker frozen between its claim and the start of
/// its run, woken after another worker took the item over (and perhaps finished it), must not turn
/// the finished analysis back to `running`. `Ok(false)`: not ours any more, nothing written.
async fn mark_running_fenced(
    db: &DatabaseConnection,
    job_row: &job::Model,
    it: &item::Model,
    worker: &str,
    started: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    if !lock_if_ours(&txn, it, worker).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    mark_running(&txn, job_row, it.session_id, started).await?;
    txn.commit().await?;
    Ok(true)
}

/// Stores the result, fenced: only while the item is still ours (running, claimed by this worker;
/// its row locked meanwhile on PostgreSQL). A worker that froze past its lease and wakes up after
/// another took the item over stores nothing (`Ok(false)`).
async fn store_result(
    db: &DatabaseConnection,
    it: &item::Model,
    worker: &str,
    result: &AnalysisResult,
    started: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let job_id = it.job_id;
    let txn = db.begin().await?;
    if !lock_if_ours(&txn, it, worker).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    let at = now();
    let json = serde_json::to_value(result).map_err(|e| DbErr::Custom(e.to_string()))?;
    let providers =
        serde_json::to_value(&result.grid.providers).map_err(|e| DbErr::Custom(e.to_string()))?;
    sa::Entity::update_many()
        .col_expr(sa::Column::Status, Expr::value(sa::Status::Completed))
        .col_expr(sa::Column::JobId, Expr::value(job_id))
        .col_expr(sa::Column::Result, Expr::value(json))
        .col_expr(sa::Column::Providers, Expr::value(providers))
        .col_expr(
            sa::Column::Language,
            Expr::value(result.grid.language.clone()),
        )
        .col_expr(sa::Column::Error, Expr::value(Option::<String>::None))
        .col_expr(sa::Column::StartedAt, Expr::value(started))
        .col_expr(sa::Column::RanAt, Expr::value(at))
        .col_expr(sa::Column::DurationMs, Expr::value(result.grid.duration_ms))
        .col_expr(sa::Column::UpdatedAt, Expr::value(at))
        .filter(sa::Column::SessionId.eq(result.grid.session_id))
        .exec(&txn)
        .await?;
    // The item completes with its result: a worker frozen after this commit leaves nothing for
    // another to take over (and run a second time).
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(ItemStatus::Completed))
        .col_expr(item::Column::FinishedAt, Expr::value(at))
        .col_expr(
            item::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(item::Column::JobId.eq(it.job_id))
        .filter(item::Column::SessionId.eq(it.session_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// Records how the run ended on the item, the session's analysis row and (when it was the last
/// item) the job. `Ok(false)`: the item was no longer this worker's (taken over while it was
/// away), so nothing of the run was recorded.
async fn finish_item(
    db: &DatabaseConnection,
    job_row: &job::Model,
    it: &item::Model,
    worker: &str,
    end: &RunEnd,
) -> Result<bool, DbErr> {
    let at = now();
    let ours = Condition::all()
        .add(item::Column::JobId.eq(it.job_id))
        .add(item::Column::SessionId.eq(it.session_id))
        .add(item::Column::Status.eq(ItemStatus::Running))
        .add(item::Column::ClaimedBy.eq(worker));
    let update = item::Entity::update_many().filter(ours);
    let none_ts = Option::<DateTime<Utc>>::None;
    match end {
        // `store_result` completed the item with its result, in one transaction.
        RunEnd::Completed => {}
        RunEnd::Failed(reason) => {
            let res = update
                .col_expr(item::Column::Status, Expr::value(ItemStatus::Failed))
                .col_expr(item::Column::Error, Expr::value(reason.clone()))
                .col_expr(item::Column::FinishedAt, Expr::value(at))
                .col_expr(item::Column::LeaseUntil, Expr::value(none_ts))
                .exec(db)
                .await?;
            if res.rows_affected == 0 {
                // Taken over meanwhile: the session's analysis is the other worker's to settle.
                info!(job = %it.job_id, session = %it.session_id, %reason, "analysis failed after its item was taken over or cancelled; not recorded");
                return Ok(!taken_over(db, it, worker).await);
            }
            warn!(job = %it.job_id, session = %it.session_id, %reason, "analysis failed");
            settle_analysis(db, it, sa::Status::Failed, Some(reason)).await?;
        }
        RunEnd::Lost => return Ok(true),
        RunEnd::Aborted => {
            // Whoever cancelled marked the item; the analysis falls back to its previous result.
            settle_analysis(db, it, sa::Status::Cancelled, None).await?;
        }
        RunEnd::Retry(reason) => {
            let res = update
                .col_expr(item::Column::Status, Expr::value(ItemStatus::Queued))
                .col_expr(item::Column::Error, Expr::value(reason.clone()))
                .col_expr(item::Column::ClaimedBy, Expr::value(Option::<String>::None))
                .col_expr(item::Column::LeaseUntil, Expr::value(none_ts))
                .exec(db)
                .await?;
            if res.rows_affected == 0 {
                return Ok(!taken_over(db, it, worker).await);
            }
            warn!(job = %it.job_id, session = %it.session_id, %reason, attempts = it.attempts, "analysis interrupted; queued again");
            return Ok(true);
        }
        RunEnd::Shutdown => {
            let res = update
                .col_expr(item::Column::Status, Expr::value(ItemStatus::Queued))
                .col_expr(item::Column::ClaimedBy, Expr::value(Option::<String>::None))
                .col_expr(item::Column::LeaseUntil, Expr::value(none_ts))
                .col_expr(
                    item::Column::Attempts,
                    Expr::value(std::cmp::max(it.attempts - 1, 0)),
                )
                .exec(db)
                .await?;
            return Ok(res.rows_affected > 0 || !taken_over(db, it, worker).await);
        }
    }
    complete_job_if_done(db, job_row.id).await?;
    Ok(true)
}

/// A run that did not produce a result: the session's analysis shows the previous result again
/// (`completed`) when there is one, else `status`.
async fn settle_analysis(
    db: &DatabaseConnection,
    it: &item::Model,
    status: sa::Status,
    error: Option<&String>,
) -> Result<(), DbErr> {
    let Some(row) = sa::Entity::find_by_id(it.session_id).one(db).await? else {
        return Ok(());
    };
    if row.job_id != Some(it.job_id) || row.status != sa::Status::Running {
        return Ok(()); // another run took over
    }
    let status = if row.result.is_some() && status == sa::Status::Cancelled {
        sa::Status::Completed
    } else {
        status
    };
    sa::Entity::update_many()
        .col_expr(sa::Column::Status, Expr::value(status))
        .col_expr(sa::Column::Error, Expr::value(error.cloned()))
        .col_expr(sa::Column::UpdatedAt, Expr::value(now()))
        .filter(sa::Column::SessionId.eq(it.session_id))
        .filter(sa::Column::JobId.eq(it.job_id))
        .exec(db)
        .await?;
    Ok(())
}

async fn complete_job_if_done(db: &DatabaseConnection, job_id: Uuid) -> Result<(), DbErr> {
    let open = item::Entity::find()
        .filter(item::Column::JobId.eq(job_id))
        .filter(item::Column::Status.is_in([ItemStatus::Queued, ItemStatus::Running]))
        .count(db)
        .await?;
    if open == 0 {
        let at = now();
        let done = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(JobStatus::Completed))
            .col_expr(job::Column::FinishedAt, Expr::value(at))
            .col_expr(job::Column::UpdatedAt, Expr::value(at))
            .filter(job::Column::Id.eq(job_id))
            .filter(job::Column::Status.eq(JobStatus::Running))
            .exec(db)
            .await?;
        if done.rows_affected == 1 {
            info!(job = %job_id, "analysis job completed");
        }
    }
    Ok(())
}

/// Cancels a job: no new item starts, this process's runs stop now, other replicas' at their next
/// lease renewal. `Ok(false)` when the job had already ended.
pub async fn cancel_job(app: &Runner, job_id: Uuid) -> Result<bool, DbErr> {
    let at = now();
    let res = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Cancelled))
        .col_expr(job::Column::FinishedAt, Expr::value(at))
        .col_expr(job::Column::UpdatedAt, Expr::value(at))
        .filter(job::Column::Id.eq(job_id))
        .filter(job::Column::Status.eq(JobStatus::Running))
        .exec(&app.db)
        .await?;
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(ItemStatus::Cancelled))
        .col_expr(item::Column::FinishedAt, Expr::value(at))
        .col_expr(
            item::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(item::Column::JobId.eq(job_id))
        .filter(item::Column::Status.is_in([ItemStatus::Queued, ItemStatus::Running]))
        .exec(&app.db)
        .await?;
    app.registry
        .abort_job(job_id, Duration::from_secs(10))
        .await;
    Ok(res.rows_affected > 0)
}

/// Runs batch items until `shutdown`: claims up to `concurrency` at a time, wakes on new local jobs,
/// on a finished run and every `poll`. On shutdown aborts its runs and hands their items back.
pub async fn run_worker(app: Runner, shutdown: CancellationToken) {
    let settings = app.worker.clone();
    if settings.concurrency == 0 {
        info!(
            "analysis worker disabled (INSIGHTS_ANALYSIS_CONCURRENCY=0): this process runs only the analyses asked of it"
        );
        shutdown.cancelled().await;
        stop_runs(&app).await;
        return;
    }
    info!(worker = %settings.worker_id, concurrency = settings.concurrency, "analysis worker started");
    let mut runs = JoinSet::new();
    let mut failures = 0u32;
    loop {
        let free = settings.concurrency.saturating_sub(runs.len());
        if free > 0 && !shutdown.is_cancelled() {
            match claim(&app.db, &settings.worker_id, settings.lease, free).await {
                Ok(claimed) => {
                    failures = 0;
                    for (j, it) in claimed {
                        runs.spawn(run_item(
                            app.clone(),
                            j,
                            it,
                            settings.clone(),
                            shutdown.clone(),
                            None,
                        ));
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        warn!(error = %e, failures, "cannot claim analysis items");
                    }
                }
            }
        }
        let wake = app.registry.wake.notified();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake => {}
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "an analysis run panicked; its item runs again after its lease");
                }
            }
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
    // Runs see the shutdown token and hand their items back.
    while runs.join_next().await.is_some() {}
    stop_runs(&app).await;
    info!("analysis worker stopped");
}

/// Stops the single analyses running in this process (their items go back to the queue).
async fn stop_runs(app: &Runner) {
    app.registry.shutdown.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.registry.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
