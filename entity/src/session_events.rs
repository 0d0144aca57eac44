//! `session_events`: one row per (session, event seq) as the agent reported it.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "session_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub event_type: String,
    /// Offset from the session's `started_at`.
    pub at_ms: i64,
    pub turn_index: Option<i64>,
    pub data: Option<Json>,
    /// `seq` of the report that last wrote this row.
    pub report_seq: i64,
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
