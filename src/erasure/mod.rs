//! Erasure and retention: removing a call from everywhere this service keeps it — its rows (the
//! session and, by cascade, turns, events, segments, diagnosis, analyses, analytics, reviews), its
//! audio objects, its STT reports and their clips (short-term store and archive), its webhook
//! deliveries, its entries in the live-events and dead-letter streams, and every in-memory cache of
//! it on every replica — recorded in `erasure_audit` (who, when, ids and counts; never content).
//! The retention sweep erases sessions older than `INSIGHTS_RETENTION_DAYS` the same way (keeping
//! reports and their archived clips) and archived clips older than `INSIGHTS_ARCHIVE_RETENTION_DAYS`.

use crate::error::Error;
use crate::tenancy::Scope;
use chrono::{DateTime, Duration, Utc};
use entity::{
    audio_segments as seg, call_sessions as cs, erasure_audit as audit, stt_reports as rep,
    webhook_deliveries as wd,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

/// Drops a session from the caches of whoever serves it (the web layer's timeline and session
/// version caches); set by the composition root.
pub type ForgetCached = Arc<dyn Fn(Uuid) + Send + Sync>;

/// What erasure and retention need, built by the composition root (`App::eraser`).
#[derive(Clone)]
pub struct Eraser {
    pub db: DatabaseConnection,
    pub store: Arc<dyn crate::storage::AudioStore>,
    pub archive: crate::storage::Archive,
    pub broker: crate::broker::Broker,
    /// `INSIGHTS_STREAM`: its live-events stream and the replicas' updates channel are scrubbed and
    /// told.
    pub stream: String,
    /// The partitions' dead-letter streams.
    pub dlqs: Vec<String>,
    /// Ingest's fingerprints of committed rows (a re-reported call must be written in full).
    pub row_cache: Arc<crate::ingest::row_cache::RowCache>,
    pub forget_cached: ForgetCached,
    pub retention: Retention,
}

impl std::fmt::Debug for Eraser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eraser")
            .field("stream", &self.stream)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// `INSIGHTS_RETENTION_*` and `INSIGHTS_ARCHIVE_RETENTION_DAYS`.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Sessions older than this many days are erased (`None`/0: kept).
    pub days: Option<u32>,
    /// Archived clips older than this many days are removed (`None`/0: kept).
    pub archive_days: Option<u32>,
    /// Sessions erased per query of a pass.
    pub batch: u64,
    pub sweep_every: std::time::Duration,
}

/// Why a call was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `DELETE /api/v1/sessions/…`: everything, reports and archived clips included.
    Request,
    /// `INSIGHTS_RETENTION_DAYS`: the session, its rows and audio, its reports' short-term clips;
    /// reports and their archived clips stay for `INSIGHTS_ARCHIVE_RETENTION_DAYS`.
    Retention,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Request => "request",
            Reason::Retention => "retention",
        }
    }
}

/// What an erasure did (the audit row, as the API answers it).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"erasure_id": "01a2318e-8e5c-712e-a034-2d40a691a435", "session_id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11",
    "call_id": "call-0900001-0e4018bf", "tenant_id": "acme", "reason": "request", "erased_at": "2026-12-01T12:00:00Z", "already_erased": false,
    "removed": {"call_sessions": 1, "stt_reports": 1, "webhook_deliveries": 2, "audio_objects": 4, "report_clips": 2, "live_events": 9, "dead_letters": 0}}))]
pub struct ErasureReceipt {
    pub erasure_id: Uuid,
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    /// `request`, `retention` or `archive_retention`.
    pub reason: String,
    pub erased_at: DateTime<Utc>,
    /// True when the call had been erased before this request (nothing more to do).
    pub already_erased: bool,
    /// Counts by kind (rows of the tables named, objects, stream entries); cascaded rows (turns,
    /// events, segments, issues, analyses, analytics) go with `call_sessions`.
    #[schema(value_type = Object)]
    pub removed: Value,
}

fn receipt(a: audit::Model, already: bool) -> ErasureReceipt {
    ErasureReceipt {
        erasure_id: a.id,
        session_id: a.session_id,
        call_id: a.call_id,
        tenant_id: a.tenant_id,
        reason: a.reason,
        erased_at: a.erased_at,
        already_erased: already,
        removed: a.removed,
    }
}

/// The earlier erasure of this session or call the caller may see.
async fn earlier(
    db: &DatabaseConnection,
    scope: &Scope,
    by: Either<'_>,
) -> Result<Option<audit::Model>, Error> {
    let mut q = audit::Entity::find().filter(audit::Column::ReportId.is_null());
    q = match by {
        Either::Session(id) => q.filter(audit::Column::SessionId.eq(id)),
        Either::Call(c) => q.filter(audit::Column::CallId.eq(c)),
    };
    if let Some(t) = scope.tenant() {
        q = q.filter(audit::Column::TenantId.eq(t));
    }
    Ok(q.order_by_desc(audit::Column::ErasedAt).one(db).await?)
}

