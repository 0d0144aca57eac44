//! Batch STT analysis jobs as the API, the UI and the CLI see them: which sessions a request names
//! (ids or a sessions filter), a job's progress with its items, the job list, cancel. The runs
//! themselves live in [`super::jobs`].

use super::jobs::{self, JobKind, MAX_BATCH, NewJob};
use crate::error::Error;
use crate::sessions::{SessionFilter, filter_sessions, page_limit};
use crate::stt::{ProviderId, SttProviders};
use crate::tenancy::Scope;
use chrono::{DateTime, Utc};
use entity::{
    analysis_job_items as item, analysis_jobs as job, call_sessions as cs, session_analyses as sa,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Parses and checks a provider list against the configured providers.
pub fn parse_providers(
    stt: &SttProviders,
    raw: Option<&str>,
) -> Result<Option<Vec<ProviderId>>, Error> {
    if stt.is_empty() {
        return Err(Error::Unavailable(
            "no STT provider is configured (set INSIGHTS_<PROVIDER>_API_KEY)".into(),
        ));
    }
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let configured: Vec<&str> = stt.all().iter().map(|p| p.id().as_str()).collect();
    let mut ids = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let id = ProviderId::parse(name).ok_or_else(|| {
            Error::invalid(
                "providers",
                format!(
                    "unknown provider {name:?}; configured: {}",
                    configured.join(", ")
                ),
            )
        })?;
        if stt.get(id).is_none() {
            return Err(Error::Conflict(format!(
                "provider {name} is not configured here (set INSIGHTS_{}_API_KEY); configured: {}",
                id.env_prefix(),
                configured.join(", ")
            )));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(Error::invalid("providers", "no provider named"));
    }
    Ok(Some(ids))
}

/// A language code such as `en` or `pt-BR` (empty = absent).
pub fn check_language(raw: Option<&str>) -> Result<Option<String>, Error> {
    let Some(l) = raw.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let ok = l.len() <= 12
        && l.split('-').enumerate().all(|(i, part)| {
            let n = part.len();
            part.chars().all(|c| c.is_ascii_alphanumeric())
                && if i == 0 {
                    (2..=3).contains(&n) && part.chars().all(|c| c.is_ascii_alphabetic())
                } else {
                    (2..=8).contains(&n)
                }
        })
        && l.split('-').count() <= 2;
    if !ok {
        return Err(Error::invalid(
            "language",
            format!("language must be a language code such as en or pt-BR, got {l:?}"),
        ));
    }
    Ok(Some(l.to_string()))
}

/// Sessions to analyse: explicit ids or a sessions filter (not both).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"session_ids": ["6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11"], "providers": ["deepgram", "groq"]}))]
pub struct BatchRequest {
    /// Up to 50 session ids (give these or `filter`).
    #[schema(min_items = 1, max_items = 50, nullable = false)]
    pub session_ids: Option<Vec<Uuid>>,
    /// The session list's filters; the batch takes every matching session (newest first, at most
    /// `limit`), and is refused when more than 50 match without a `limit`.
    #[schema(nullable = false)]
    pub filter: Option<SessionFilter>,
    /// With `filter`: take at most this many (1–50) of the newest matching sessions.
    #[schema(minimum = 1, maximum = 50)]
    #[serde(default, deserialize_with = "crate::json_num::json_opt_u32")]
    pub limit: Option<u32>,
    /// Providers (every configured one when absent).
    pub providers: Option<Vec<ProviderId>>,
    #[schema(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub session_id: Uuid,
    pub call_id: Option<String>,
    pub position: i32,
    pub status: ItemStatus,
    /// Times a worker started it (more than 1 after a worker died or the service restarted).
    pub attempts: i32,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub job_id: Uuid,
    /// `batch`, or `single` for a job made by `POST /api/v1/analysis/{session_id}`.
    pub kind: String,
    pub status: JobStatus,
    pub total: i32,
    /// Items finished with a stored analysis.
    pub done: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub cancelled: usize,
    #[schema(value_type = Option<Vec<ProviderId>>)]
    pub providers: Option<serde_json::Value>,
    pub language: Option<String>,
    #[schema(value_type = Option<SessionFilter>)]
    pub filter: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every session of the job in order (left out of job lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<BatchItem>>,
}

impl From<item::Status> for ItemStatus {
    fn from(s: item::Status) -> Self {
        match s {
            item::Status::Queued => ItemStatus::Queued,
            item::Status::Running => ItemStatus::Running,
            item::Status::Completed => ItemStatus::Completed,
            item::Status::Failed => ItemStatus::Failed,
            item::Status::Cancelled => ItemStatus::Cancelled,
        }
    }
}

impl From<job::Status> for JobStatus {
    fn from(s: job::Status) -> Self {
        match s {
            job::Status::Running => JobStatus::Running,
            job::Status::Completed => JobStatus::Completed,
            job::Status::Cancelled => JobStatus::Cancelled,
        }
    }
}

impl From<JobStatus> for job::Status {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Running => job::Status::Running,
            JobStatus::Completed => job::Status::Completed,
            JobStatus::Cancelled => job::Status::Cancelled,
        }
    }
}

