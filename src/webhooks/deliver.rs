//! The delivery worker: claims due outbox rows with a lease (the shared leased queue, fenced by a
//! per-claim token), POSTs them signed, and records every attempt on the row. 2xx delivers; 410 disables the endpoint; anything else (3xx included: no
//! redirects are followed), a timeout or a refused target is retried on the schedule with jitter,
//! `Retry-After` honoured, until the schedule runs out.

use super::{Settings, sign};
use crate::crypto::Keys;
use crate::lease::{Due, Queue};
use chrono::{DateTime, Utc};
use entity::{webhook_deliveries as wd, webhook_endpoints as we};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, Set,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub gave_up: std::sync::atomic::AtomicU64,
    pub disabled: std::sync::atomic::AtomicU64,
    /// Attempts whose delivery another replica took over (lease expired): not recorded.
    pub claims_lost: std::sync::atomic::AtomicU64,
}

/// Everything the worker needs.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub db: DatabaseConnection,
    pub settings: Settings,
    pub keys: Arc<Keys>,
    pub client: reqwest::Client,
    pub metrics: Arc<DeliveryMetrics>,
    /// This worker's name in `claimed_by`.
    pub worker_id: String,
}

#[derive(Debug, FromQueryResult)]
struct Claimed {
    id: Uuid,
}

/// The outbox as a leased queue: due rows oldest first.
const QUEUE: Queue = Queue {
    table: "webhook_deliveries",
    key: &["id"],
    order: "next_attempt_at",
};

impl Deliverer {
    pub fn new(
        db: DatabaseConnection,
        settings: Settings,
        keys: Arc<Keys>,
        worker_id: String,
    ) -> anyhow::Result<Self> {
        let client = super::ssrf::client(settings.allow_private, settings.timeout)?;
        Ok(Deliverer {
            db,
            settings,
            keys,
            client,
            metrics: Arc::default(),
            worker_id,
        })
    }

