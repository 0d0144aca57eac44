//! Stored full-call analyses (`session_analyses`) as lists: newest first, filtered by tenant and
//! status, without their (large) results — `GET /api/v1/analysis`, the UI and the CLI read them here.

use crate::error::{Error, storable};
use crate::paging::{cursor_of, decode_cursor};
use chrono::{DateTime, Utc};
use entity::session_analyses as sa;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

/// Which analyses, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// The caller's tenant (`None`: every tenant).
    pub scope_tenant: Option<&'a str>,
    /// Only this tenant's.
    pub tenant: Option<&'a str>,
    pub status: Option<sa::Status>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<&'a str>,
    /// Page size.
    pub limit: u32,
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct ListRow {
    session_id: Uuid,
    tenant_id: String,
    call_id: String,
    status: sa::Status,
    job_id: Option<Uuid>,
    requested_providers: Option<serde_json::Value>,
    providers: Option<serde_json::Value>,
    language: Option<String>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    ran_at: Option<DateTime<Utc>>,
    duration_ms: Option<f64>,
    updated_at: DateTime<Utc>,
}

/// One page of analyses, most recently updated first (`result` left out: `None`), and the cursor
/// of the next page.
pub async fn list(
    db: &DatabaseConnection,
    f: &Filter<'_>,
) -> Result<(Vec<sa::Model>, Option<String>), Error> {
    if f.tenant.is_some_and(|t| !storable(t)) {
        return Ok((Vec::new(), None));
    }
    let mut q = sa::Entity::find().select_only().columns([
        sa::Column::SessionId,
        sa::Column::TenantId,
        sa::Column::CallId,
        sa::Column::Status,
        sa::Column::JobId,
        sa::Column::RequestedProviders,
        sa::Column::Providers,
        sa::Column::Language,
        sa::Column::Error,
        sa::Column::StartedAt,
        sa::Column::RanAt,
        sa::Column::DurationMs,
        sa::Column::UpdatedAt,
    ]);
    if let Some(t) = f.scope_tenant {
        q = q.filter(sa::Column::TenantId.eq(t));
    }
    if let Some(t) = f.tenant {
        q = q.filter(sa::Column::TenantId.eq(t));
    }
    if let Some(s) = f.status {
        q = q.filter(sa::Column::Status.eq(s));
    }
    if let Some(c) = f.cursor {
        let (at, id) = decode_cursor(c)?;
        q = q.filter(
            Condition::any().add(sa::Column::UpdatedAt.lt(at)).add(
                Condition::all()
                    .add(sa::Column::UpdatedAt.eq(at))
                    .add(sa::Column::SessionId.lt(id)),
            ),
        );
    }
    let mut rows: Vec<ListRow> = q
        .order_by_desc(sa::Column::UpdatedAt)
        .order_by_desc(sa::Column::SessionId)
        .limit(u64::from(f.limit) + 1)
        .into_model::<ListRow>()
        .all(db)
        .await?;
    let next = if rows.len() > f.limit as usize {
        rows.truncate(f.limit as usize);
        rows.last().map(|r| cursor_of(r.updated_at, r.session_id))
    } else {
        None
    };
    Ok((
        rows.into_iter()
            .map(|r| sa::Model {
                session_id: r.session_id,
                tenant_id: r.tenant_id,
                call_id: r.call_id,
                status: r.status,
                job_id: r.job_id,
                requested_providers: r.requested_providers,
                providers: r.providers,
                language: r.language,
                result: None,
                error: r.error,
                started_at: r.started_at,
                ran_at: r.ran_at,
                duration_ms: r.duration_ms,
                updated_at: r.updated_at,
            })
            .collect(),
        next,
    ))
}