/// A job with its items' progress.
pub async fn batch_view(
    db: &sea_orm::DatabaseConnection,
    j: job::Model,
) -> Result<BatchView, sea_orm::DbErr> {
    let items = item::Entity::find()
        .filter(item::Column::JobId.eq(j.id))
        .order_by_asc(item::Column::Position)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.session_id).collect();
    let calls: HashMap<Uuid, String> = cs::Entity::find()
        .select_only()
        .columns([cs::Column::Id, cs::Column::CallId])
        .filter(cs::Column::Id.is_in(ids))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let items: Vec<BatchItem> = items
        .into_iter()
        .map(|i| BatchItem {
            call_id: calls.get(&i.session_id).cloned(),
            session_id: i.session_id,
            position: i.position,
            status: i.status.into(),
            attempts: i.attempts,
            error: i.error,
            started_at: i.started_at,
            finished_at: i.finished_at,
        })
        .collect();
    let mut counts: HashMap<ItemStatus, usize> = HashMap::new();
    for i in &items {
        *counts.entry(i.status).or_default() += 1;
    }
    Ok(job_view(j, &counts, Some(items)))
}

fn job_view(
    j: job::Model,
    counts: &HashMap<ItemStatus, usize>,
    items: Option<Vec<BatchItem>>,
) -> BatchView {
    let count = |s: ItemStatus| counts.get(&s).copied().unwrap_or(0);
    BatchView {
        job_id: j.id,
        kind: j.kind,
        status: j.status.into(),
        total: j.total,
        done: count(ItemStatus::Completed),
        failed: count(ItemStatus::Failed),
        running: count(ItemStatus::Running),
        queued: count(ItemStatus::Queued),
        cancelled: count(ItemStatus::Cancelled),
        providers: j.providers,
        language: j.language,
        filter: j.filter,
        created_at: j.created_at,
        updated_at: j.updated_at,
        finished_at: j.finished_at,
        items,
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKindFilter {
    Single,
    Batch,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first, with their counts (without their items: GET one for them).
    pub items: Vec<BatchView>,
    pub next_cursor: Option<String>,
}

/// A page of the caller's jobs, newest first, with their counts (without items).
pub async fn list_jobs(
    db: &DatabaseConnection,
    scope: &Scope,
    status: Option<JobStatus>,
    kind: Option<JobKindFilter>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<JobList, Error> {
    let limit = page_limit(limit)?;
    let mut q = job::Entity::find();
    if let Some(t) = scope.tenant() {
        q = q.filter(job::Column::TenantId.eq(t));
    }
    if let Some(s) = status {
        q = q.filter(job::Column::Status.eq(job::Status::from(s)));
    }
    if let Some(k) = kind {
        let kind = match k {
            JobKindFilter::Single => JobKind::Single,
            JobKindFilter::Batch => JobKind::Batch,
        };
        q = q.filter(job::Column::Kind.eq(kind.as_str()));
    }
    let (jobs, next_cursor) = crate::paging::keyset_page(
        db,
        q,
        (job::Column::CreatedAt, job::Column::Id),
        cursor,
        limit,
        |j| (j.created_at, j.id),
    )
    .await?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let rows: Vec<(Uuid, item::Status, i64)> = if ids.is_empty() {
        Vec::new()
    } else {
        item::Entity::find()
            .select_only()
            .column(item::Column::JobId)
            .column(item::Column::Status)
            .column_as(item::Column::SessionId.count(), "n")
            .filter(item::Column::JobId.is_in(ids))
            .group_by(item::Column::JobId)
            .group_by(item::Column::Status)
            .into_tuple()
            .all(db)
            .await?
    };
    let mut counts: HashMap<Uuid, HashMap<ItemStatus, usize>> = HashMap::new();
    for (job_id, status, n) in rows {
        *counts
            .entry(job_id)
            .or_default()
            .entry(ItemStatus::from(status))
            .or_default() += usize::try_from(n).unwrap_or(0);
    }
    let empty = HashMap::new();
    Ok(JobList {
        items: jobs
            .into_iter()
            .map(|j| {
                let c = counts.get(&j.id).unwrap_or(&empty);
                job_view(j, c, None)
            })
            .collect(),
        next_cursor,
    })
}

/// The sessions a batch request names, checked: visible to the caller, 1–50 of them.
pub async fn resolve_batch(
    db: &sea_orm::DatabaseConnection,
    scope: &Scope,
    req: &BatchRequest,
) -> Result<Vec<Uuid>, Error> {
    match (&req.session_ids, &req.filter) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "session_ids",
            "give session_ids or filter, not both",
        )),
        (None, None) => Err(Error::invalid(
            "session_ids",
            "give session_ids (up to 50) or a sessions filter",
        )),
        (Some(ids), None) => {
            let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
            for id in ids {
                if !unique.contains(id) {
                    unique.push(*id);
                }
            }
            if unique.is_empty() {
                return Err(Error::invalid("session_ids", "session_ids is empty"));
            }
            if unique.len() > MAX_BATCH {
                return Err(Error::invalid(
                    "session_ids",
                    format!(
                        "at most {MAX_BATCH} sessions per batch, got {}",
                        unique.len()
                    ),
                ));
            }
            let mut q = cs::Entity::find()
                .select_only()
                .column(cs::Column::Id)
                .filter(cs::Column::Id.is_in(unique.clone()));
            if let Some(t) = scope.tenant() {
                q = q.filter(cs::Column::TenantId.eq(t));
            }
            let found: Vec<Uuid> = q.into_tuple().all(db).await?;
            let missing: Vec<String> = unique
                .iter()
                .filter(|id| !found.contains(id))
                .map(Uuid::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(Error::NotFound(format!("sessions {}", missing.join(", "))));
            }
            Ok(unique)
        }
        (None, Some(filter)) => {
            if let Some(l) = req.limit
                && !(1..=MAX_BATCH as u32).contains(&l)
            {
                return Err(Error::invalid(
                    "limit",
                    format!("limit must be between 1 and {MAX_BATCH}, got {l}"),
                ));
            }
            let no_match = || Error::NotFound("session matching the filter".into());
            let Some(q) = filter_sessions(scope, filter) else {
                return Err(no_match());
            };
            let matched = q.clone().count(db).await?;
            if matched == 0 {
                return Err(no_match());
            }
            if req.limit.is_none() && matched > MAX_BATCH as u64 {
                return Err(Error::invalid(
                    "filter",
                    format!(
                        "the filter matches {matched} sessions; at most {MAX_BATCH} per batch: narrow it or set limit"
                    ),
                ));
            }
            let take = req.limit.map_or(MAX_BATCH as u64, u64::from);
            Ok(q.select_only()
                .column(cs::Column::Id)
                .order_by_desc(cs::Column::StartedAt)
                .order_by_desc(cs::Column::Id)
                .limit(take)
                .into_tuple()
                .all(db)
                .await?)
        }
    }
}

