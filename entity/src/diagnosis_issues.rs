//! `diagnosis_issues`: what the rules engine found in a session; replaced whole by each newer report.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "diagnosis_issues")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub session_id: Uuid,
    /// Position of the issue in the engine's output (most severe first).
    pub ordinal: i32,
    /// Stable snake_case rule code, e.g. `dropped_utterance`.
    pub code: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub title: String,
    pub detail: Option<String>,
    pub turn_index: Option<i64>,
    pub at_ms: Option<i64>,
    /// Measured values and the thresholds they crossed.
    pub evidence: Json,
    pub created_at: DateTimeUtc,
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
