//! `analysis_job_items`: one session of a job. Workers claim `queued` items (and `running` ones whose
//! lease ran out: their worker died) with `FOR UPDATE SKIP LOCKED` on PostgreSQL.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "analysis_job_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    pub position: i32,
    pub status: Status,
    /// Times a worker started it (more than one after a worker died mid-run).
    pub attempts: i32,
    pub error: Option<String>,
    /// The worker holding it while `running`.
    pub claimed_by: Option<String>,
    /// The claim's fencing token: every write of a run is conditional on it (see `lease`).
    pub claim_token: Option<Uuid>,
    /// A `running` item whose lease is past was abandoned by its worker and is claimed again.
    pub lease_until: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

/// Where an item is: `queued` → `running` (claimed, leased) → `completed`, `failed` or `cancelled`;
/// a passing failure or a shutdown puts a `running` item back to `queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::analysis_jobs::Entity",
        from = "Column::JobId",
        to = "super::analysis_jobs::Column::Id",
        on_delete = "Cascade"
    )]
    Job,
}

impl Related<super::analysis_jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