    /// Claims up to `n` due deliveries (a lease of twice the timeout and 5 s keeps other replicas
    /// off them; an attempt never outlasts the timeout, so it is not renewed), with the claim's
    /// fencing token (see [`Self::update_fenced`]).
    async fn claim(&self, n: usize) -> Result<Vec<(Uuid, Uuid)>, DbErr> {
        let now = Utc::now();
        let lease = self.settings.timeout * 2 + Duration::from_secs(5);
        let (token, rows) = QUEUE
            .claim::<Claimed>(
                &self.db,
                &self.worker_id,
                lease,
                n,
                Due {
                    sql: "status = 'pending' AND next_attempt_at <= ? \
                          AND (lease_until IS NULL OR lease_until < ?)",
                    values: vec![now.into(), now.into()],
                    returning: "id",
                    ..Due::default()
                },
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.id, token)).collect())
    }

    /// Writes `am` (and clears the claim) only while this worker's claim still holds the row. A
    /// worker frozen past its lease finds another replica's claim there: its attempt is not
    /// recorded (the receiver deduplicates the second POST by `webhook-id`). `Ok(false)` then.
    async fn update_fenced(&self, mut am: wd::ActiveModel, token: Uuid) -> Result<bool, DbErr> {
        let id = am.id.try_as_ref().copied();
        am.lease_until = Set(None);
        am.claimed_by = Set(None);
        am.claim_token = Set(None);
        match wd::Entity::update(am)
            .validate()?
            .filter(wd::Column::ClaimToken.eq(token))
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(true),
            Err(DbErr::RecordNotUpdated) => {
                self.metrics
                    .claims_lost
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(delivery_id = ?id, "webhook delivery taken over by another replica while this one was away (lease expired); this attempt is not recorded");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Delivers what is due now, up to `n`; returns how many attempts were made.
    pub async fn deliver_due(&self, n: usize) -> Result<usize, DbErr> {
        let ids = self.claim(n).await?;
        let count = ids.len();
        let attempts = ids.into_iter().map(|(id, token)| self.attempt(id, token));
        for r in futures::future::join_all(attempts).await {
            r?;
        }
        Ok(count)
    }

    async fn attempt(&self, id: Uuid, token: Uuid) -> Result<(), DbErr> {
        let Some(d) = wd::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(());
        };
        let Some(endpoint) = we::Entity::find_by_id(d.endpoint_id).one(&self.db).await? else {
            return Ok(());
        };
        if !endpoint.enabled {
            let mut am: wd::ActiveModel = d.into();
            am.status = Set(wd::Status::Disabled);
            am.next_attempt_at = Set(None);
            self.update_fenced(am, token).await?;
            return Ok(());
        }
        let secret = match self.keys.open(&endpoint.secret) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(webhook_id = %endpoint.id, error = %e, "cannot read the webhook secret; delivery not sent");
                return self
                    .record(
                        d,
                        token,
                        None,
                        Some(format!("cannot read the signing secret: {e}")),
                        None,
                        0.0,
                    )
                    .await;
            }
        };
        let ts = Utc::now().timestamp();
        let Some(signature) = sign(&secret, &d.message_id, ts, &d.payload) else {
            return self
                .record(
                    d,
                    token,
                    None,
                    Some("the signing secret is malformed".into()),
                    None,
                    0.0,
                )
                .await;
        };
        let started = Instant::now();
        let allowed = &self.settings.allowed_hosts;
        let guard = match reqwest::Url::parse(&endpoint.url) {
            Ok(u)
                if !allowed.is_empty()
                    && !u
                        .host_str()
                        .is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) =>
            {
                Some(format!(
                    "host of {} is not in INSIGHTS_WEBHOOK_ALLOWED_HOSTS",
                    endpoint.url
                ))
            }
            Ok(u) if !self.settings.allow_private => match u.host_str() {
                // IP literals never reach the resolver: check them here.
                Some(h)
                    if h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok() =>
                {
                    super::ssrf::check_host(h, 0)
                        .await
                        .err()
                        .map(|e| e.to_string())
                }
                _ => None,
            },
            Ok(_) => None,
            Err(e) => Some(format!("url is not valid: {e}")),
        };
        if let Some(refused) = guard {
            tracing::warn!(webhook_id = %endpoint.id, error = %refused, "webhook target refused");
            return self.record(d, token, None, Some(refused), None, 0.0).await;
        }
        let sent = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.message_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = crate::stt::retry_after(r.headers());
                // Drain a little of the body so the connection can be reused; never keep it.
                let _ = tokio::time::timeout(Duration::from_secs(1), r.bytes()).await;
                if status == 410 {
                    return self.disable(d, token, &endpoint, ms).await;
                }
                let error =
                    (!(200..300).contains(&status)).then(|| format!("receiver answered {status}"));
                self.record(d, token, Some(status), error, retry_after, ms)
                    .await
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("no answer within {} ms", self.settings.timeout.as_millis())
                } else {
                    // Without the URL: a capability URL carries its secret in the path, and this
                    // text is logged and stored.
                    crate::stt::error_chain(&e.without_url())
                };
                self.record(d, token, None, Some(what), None, ms).await
            }
        }
    }

    /// Records an attempt: delivered on success, else the next retry (or the end of the schedule).
    async fn record(
        &self,
        d: wd::Model,
        token: Uuid,
        status: Option<u16>,
        error: Option<String>,
        retry_after: Option<Duration>,
        ms: f64,
    ) -> Result<(), DbErr> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Utc::now();
        let attempts = d.attempts + 1;
        let mut log = d.attempt_log.as_array().cloned().unwrap_or_default();
        log.push(json!({"at": now, "status_code": status, "error": error, "duration_ms": (ms * 10.0).round() / 10.0}));
        // The attempt log keeps the last 20 attempts.
        if log.len() > 20 {
            log.drain(..log.len() - 20);
        }
        let (id, endpoint_id, event) = (d.id, d.endpoint_id, d.event_type.clone());
        let mut am: wd::ActiveModel = d.into();
        am.attempts = Set(attempts);
        am.attempt_log = Set(json!(log));
        am.last_status_code = Set(status.map(i32::from));
        am.last_error = Set(error.clone());
        if error.is_none() {
            am.status = Set(wd::Status::Delivered);
            am.delivered_at = Set(Some(now));
            am.next_attempt_at = Set(None);
            self.metrics.delivered.fetch_add(1, Relaxed);
        } else if let Some(wait) = self.settings.schedule.get(attempts as usize - 1) {
            self.metrics.failed_attempts.fetch_add(1, Relaxed);
            // ±20 % jitter, and never earlier than the receiver asked.
            let jittered = wait.mul_f64(0.8 + 0.4 * fastrand::f64());
            let wait = retry_after.map_or(jittered, |r| r.max(jittered));
            let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
            am.next_attempt_at = Set(Some(next));
            tracing::info!(delivery_id = %id, webhook_id = %endpoint_id, event, attempts, error = error.as_deref().unwrap_or(""), next_attempt_at = %next, "webhook delivery failed; will retry");
        } else {
            self.metrics.gave_up.fetch_add(1, Relaxed);
            am.status = Set(wd::Status::Failed);
            am.next_attempt_at = Set(None);
            tracing::warn!(delivery_id = %id, webhook_id = %endpoint_id, event, attempts, error = error.as_deref().unwrap_or(""), "webhook delivery failed for good");
        }
        self.update_fenced(am, token).await?;
        Ok(())
    }

    /// 410 Gone: the endpoint is disabled with the reason, its pending deliveries stop.
    async fn disable(
        &self,
        d: wd::Model,
        token: Uuid,
        endpoint: &we::Model,
        ms: f64,
    ) -> Result<(), DbErr> {
        self.metrics
            .disabled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Utc::now();
        let reason = format!("receiver answered 410 Gone at {}", now.to_rfc3339());
        tracing::warn!(webhook_id = %endpoint.id, "webhook endpoint answered 410 Gone: disabled");
        let mut e: we::ActiveModel = endpoint.clone().into();
        e.enabled = Set(false);
        e.disabled_reason = Set(Some(reason));
        e.updated_at = Set(now);
        e.update(&self.db).await?;
        let mut log = d.attempt_log.as_array().cloned().unwrap_or_default();
        log.push(json!({"at": now, "status_code": 410, "error": "410 Gone: endpoint disabled", "duration_ms": ms}));
        let attempts = d.attempts + 1;
        let mut am: wd::ActiveModel = d.into();
        am.status = Set(wd::Status::Disabled);
        am.attempts = Set(attempts);
        am.attempt_log = Set(json!(log));
        am.last_status_code = Set(Some(410));
        am.last_error = Set(Some("410 Gone: endpoint disabled".into()));
        am.next_attempt_at = Set(None);
        self.update_fenced(am, token).await?;
        wd::Entity::update_many()
            .col_expr(
                wd::Column::Status,
                sea_orm::sea_query::Expr::value(wd::Status::Disabled),
            )
            .col_expr(
                wd::Column::NextAttemptAt,
                sea_orm::sea_query::Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(wd::Column::EndpointId.eq(endpoint.id))
            .filter(wd::Column::Status.eq(wd::Status::Pending))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Delivers until `shutdown`: polls for due rows, never more than the concurrency in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        use crate::background::{Pass, Schedule, run};
        let schedule = Schedule {
            name: "webhook delivery",
            every: self.settings.poll,
            max_backoff: self.settings.poll.max(Duration::from_secs(5)),
            run_at_start: true,
        };
        let this = &self;
        run(schedule, None, shutdown, || async move {
            let n = this.deliver_due(this.settings.concurrency).await?;
            Ok::<_, DbErr>(if n > 0 { Pass::More } else { Pass::Idle })
        })
        .await;
    }
}
