//! `analytics_backfill_jobs`: a re-run of analytics over stored calls, with its progress counters.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "analytics_backfill_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<String>,
    /// `running`, `completed` or `cancelled`.
    pub status: Status,
    pub filter: Json,
    pub total: i32,
    pub completed: i32,
    pub skipped: i32,
    pub failed: i32,
    pub cancelled: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

crate::status_enum!(
    /// A backfill job is `running` until every call it queued ended (`completed`) or it is `cancelled`.
    Status {
        Running = "running",
        Completed = "completed",
        Cancelled = "cancelled",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
