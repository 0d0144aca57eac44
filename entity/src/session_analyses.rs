//! `session_analyses`: the cached full-call STT analysis of a session (one per session). A re-run
//! replaces it; while it runs, the previous result stays readable.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "session_analyses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    pub tenant_id: String,
    pub call_id: String,
    /// Of the latest run.
    pub status: Status,
    /// The job running (or that ran) the latest analysis.
    pub job_id: Option<Uuid>,
    /// Providers asked for (`null` = every configured one).
    pub requested_providers: Option<Json>,
    /// Providers and models of the stored result.
    pub providers: Option<Json>,
    pub language: Option<String>,
    /// The stored result (grid and summaries) of the last completed run.
    pub result: Option<Json>,
    /// Why the latest run failed.
    pub error: Option<String>,
    pub started_at: DateTimeUtc,
    /// When the stored result was produced.
    pub ran_at: Option<DateTimeUtc>,
    pub duration_ms: Option<f64>,
    pub updated_at: DateTimeUtc,
}

/// A session's analysis: `running`, or how its latest run ended (`completed`; `failed`; `cancelled`
/// when there was no earlier result to fall back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Status {
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
        belongs_to = "super::call_sessions::Entity",
        from = "Column::SessionId",
        to = "super::call_sessions::Column::Id",
        on_delete = "Cascade"
    )]
    CallSession,
}

impl Related<super::call_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CallSession.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
