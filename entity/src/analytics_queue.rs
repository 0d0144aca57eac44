//! `analytics_queue`: calls waiting for post-call analytics. A row is written in the ingest transaction
//! that commits a final report, claimed by a worker with a lease and a fencing token, and marked done
//! in the transaction that stores the result.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "analytics_queue")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    pub tenant_id: String,
    /// The final report's `seq` that asked for this run.
    pub report_seq: i64,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: Status,
    pub attempts: i32,
    /// The backfill job that queued it, if any.
    pub job_id: Option<Uuid>,
    pub claimed_by: Option<String>,
    /// Fencing token of the current claim: only its holder may store a result.
    pub claim_token: Option<Uuid>,
    pub lease_until: Option<DateTimeUtc>,
    pub available_at: DateTimeUtc,
    pub error: Option<String>,
    pub enqueued_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

crate::status_enum!(
    /// Where a call's analytics run is: `queued` → `running` (claimed, leased) → `done`, `failed` or `cancelled`.
    Status {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