/// Enqueue a batch of the sessions `req` names; `providers` and `language` already checked.
pub async fn create(
    app: &jobs::Runner,
    scope: &Scope,
    req: &BatchRequest,
    providers: Option<Vec<ProviderId>>,
    language: Option<String>,
) -> Result<BatchView, Error> {
    let sessions = resolve_batch(&app.db, scope, req).await?;
    let new = NewJob {
        kind: JobKind::Batch,
        tenant: scope.tenant().map(str::to_string),
        sessions,
        providers,
        language,
        filter: req
            .filter
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
    };
    let (job_row, _) = jobs::create_job(&app.db, &new, None).await?;
    app.registry.wake.notify_one();
    tracing::info!(job = %job_row.id, sessions = job_row.total, "batch analysis enqueued");
    Ok(batch_view(&app.db, job_row).await?)
}

/// A job the caller may see, or 404.
pub async fn load_job(
    db: &DatabaseConnection,
    scope: &Scope,
    id: Uuid,
) -> Result<job::Model, Error> {
    match job::Entity::find_by_id(id).one(db).await? {
        Some(j) if scope.tenant().is_none() || j.tenant_id.as_deref() == scope.tenant() => Ok(j),
        _ => Err(Error::NotFound(format!("analysis job {id}"))),
    }
}

