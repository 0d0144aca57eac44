//! The analytics queue and its worker: final reports are queued in the ingest transaction; workers
//! claim items with a lease and a fencing token (`FOR UPDATE SKIP LOCKED` on PostgreSQL), renew the
//! lease while the analyzer runs, and store the result fenced by the token, so a frozen worker that
//! wakes up after its item was taken over changes nothing. Transient analyzer failures go back to the
//! queue with back-off; an item started `max_attempts` times fails for good, with its last error.

use super::store::{self, Claim, Outcome};
use super::{Analytics, CallInput, reconcile};
use crate::db::stmt;
use chrono::Utc;
use entity::call_sessions as cs;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Queues the analytics of final reports just committed (called inside the ingest transaction).
/// A newer report re-queues a finished item; an item claimed by a worker is re-queued too (the
/// worker's result, for an older report, is then fenced out).
pub async fn enqueue<C: ConnectionTrait>(
    c: &C,
    finals: &[(Uuid, String, i64)],
) -> Result<(), DbErr> {
    let backend = c.get_database_backend();
    let now = Utc::now();
    for chunk in finals.chunks(500) {
        let rows = vec!["(?, ?, ?, 'queued', 0, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO analytics_queue (session_id, tenant_id, report_seq, status, attempts, available_at, enqueued_at) VALUES {rows} \
             ON CONFLICT (session_id) DO UPDATE SET report_seq = excluded.report_seq, status = 'queued', attempts = 0, \
             claim_token = NULL, claimed_by = NULL, lease_until = NULL, error = NULL, finished_at = NULL, \
             available_at = excluded.available_at, enqueued_at = excluded.enqueued_at, \
             job_id = CASE WHEN analytics_queue.status IN ('queued', 'running') THEN analytics_queue.job_id ELSE NULL END \
             WHERE analytics_queue.report_seq < excluded.report_seq"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for (id, tenant, seq) in chunk {
            values.extend([
                (*id).into(),
                tenant.clone().into(),
                (*seq).into(),
                now.into(),
                now.into(),
            ]);
        }
        c.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct ClaimRow {
    session_id: Uuid,
    attempts: i32,
    job_id: Option<Uuid>,
    report_seq: i64,
}

/// The analytics queue as a leased queue (one row per session).
pub const QUEUE: crate::lease::Queue = crate::lease::Queue {
    table: "analytics_queue",
    key: &["session_id"],
    order: "available_at",
};

/// Claims up to `n` items that are due, or whose holder's lease ran out.
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    n: usize,
    lease: Duration,
) -> Result<Vec<Claim>, DbErr> {
    let now = Utc::now();
    let (token, rows) = QUEUE
        .claim::<ClaimRow>(
            db,
            worker,
            lease,
            n,
            crate::lease::Due {
                sql: "(status = 'queued' AND available_at <= ?) OR (status = 'running' AND lease_until < ?)",
                values: vec![now.into(), now.into()],
                also: "status = 'running', attempts = attempts + 1",
                also_values: Vec::new(),
                returning: "session_id, attempts, job_id, report_seq",
            },
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claim {
            session_id: r.session_id,
            token,
            attempts: r.attempts,
            job_id: r.job_id,
            report_seq: r.report_seq,
        })
        .collect())
}

/// Extends a claim's lease; false when the claim is no longer this worker's.
pub async fn renew(db: &DatabaseConnection, claim: &Claim, lease: Duration) -> Result<bool, DbErr> {
    QUEUE
        .renew(db, &[claim.session_id.into()], claim.token, lease)
        .await
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemResult {
    Completed,
    Skipped,
    Failed,
    /// The conversation had not changed since the stored result.
    Unchanged,
    /// Sent back to the queue for a later try.
    Requeued,
    /// Another worker (or a newer report) holds the item now; nothing was stored.
    Lost,
}

fn requeue_delay(attempts: i32) -> Duration {
    let secs = 2u64.saturating_pow(attempts.clamp(0, 10) as u32).min(300);
    Duration::from_secs(secs).mul_f64(0.75 + 0.5 * fastrand::f64())
}

/// Runs one claimed item to its end (renewing the lease meanwhile).
pub async fn run_claim(
    a: &Analytics,
    db: &DatabaseConnection,
    claim: &Claim,
) -> Result<ItemResult, DbErr> {
    let lease = a.lease();
    let work = process(a, db, claim);
    tokio::pin!(work);
    // Renewals run beside the work, never instead of it: a renewal waiting for SQLite's write lock
    // while the work holds it in a transaction (and is not polled) would deadlock both until the
    // busy timeout.
    let renewals = async {
        let mut tick = tokio::time::interval(lease / 4);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !renew(db, claim, lease).await? {
                return Ok::<(), DbErr>(());
            }
        }
    };
    tokio::pin!(renewals);
    tokio::select! {
        r = &mut work => r,
        stopped = &mut renewals => {
            stopped?;
            // Taken over, re-queued by a newer report — or this run's own result was just
            // committed (its fence clears the token). The run goes on without renewals: its
            // store is fenced, so a lost claim stores nothing and reports `Lost` itself.
            tracing::debug!(session_id = %claim.session_id, "analytics lease not renewed; finishing the run fenced");
            work.await
        }
    }
}

async fn process(
    a: &Analytics,
    db: &DatabaseConnection,
    claim: &Claim,
) -> Result<ItemResult, DbErr> {
    let Some(session) = cs::Entity::find_by_id(claim.session_id).one(db).await? else {
        // The session was erased after it was queued: nothing to analyse.
        store::requeue(
            db,
            claim,
            "session no longer exists",
            Duration::from_secs(0),
        )
        .await?;
        return Ok(ItemResult::Lost);
    };
    let call = CallInput::load(db, session).await?;
    let profile = a.profiles.for_agent(call.session.agent_id.as_deref());
    let hash = call.conversation_hash();
    let Some(analyzer) = a.analyzer.clone() else {
        store::release(db, claim).await?;
        return Ok(ItemResult::Requeued);
    };
    if claim.job_id.is_none()
        && let Some(old) = store::find(db, claim.session_id).await?
        && old.conversation_hash.as_deref() == Some(hash.as_str())
        && old.schema_version == super::schema::SCHEMA_VERSION
        && old.prompt_version.as_deref() == Some(profile.prompt_version.as_str())
        && old.status != entity::call_analytics::Status::Failed
    {
        let ok = store::store_unchanged(db, claim).await?;
        a.metrics.unchanged.fetch_add(1, Relaxed);
        return Ok(if ok {
            ItemResult::Unchanged
        } else {
            ItemResult::Lost
        });
    }
    let started = Instant::now();
    let spoken = call.spoken_turns().count();
    let outcome = if spoken < 2 {
        Outcome {
            status: entity::call_analytics::Status::Skipped,
            analyzer: analyzer.kind(),
            analysis: None,
            error: Some(format!(
                "{spoken} turn(s) with words; analytics needs at least 2"
            )),
            raw_answer: None,
            usage: None,
            cost_usd: None,
            model: None,
            attempts: 0,
            latency_ms: 0.0,
            disagreements: Vec::new(),
        }
    } else {
        match analyzer.analyze(&call, profile).await {
            Ok(mut answer) => {
                let disagreements = reconcile(&call, &mut answer.analysis);
                Outcome {
                    status: entity::call_analytics::Status::Completed,
                    analyzer: analyzer.kind(),
                    cost_usd: answer.usage.as_ref().and_then(|u| analyzer.cost(u)),
                    analysis: Some(answer.analysis),
                    error: None,
                    raw_answer: None,
                    usage: answer.usage,
                    model: answer.model,
                    attempts: answer.attempts,
                    latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    disagreements,
                }
            }
            Err(f) if f.transient && claim.attempts < a.settings.max_attempts => {
                let wait = requeue_delay(claim.attempts);
                tracing::warn!(session_id = %claim.session_id, attempts = claim.attempts, error = %f.error, retry_in_ms = wait.as_millis() as u64, "analytics failed for now; re-queued");
                a.metrics.requeued.fetch_add(1, Relaxed);
                let ok = store::requeue(db, claim, &f.error, wait).await?;
                return Ok(if ok {
                    ItemResult::Requeued
                } else {
                    ItemResult::Lost
                });
            }
            Err(f) => Outcome {
                status: entity::call_analytics::Status::Failed,
                analyzer: analyzer.kind(),
                cost_usd: f.usage.as_ref().and_then(|u| analyzer.cost(u)),
                analysis: None,
                error: Some(f.error),
                raw_answer: f.raw_answer,
                usage: f.usage,
                model: f.model,
                attempts: f.attempts,
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                disagreements: Vec::new(),
            },
        }
    };
    let status = outcome.status;
    let mut ready = crate::live::LiveEvent::new(
        "analytics_ready",
        call.session.id,
        &call.session.call_id,
        &call.session.tenant_id,
        call.session.agent_id.as_deref(),
        serde_json::json!({
            "status": status,
            "analyzer": outcome.analyzer,
            "sentiment": outcome.analysis.as_ref().map(|x| x.sentiment.clone()),
            "sentiment_score": outcome.analysis.as_ref().map(|x| x.sentiment_score),
            "intent": outcome.analysis.as_ref().map(|x| x.intent.clone()),
            "lead_score": outcome.analysis.as_ref().map(|x| x.lead_score),
            "escalated": outcome.analysis.as_ref().map(|x| x.escalated),
            "hot_lead": outcome.analysis.as_ref().is_some_and(|x| profile.hot_lead.is_hot(x.lead_score, &x.intent)),
            "error": outcome.error,
        }),
    );
    if let Some(e) = &outcome.error {
        tracing::info!(session_id = %claim.session_id, %status, reason = %e, "analytics stored without a result");
    }
    let live = a.live.as_ref().map(|_| &mut ready);
    let stored = store::store(db, &a.keys, claim, &call, profile, outcome, live).await?;
    if !stored {
        a.metrics.lost.fetch_add(1, Relaxed);
        tracing::warn!(session_id = %claim.session_id, "analytics result discarded: the item was taken over meanwhile");
        return Ok(ItemResult::Lost);
    }
    if let Some(hub) = &a.live {
        hub.publish(std::slice::from_ref(&ready)).await;
    }
    use entity::call_analytics::Status as S;
    Ok(match status {
        S::Completed => {
            a.metrics.completed.fetch_add(1, Relaxed);
            ItemResult::Completed
        }
        S::Skipped => {
            a.metrics.skipped.fetch_add(1, Relaxed);
            ItemResult::Skipped
        }
        _ => {
            a.metrics.failed.fetch_add(1, Relaxed);
            ItemResult::Failed
        }
    })
}

/// An item claimed more often than allowed without finishing (its worker crashed every time).
async fn give_up(
    a: &Analytics,
    db: &DatabaseConnection,
    claim: &Claim,
) -> Result<ItemResult, DbErr> {
    let Some(session) = cs::Entity::find_by_id(claim.session_id).one(db).await? else {
        return Ok(ItemResult::Lost);
    };
    let call = CallInput::load(db, session).await?;
    let profile = a.profiles.for_agent(call.session.agent_id.as_deref());
    let last = a.settings.max_attempts;
    let outcome = Outcome {
        status: entity::call_analytics::Status::Failed,
        analyzer: a.analyzer.as_ref().map_or("offline", |x| x.kind()),
        analysis: None,
        error: Some(format!(
            "started {} times without finishing (more than {last} allowed)",
            claim.attempts
        )),
        raw_answer: None,
        usage: None,
        cost_usd: None,
        model: a.analyzer.as_ref().and_then(|x| x.model()),
        attempts: claim.attempts,
        latency_ms: 0.0,
        disagreements: Vec::new(),
    };
    let ok = store::store(db, &a.keys, claim, &call, profile, outcome, None).await?;
    a.metrics.failed.fetch_add(u64::from(ok), Relaxed);
    Ok(if ok {
        ItemResult::Failed
    } else {
        ItemResult::Lost
    })
}

async fn run_one(
    a: &Analytics,
    db: &DatabaseConnection,
    claim: &Claim,
) -> Result<ItemResult, DbErr> {
    if claim.attempts > a.settings.max_attempts {
        return give_up(a, db, claim).await;
    }
    run_claim(a, db, claim).await
}

/// Claims and runs up to `n` items to their end; returns what became of each (tests, CLI, bench).
pub async fn process_available(
    a: &Analytics,
    db: &DatabaseConnection,
    worker: &str,
    n: usize,
) -> Result<Vec<ItemResult>, DbErr> {
    let claims = claim(db, worker, n, a.lease()).await?;
    let runs = claims.iter().map(|c| run_one(a, db, c));
    futures::future::join_all(runs).await.into_iter().collect()
}

/// How long analytics waits for an ingest backlog before it takes one call at a time anyway.
const BACKLOG_GRACE: Duration = Duration::from_secs(60);

/// The analytics queue's worker as the shared pool drives it (`background::run_pool`).
struct Pool {
    a: Arc<Analytics>,
    db: DatabaseConnection,
    worker: String,
    concurrency: usize,
    /// Since when ingest has been working through a backlog (analytics holds back meanwhile).
    backlog_since: std::sync::Mutex<Option<Instant>>,
}

impl crate::background::Work for Pool {
    type Claim = Claim;
    type Error = DbErr;

    /// While ingest works through a backlog, analytics waits (the calls stay queued, durably):
    /// ingest keeps the cores and the database. A backlog that lasts over a minute lets one call
    /// at a time through, so sustained overload cannot starve analytics.
    fn limit(&self) -> usize {
        let backlog = self
            .a
            .ingest
            .as_ref()
            .is_some_and(|m| m.backlogged.load(Relaxed) > 0);
        let mut since = self
            .backlog_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (backlog, *since) {
            (false, _) => {
                *since = None;
                self.concurrency
            }
            (true, None) => {
                *since = Some(Instant::now());
                0
            }
            (true, Some(t)) if t.elapsed() < BACKLOG_GRACE => 0,
            (true, Some(_)) => 1,
        }
    }

    async fn claim(&self, n: usize) -> Result<Vec<Claim>, DbErr> {
        claim(&self.db, &self.worker, n, self.a.lease()).await
    }

    async fn run(self: Arc<Self>, c: Claim) {
        match run_one(&self.a, &self.db, &c).await {
            Ok(r) => {
                tracing::debug!(session_id = %c.session_id, result = ?r, "analytics item done")
            }
            Err(e) => {
                self.a.metrics.db_errors.fetch_add(1, Relaxed);
                tracing::warn!(session_id = %c.session_id, error = %e, "analytics item hit a database error; it runs again after its lease");
            }
        }
    }

    async fn hand_back(&self, c: &Claim) {
        if let Err(e) = store::release(&self.db, c).await {
            tracing::warn!(session_id = %c.session_id, error = %e, "cannot hand an analytics item back; it runs again after its lease");
        }
    }
}

/// Runs until `shutdown`, `concurrency` items at once; on shutdown the runs in flight are stopped
/// and their items handed back (their start not counted).
pub async fn run_worker(
    a: Arc<Analytics>,
    db: DatabaseConnection,
    worker: String,
    shutdown: CancellationToken,
) {
    let concurrency = a.settings.concurrency();
    if concurrency == 0 || a.analyzer.is_none() {
        return;
    }
    let poll = a.poll();
    let pool = Pool {
        a,
        db,
        worker,
        concurrency,
        backlog_since: std::sync::Mutex::new(None),
    };
    crate::background::run_pool(
        Arc::new(pool),
        crate::background::PoolSchedule {
            name: "analytics worker",
            poll,
            max_backoff: poll.max(Duration::from_secs(5)),
            on_stop: crate::background::OnStop::Abort,
        },
        shutdown,
    )
    .await;
}