#[derive(Clone, Copy)]
enum Either<'a> {
    Session(Uuid),
    Call(&'a str),
}

/// Erase a session by id (idempotent: an already erased one answers its earlier receipt).
pub async fn erase_session(
    app: &Eraser,
    scope: &Scope,
    id: Uuid,
    who: &str,
) -> Result<ErasureReceipt, Error> {
    match cs::Entity::find_by_id(id).one(&app.db).await? {
        Some(s) if scope.allows(&s.tenant_id) => erase(app, &s, Reason::Request, who).await,
        _ => match earlier(&app.db, scope, Either::Session(id)).await? {
            Some(a) => Ok(receipt(a, true)),
            None => Err(Error::NotFound(format!("session {id}"))),
        },
    }
}

/// Erase the session of a call (idempotent like [`erase_session`]).
pub async fn erase_call(
    app: &Eraser,
    scope: &Scope,
    call_id: &str,
    who: &str,
) -> Result<ErasureReceipt, Error> {
    match crate::sessions::load_by_call(&app.db, scope, call_id).await {
        Ok(s) => erase(app, &s, Reason::Request, who).await,
        Err(Error::NotFound(m)) => match earlier(&app.db, scope, Either::Call(call_id)).await? {
            Some(a) => Ok(receipt(a, true)),
            None => Err(Error::NotFound(m)),
        },
        Err(e) => Err(e),
    }
}

/// Erases one session. Objects go first: if the store is unreachable nothing in the database has
/// changed and the request can simply be repeated; once they are gone the rows go in one
/// transaction with the audit row; then the streams and caches.
pub async fn erase(
    app: &Eraser,
    s: &cs::Model,
    reason: Reason,
    who: &str,
) -> Result<ErasureReceipt, Error> {
    let db = &app.db;
    let segments = seg::Entity::find()
        .filter(seg::Column::SessionId.eq(s.id))
        .all(db)
        .await?;
    let reports = rep::Entity::find()
        .filter(rep::Column::SessionId.eq(s.id))
        .all(db)
        .await?;
    let unavailable =
        |e: crate::storage::StorageError| Error::Unavailable(format!("audio store: {e}"));
    let mut audio_objects = 0u64;
    for g in &segments {
        if let Some(k) = &g.s3_key {
            app.store.delete(k).await.map_err(unavailable)?;
            audio_objects += 1;
        }
    }
    // The call's recordings: the original bytes, then (below) every transcript version and raw
    // provider answer with their rows.
    let recordings = entity::recordings::Entity::find()
        .filter(entity::recordings::Column::SessionId.eq(s.id))
        .all(db)
        .await?;
    for r in &recordings {
        if let Some(k) = &r.object_key {
            app.store.delete(k).await.map_err(unavailable)?;
            audio_objects += 1;
        }
    }
    let mut report_clips = 0u64;
    for r in &reports {
        if let Some(k) = &r.source_s3_key {
            app.store.delete(k).await.map_err(unavailable)?;
            report_clips += 1;
        }
        if reason == Reason::Request
            && let Some(k) = &r.archive_s3_key
        {
            app.archive.store.delete(k).await.map_err(unavailable)?;
            report_clips += 1;
        }
    }

    let now = Utc::now();
    let tx = db.begin().await?;
    let deliveries = wd::Entity::delete_many()
        .filter(wd::Column::SessionId.eq(s.id))
        .exec(&tx)
        .await?
        .rows_affected;
    let reports_removed = match reason {
        Reason::Request => {
            rep::Entity::delete_many()
                .filter(rep::Column::SessionId.eq(s.id))
                .exec(&tx)
                .await?
                .rows_affected
        }
        Reason::Retention => {
            rep::Entity::update_many()
                .col_expr(
                    rep::Column::SourceS3Key,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(rep::Column::UpdatedAt, Expr::value(now))
                .filter(rep::Column::SessionId.eq(s.id))
                .exec(&tx)
                .await?;
            0
        }
    };
    let recordings_removed = entity::recordings::Entity::delete_many()
        .filter(entity::recordings::Column::SessionId.eq(s.id))
        .exec(&tx)
        .await?
        .rows_affected;
    let sessions = cs::Entity::delete_by_id(s.id)
        .exec(&tx)
        .await?
        .rows_affected;
    let mut removed = Map::new();
    removed.insert("call_sessions".into(), json!(sessions));
    removed.insert("audio_segments".into(), json!(segments.len()));
    removed.insert("audio_objects".into(), json!(audio_objects));
    removed.insert("stt_reports".into(), json!(reports_removed));
    removed.insert("report_clips".into(), json!(report_clips));
    removed.insert("webhook_deliveries".into(), json!(deliveries));
    removed.insert("recordings".into(), json!(recordings_removed));
    let row = audit::ActiveModel {
        id: Set(Uuid::now_v7()),
        reason: Set(reason.as_str().into()),
        requested_by: Set(who.into()),
        tenant_id: Set(s.tenant_id.clone()),
        session_id: Set(s.id),
        call_id: Set(s.call_id.clone()),
        report_id: Set(None),
        removed: Set(Value::Object(removed.clone())),
        erased_at: Set(now),
    }
    .insert(&tx)
    .await?;
    tx.commit().await?;

    // After the commit: the streams (on request; retention's calls are long gone from them) and
    // every replica's caches.
    let mut row = row;
    if reason == Reason::Request {
        let (events, dead) = scrub_streams(app, s).await;
        removed.insert("live_events".into(), json!(events));
        removed.insert("dead_letters".into(), json!(dead));
        let mut update: audit::ActiveModel = row.clone().into();
        update.removed = Set(Value::Object(removed));
        row = update.update(db).await?;
    }
    forget(app, s).await;
    tracing::info!(session = %s.id, reason = reason.as_str(), "call erased");
    Ok(receipt(row, false))
}

/// Drops the session from this process's caches and tells every replica to drop it from theirs.
async fn forget(app: &Eraser, s: &cs::Model) {
    (app.forget_cached)(s.id);
    app.row_cache.remove(&s.call_id);
    let channel = crate::ingest::updates::channel(&app.stream);
    match app.broker.conn().await {
        Ok(mut conn) => crate::ingest::updates::announce(&mut conn, &channel, &[s.id]).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot announce an erasure to the other replicas");
        }
    }
}