/// Cancel a job (also when it already was); 409 when it completed.
pub async fn cancel(app: &jobs::Runner, scope: &Scope, id: Uuid) -> Result<BatchView, Error> {
    let j = load_job(&app.db, scope, id).await?;
    if j.status == job::Status::Completed {
        return Err(Error::Conflict(format!(
            "analysis job {} already completed",
            j.id
        )));
    }
    if jobs::cancel_job(app, j.id).await? {
        tracing::info!(job = %j.id, "analysis job cancelled");
    }
    let j = load_job(&app.db, scope, id).await?;
    Ok(batch_view(&app.db, j).await?)
}

/// Run (or join the running) full-call analysis of one session now, on this process.
pub async fn start_single(
    app: &jobs::Runner,
    scope: &Scope,
    session_id: Uuid,
    providers: Option<Vec<ProviderId>>,
    language: Option<String>,
) -> Result<(), Error> {
    let existing = sa::Entity::find_by_id(session_id).one(&app.db).await?;
    let mut joined = false;
    if let Some(row) = &existing
        && row.status == sa::Status::Running
        && let Some(job_id) = row.job_id
    {
        let live = item::Entity::find_by_id((job_id, session_id))
            .one(&app.db)
            .await?
            .is_some_and(|i| matches!(i.status, item::Status::Running | item::Status::Queued));
        joined = live;
    }
    if !joined {
        let settings = app.worker.clone();
        let new = NewJob {
            kind: JobKind::Single,
            tenant: scope.tenant().map(str::to_string),
            sessions: vec![session_id],
            providers,
            language,
            filter: None,
        };
        let (job_row, items) =
            jobs::create_job(&app.db, &new, Some((&settings.worker_id, settings.lease))).await?;
        // Marked here so the answer already shows the run; the run itself does not mark again.
        let marked_at = Utc::now();
        jobs::mark_running(&app.db, &job_row, session_id, marked_at).await?;
        for it in items {
            tokio::spawn(jobs::run_item(
                app.clone(),
                job_row.clone(),
                it,
                settings.clone(),
                app.registry.shutdown.clone(),
                Some(marked_at),
            ));
        }
        tracing::info!(session = %session_id, job = %job_row.id, "full-call analysis started");
    }
    Ok(())
}

/// The stored full-call analysis of a session (latest run's state and last result), if any.
pub async fn stored(
    db: &DatabaseConnection,
    session_id: Uuid,
) -> Result<Option<sa::Model>, sea_orm::DbErr> {
    sa::Entity::find_by_id(session_id).one(db).await
}
