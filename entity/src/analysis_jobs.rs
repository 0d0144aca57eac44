//! `analysis_jobs`: a request to analyse one session (`single`) or up to 50 (`batch`); its items are
//! the work queue.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "analysis_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Tenant of the key that created it; `None` for an every-tenant key.
    pub tenant_id: Option<String>,
    /// `single` or `batch`.
    pub kind: String,
    pub status: Status,
    /// Providers asked for (`null` = every configured one).
    pub providers: Option<Json>,
    pub language: Option<String>,
    /// The sessions filter the batch was made from, when it was.
    pub filter: Option<Json>,
    pub total: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

/// A job is `running` until its last item ends (`completed`) or it is `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::analysis_job_items::Entity")]
    Items,
}

impl Related<super::analysis_job_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Items.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
