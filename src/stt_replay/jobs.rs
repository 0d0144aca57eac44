//! Analysis jobs: every full-call analysis — one session asked for through the API (`single`) or up to
//! 50 in a batch — is a job row with one item row per session. Items are the work queue:
//!
//! - a worker claims `queued` items (and `running` ones whose lease ran out: their worker died) on
//!   the shared leased queue (`lease`: `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas share the
//!   work, one fencing token per claim);
//! - while it runs an item the worker renews its lease; a renewal that finds the item no longer
//!   held by its claim (cancelled, or reclaimed) aborts the run, and every write of the run is
//!   fenced by the claim's token;
//! - cancelling a job marks its unfinished items `cancelled` and aborts this process's runs at once
//!   (dropping the replay drops its HTTP calls); other replicas notice at their next renewal;
//! - on shutdown, runs are aborted and their items handed back (`queued`), so a restart resumes them.
//!
//! Provider calls go through each provider's process-wide limiter; batch items ask at batch priority,
//! so single analyses and report analyses are served first.

use super::replay::{ReplayError, ReplayOptions, SessionReplay, replay_session};
use super::summary::{AnalysisSummary, summarize};
use crate::db::stmt;
use crate::lease::{CLEAR_CLAIM, Due, Queue};
use crate::stt::{Priority, ProviderId};
use chrono::{DateTime, Utc};
use entity::analysis_job_items::Status as ItemStatus;
use entity::analysis_jobs::Status as JobStatus;
use entity::{analysis_job_items as item, analysis_jobs as job, session_analyses as sa};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, TransactionTrait,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
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
    let token = Uuid::new_v4();
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
            claim_token: claim_for.map(|_| token),
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

/// The items as a leased queue (`lease`): claimed oldest job first (ids are UUIDv7), then in the
/// batch's own order; every write of a run is fenced by its claim's token. A finished item keeps
/// `claimed_by` (who ran it); handing one back clears it.
const QUEUE: Queue = Queue {
    table: "analysis_job_items",
    key: &["job_id", "session_id"],
    order: "job_id, position",
};

/// Items a worker may take: queued ones, and running ones whose lease ran out (their worker died),
/// of running jobs.
const RUNNABLE: &str = "(status = 'queued' OR (status = 'running' AND lease_until < ?)) \
     AND job_id IN (SELECT id FROM analysis_jobs WHERE status = 'running')";

fn key_of(it: &item::Model) -> [sea_orm::Value; 2] {
    [it.job_id.into(), it.session_id.into()]
}

#[derive(Debug, FromQueryResult)]
struct Abandoned {
    job_id: Uuid,
    session_id: Uuid,
    claimed_by: Option<String>,
    attempts: i32,
    error: Option<String>,
}