/// Deletes the call's live events (`<stream>:events`) and dead-lettered reports of the call; returns
/// how many of each. Best effort: Redis unreachable is logged, the rows are already gone.
async fn scrub_streams(app: &Eraser, s: &cs::Model) -> (u64, u64) {
    let Ok(mut conn) = app.broker.conn().await else {
        tracing::warn!(session = %s.id, "Redis unreachable: the call's live events and dead letters were not scrubbed");
        return (0, 0);
    };
    let events = crate::live::events_stream(&app.stream);
    let sid = s.id.to_string();
    let live = scrub(&mut conn, &events, |fields| {
        fields
            .get("body")
            .is_some_and(|b| contains(b, sid.as_bytes()))
    })
    .await;
    let call = s.call_id.as_bytes();
    // The call's partition holds its dead letters; every partition is scrubbed in case the
    // partition count changed since.
    let mut dead = 0;
    for dlq in &app.dlqs {
        dead += scrub_dead_letters(&mut conn, dlq, call).await;
    }
    (live, dead)
}

/// XDELs the dead-lettered reports of `call` from `dlq`.
async fn scrub_dead_letters(conn: &mut crate::broker::Conn, dlq: &str, call: &[u8]) -> u64 {
    scrub(conn, dlq, |fields| {
        fields.get("payload").is_some_and(|p| {
            let gz = fields
                .get("payload_encoding")
                .is_some_and(|e| e.as_slice() == b"gzip");
            if gz {
                let mut out = Vec::new();
                use std::io::Read;
                flate2::read::GzDecoder::new(p.as_slice())
                    .take(64 << 20)
                    .read_to_end(&mut out)
                    .is_ok()
                    && contains(&out, call)
            } else {
                contains(p, call)
            }
        })
    })
    .await
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

type Fields = std::collections::HashMap<String, Vec<u8>>;

/// XDELs every entry of `stream` that `matches`, reading it in pages of 500.
async fn scrub(
    conn: &mut crate::broker::Conn,
    stream: &str,
    matches: impl Fn(&Fields) -> bool,
) -> u64 {
    let mut start = "-".to_string();
    let mut deleted = 0u64;
    loop {
        let page: redis::RedisResult<Vec<(String, Fields)>> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(500)
            .query_async::<redis::Value>(conn)
            .await
            .map(parse_range);
        let Ok(page) = page else {
            tracing::warn!(stream, "cannot read the stream to scrub an erased call");
            return deleted;
        };
        let Some((last, _)) = page.last() else {
            return deleted;
        };
        start = format!("({last}");
        let ids: Vec<&String> = page
            .iter()
            .filter(|(_, f)| matches(f))
            .map(|(id, _)| id)
            .collect();
        if !ids.is_empty() {
            let r: redis::RedisResult<u64> = redis::cmd("XDEL")
                .arg(stream)
                .arg(&ids)
                .query_async(conn)
                .await;
            deleted += r.unwrap_or(0);
        }
        if page.len() < 500 {
            return deleted;
        }
    }
}

/// An XRANGE reply as (id, fields); anything unexpected is skipped.
fn parse_range(v: redis::Value) -> Vec<(String, Fields)> {
    use redis::Value as V;
    let text = |v: &V| match v {
        V::BulkString(b) => Some(b.clone()),
        V::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    let V::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let V::Array(parts) = e else { return None };
            let id = String::from_utf8(text(parts.first()?)?).ok()?;
            let V::Array(kv) = parts.get(1)? else {
                return None;
            };
            let fields = kv
                .chunks(2)
                .filter_map(|p| {
                    Some((String::from_utf8(text(p.first()?)?).ok()?, text(p.get(1)?)?))
                })
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// One retention pass: sessions started before the cutoff, `batch` at a time, until none is left;
/// then archived clips past theirs. Returns (sessions erased, archived clips removed).
pub async fn sweep_once(app: &Eraser) -> Result<(u64, u64), Error> {
    let mut sessions = 0u64;
    if let Some(days) = app.retention.days.filter(|d| *d > 0) {
        let cutoff = Utc::now() - Duration::days(i64::from(days));
        loop {
            let due = cs::Entity::find()
                .filter(cs::Column::StartedAt.lt(cutoff))
                .order_by_asc(cs::Column::StartedAt)
                .limit(app.retention.batch.max(1))
                .all(&app.db)
                .await?;
            if due.is_empty() {
                break;
            }
            for s in &due {
                erase(app, s, Reason::Retention, "retention").await?;
                sessions += 1;
            }
        }
    }
    let mut clips = 0u64;
    if let Some(days) = app.retention.archive_days.filter(|d| *d > 0) {
        let cutoff = Utc::now() - Duration::days(i64::from(days));
        loop {
            let due = rep::Entity::find()
                .filter(rep::Column::CreatedAt.lt(cutoff))
                .filter(rep::Column::ArchiveS3Key.is_not_null())
                .limit(app.retention.batch.max(1))
                .all(&app.db)
                .await?;
            if due.is_empty() {
                break;
            }
            for r in &due {
                expire_archived_clip(app, r).await?;
                clips += 1;
            }
        }
    }
    if sessions + clips > 0 {
        tracing::info!(sessions, archived_clips = clips, "retention sweep");
    }
    Ok((sessions, clips))
}

/// Removes a report's archived clip; a report whose session is gone goes with it (nothing of the
/// call is kept past both retentions).
async fn expire_archived_clip(app: &Eraser, r: &rep::Model) -> Result<(), Error> {
    if let Some(k) = &r.archive_s3_key {
        app.archive
            .store
            .delete(k)
            .await
            .map_err(|e| Error::Unavailable(format!("archive: {e}")))?;
    }
    let session_gone = cs::Entity::find_by_id(r.session_id)
        .one(&app.db)
        .await?
        .is_none();
    // Objects first, outside the transaction (a slow store must not hold it open).
    if session_gone && let Some(k) = &r.source_s3_key {
        app.store
            .delete(k)
            .await
            .map_err(|e| Error::Unavailable(format!("audio store: {e}")))?;
    }
    let tx = app.db.begin().await?;
    if session_gone {
        rep::Entity::delete_by_id(r.id).exec(&tx).await?;
    } else {
        rep::Entity::update_many()
            .col_expr(
                rep::Column::ArchiveS3Key,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                rep::Column::ArchiveBucket,
                Expr::value(Option::<String>::None),
            )
            .col_expr(rep::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(rep::Column::Id.eq(r.id))
            .exec(&tx)
            .await?;
    }
    audit::ActiveModel {
        id: Set(Uuid::now_v7()),
        reason: Set("archive_retention".into()),
        requested_by: Set("retention".into()),
        tenant_id: Set(r.tenant_id.clone()),
        session_id: Set(r.session_id),
        call_id: Set(r.call_id.clone()),
        report_id: Set(Some(r.id)),
        removed: Set(json!({"report_clips": 1, "stt_reports": u8::from(session_gone)})),
        erased_at: Set(Utc::now()),
    }
    .insert(&tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The periodic sweep (when either retention is set), every `INSIGHTS_RETENTION_SWEEP_MS`.
pub async fn run_sweeper(app: Eraser, shutdown: CancellationToken) {
    use crate::background::{Pass, Schedule, run};
    if app.retention.days.is_none() && app.retention.archive_days.is_none() {
        return;
    }
    tracing::info!(
        retention_days = app.retention.days,
        archive_retention_days = app.retention.archive_days,
        "retention sweep on"
    );
    let app = &app;
    let schedule = Schedule {
        run_at_start: true,
        ..Schedule::every("retention sweep", app.retention.sweep_every)
    };
    run(schedule, None, shutdown, || async move {
        sweep_once(app).await.map(|_| Pass::Idle)
    })
    .await;
}
