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
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Times a worker started it (more than one after a worker died mid-run).
    pub attempts: i32,
    pub error: Option<String>,
    /// The worker holding it while `running`.
    pub claimed_by: Option<String>,
    /// A `running` item whose lease is past was abandoned by its worker and is claimed again.
    pub lease_until: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
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