/// Claims up to `n` runnable items for `worker`: queued batch items, and items of any job whose
/// worker died (an abandoned single analysis is finished by whoever finds it). An item already
/// started `MAX_ATTEMPTS` times is failed (with its last error) instead.
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
    let backend = db.get_database_backend();
    give_up_exhausted(db, at).await?;
    // Who held the abandoned ones, for the log (a claim's RETURNING sees only the new values).
    let abandoned: HashMap<(Uuid, Uuid), Option<String>> = Abandoned::find_by_statement(stmt(
        backend,
        &format!("SELECT job_id, session_id, claimed_by, attempts, error FROM analysis_job_items WHERE status = 'running' AND lease_until < ? AND ({RUNNABLE})"),
        [at.into(), at.into()],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(|a| ((a.job_id, a.session_id), a.claimed_by))
    .collect();
    let (_, claimed) = QUEUE
        .claim::<item::Model>(
            db,
            worker,
            lease,
            n,
            Due {
                sql: &format!("({RUNNABLE}) AND attempts < ?"),
                values: vec![at.into(), MAX_ATTEMPTS.into()],
                also: "status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, ?)",
                also_values: vec![at.into()],
                returning: "*",
            },
        )
        .await?;
    for c in &claimed {
        if let Some(previous) = abandoned.get(&(c.job_id, c.session_id)) {
            info!(job = %c.job_id, session = %c.session_id, ?previous, attempts = c.attempts, "reclaiming an abandoned analysis item");
        }
    }
    let job_ids: Vec<Uuid> = claimed.iter().map(|c| c.job_id).collect();
    let jobs: HashMap<Uuid, job::Model> = if job_ids.is_empty() {
        HashMap::new()
    } else {
        job::Entity::find()
            .filter(job::Column::Id.is_in(job_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect()
    };
    Ok(claimed
        .into_iter()
        .filter_map(|c| jobs.get(&c.job_id).cloned().map(|j| (j, c)))
        .collect())
}

/// Fails the runnable items already started `MAX_ATTEMPTS` times (a run that keeps killing its
/// worker must not take every replica down in turn), settling their analyses and jobs.
async fn give_up_exhausted(db: &DatabaseConnection, at: DateTime<Utc>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let exhausted = Abandoned::find_by_statement(stmt(
        backend,
        &format!(
            "SELECT job_id, session_id, claimed_by, attempts, error FROM analysis_job_items WHERE ({RUNNABLE}) AND attempts >= ?"
        ),
        [at.into(), MAX_ATTEMPTS.into()],
    ))
    .all(db)
    .await?;
    for x in exhausted {
        let reason = format!(
            "started {} times without finishing (worker crashes or passing failures){}",
            x.attempts,
            x.error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
        // Guarded by the same condition: a second process finds it failed already.
        let res = db
            .execute_raw(stmt(
                backend,
                &format!(
                    "UPDATE analysis_job_items SET status = 'failed', error = ?, finished_at = ?, {CLEAR_CLAIM} \
                     WHERE job_id = ? AND session_id = ? AND ({RUNNABLE}) AND attempts >= ?"
                ),
                [
                    reason.clone().into(),
                    at.into(),
                    x.job_id.into(),
                    x.session_id.into(),
                    at.into(),
                    MAX_ATTEMPTS.into(),
                ],
            ))
            .await?;
        if res.rows_affected() == 1 {
            warn!(job = %x.job_id, session = %x.session_id, %reason, "analysis item given up");
            settle_analysis(
                db,
                x.job_id,
                x.session_id,
                sa::Status::Failed,
                Some(&reason),
            )
            .await?;
            complete_job_if_done(db, x.job_id).await?;
        }
    }
    Ok(())
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
    let Some(claim) = it.claim_token else {
        warn!(job = %job_id, session = %session_id, "an analysis item without a claim cannot run; it runs after its lease");
        return;
    };
    let token = app.registry.register(job_id, session_id, &shutdown);
    let end = run_guarded(
        &app, &job_row, &it, claim, &worker, &token, &shutdown, marked_at,
    )
    .await;
    // Every way a run can find its item taken over is counted here, once.
    let lost = match finish_item(&app.db, &job_row, &it, claim, &end).await {
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

#[allow(clippy::too_many_arguments)]
async fn run_guarded(
    app: &Runner,
    job_row: &job::Model,
    it: &item::Model,
    claim: Uuid,
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
            match mark_running_fenced(&app.db, job_row, it, claim, at).await {
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
    let renew = renew_lease(&app.db, it, claim, worker);
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
            if taken_over(&app.db, it, claim).await {
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
            match store_result(&app.db, it, claim, &result, started).await {
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

/// Another worker claimed the item (it may have finished it already): it is no longer held by
/// `claim` and was not cancelled.
async fn taken_over(db: &DatabaseConnection, it: &item::Model, claim: Uuid) -> bool {
    matches!(
        item::Entity::find_by_id((it.job_id, it.session_id))
            .one(db)
            .await,
        Ok(Some(row)) if row.claim_token != Some(claim) && row.status != ItemStatus::Cancelled
    )
}

/// Renews the item's lease until it is no longer ours; resolves when that happens.
async fn renew_lease(
    db: &DatabaseConnection,
    it: &item::Model,
    claim: Uuid,
    worker: &WorkerSettings,
) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(worker.renew_every()).await;
        match QUEUE.renew(db, &key_of(it), claim, worker.lease).await {
            Ok(false) => {
                info!(job = %it.job_id, session = %it.session_id, "analysis item cancelled or taken over: stopping its run");
                return;
            }
            Ok(true) => failures = 0,
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

/// Whether the item is still held by `claim`, and if so holds it until `txn` ends: the first
/// statement of the transaction is a fenced no-op write of the item, which takes its row lock on
/// PostgreSQL (a worker taking it over waits, or skips it) and SQLite's write lock (a read first
/// would pin an old snapshot that SQLite refuses to upgrade once another connection wrote).
async fn lock_if_ours(
    txn: &DatabaseTransaction,
    it: &item::Model,
    claim: Uuid,
) -> Result<bool, DbErr> {
    QUEUE
        .fenced(
            txn,
            &key_of(it),
            claim,
            "lease_until = lease_until",
            Vec::new(),
        )
        .await
}

/// `mark_running`, fenced like `store_result`: a worker frozen between its claim and the start of
/// its run, woken after another worker took the item over (and perhaps finished it), must not turn
/// the finished analysis back to `running`. `Ok(false)`: not ours any more, nothing written.
async fn mark_running_fenced(
    db: &DatabaseConnection,
    job_row: &job::Model,
    it: &item::Model,
    claim: Uuid,
    started: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    if !lock_if_ours(&txn, it, claim).await? {
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
    claim: Uuid,
    result: &AnalysisResult,
    started: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let job_id = it.job_id;
    let txn = db.begin().await?;
    if !lock_if_ours(&txn, it, claim).await? {
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
    QUEUE
        .fenced(
            &txn,
            &key_of(it),
            claim,
            "status = 'completed', finished_at = ?, claim_token = NULL, lease_until = NULL",
            vec![at.into()],
        )
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// Records how the run ended on the item, the session's analysis row and (when it was the last
/// item) the job. `Ok(false)`: the item was no longer held by this run's claim (taken over while
/// it was away), so nothing of the run was recorded.
async fn finish_item(
    db: &DatabaseConnection,
    job_row: &job::Model,
    it: &item::Model,
    claim: Uuid,
    end: &RunEnd,
) -> Result<bool, DbErr> {
    let key = key_of(it);
    match end {
        // `store_result` completed the item with its result, in one transaction.
        RunEnd::Completed => {}
        RunEnd::Failed(reason) => {
            let ours = QUEUE
                .fenced(
                    db,
                    &key,
                    claim,
                    "status = 'failed', error = ?, finished_at = ?, claim_token = NULL, lease_until = NULL",
                    vec![reason.clone().into(), now().into()],
                )
                .await?;
            if !ours {
                // Taken over meanwhile: the session's analysis is the other worker's to settle.
                info!(job = %it.job_id, session = %it.session_id, %reason, "analysis failed after its item was taken over or cancelled; not recorded");
                return Ok(!taken_over(db, it, claim).await);
            }
            warn!(job = %it.job_id, session = %it.session_id, %reason, "analysis failed");
            settle_analysis(
                db,
                it.job_id,
                it.session_id,
                sa::Status::Failed,
                Some(reason),
            )
            .await?;
        }
        RunEnd::Lost => return Ok(true),
        RunEnd::Aborted => {
            // Whoever cancelled marked the item; the analysis falls back to its previous result.
            settle_analysis(db, it.job_id, it.session_id, sa::Status::Cancelled, None).await?;
        }
        RunEnd::Retry(reason) => {
            let ours = QUEUE
                .release(
                    db,
                    &key,
                    claim,
                    "status = 'queued', error = ?",
                    vec![reason.clone().into()],
                )
                .await?;
            if !ours {
                return Ok(!taken_over(db, it, claim).await);
            }
            warn!(job = %it.job_id, session = %it.session_id, %reason, attempts = it.attempts, "analysis interrupted; queued again");
            return Ok(true);
        }
        RunEnd::Shutdown => {
            // Handed back, this start not counted.
            let ours = QUEUE
                .release(
                    db,
                    &key,
                    claim,
                    "status = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END",
                    Vec::new(),
                )
                .await?;
            return Ok(ours || !taken_over(db, it, claim).await);
        }
    }
    complete_job_if_done(db, job_row.id).await?;
    Ok(true)
}

/// A run that did not produce a result: the session's analysis shows the previous result again
/// (`completed`) when there is one, else `status`.
async fn settle_analysis(
    db: &DatabaseConnection,
    job_id: Uuid,
    session_id: Uuid,
    status: sa::Status,
    error: Option<&String>,
) -> Result<(), DbErr> {
    let Some(row) = sa::Entity::find_by_id(session_id).one(db).await? else {
        return Ok(());
    };
    if row.job_id != Some(job_id) || row.status != sa::Status::Running {
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
        .filter(sa::Column::SessionId.eq(session_id))
        .filter(sa::Column::JobId.eq(job_id))
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
    // The claims go with it: a run of another replica finds its item no longer held.
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(ItemStatus::Cancelled))
        .col_expr(item::Column::FinishedAt, Expr::value(at))
        .col_expr(
            item::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(item::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
        .filter(item::Column::JobId.eq(job_id))
        .filter(item::Column::Status.is_in([ItemStatus::Queued, ItemStatus::Running]))
        .exec(&app.db)
        .await?;
    app.registry
        .abort_job(job_id, Duration::from_secs(10))
        .await;
    Ok(res.rows_affected > 0)
}

/// The item queue's worker as the shared pool drives it (`background::run_pool`).
struct Pool {
    app: Runner,
    shutdown: CancellationToken,
}

impl crate::background::Work for Pool {
    type Claim = (job::Model, item::Model);
    type Error = DbErr;

    fn limit(&self) -> usize {
        self.app.worker.concurrency
    }

    async fn claim(&self, n: usize) -> Result<Vec<Self::Claim>, DbErr> {
        let w = &self.app.worker;
        claim(&self.app.db, &w.worker_id, w.lease, n).await
    }

    fn run(
        self: Arc<Self>,
        (j, it): Self::Claim,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        run_item(
            self.app.clone(),
            j,
            it,
            self.app.worker.clone(),
            self.shutdown.clone(),
            None,
        )
    }

    /// Never called: runs see the shutdown and hand their items back themselves (`OnStop::Drain`).
    async fn hand_back(&self, _: &Self::Claim) {}

    async fn woken(&self) {
        self.app.registry.wake.notified().await;
    }
}

/// Runs batch items until `shutdown`: claims up to `concurrency` at a time, wakes on new local jobs,
/// on a finished run and every `poll`. On shutdown its runs hand their items back.
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
    let pool = Pool {
        app: app.clone(),
        shutdown: shutdown.clone(),
    };
    crate::background::run_pool(
        Arc::new(pool),
        crate::background::PoolSchedule {
            name: "analysis worker",
            poll: settings.poll,
            max_backoff: settings.poll.max(Duration::from_secs(5)),
            on_stop: crate::background::OnStop::Drain,
        },
        shutdown,
    )
    .await;
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
