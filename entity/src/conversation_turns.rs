//! `conversation_turns`: one row per (session, turn index), with the per-turn latency breakdown.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "conversation_turns")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub turn_index: i64,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub interrupted: Option<bool>,
    pub stt_confidence: Option<f64>,
    pub transcription_delay_ms: Option<f64>,
    pub end_of_turn_delay_ms: Option<f64>,
    pub llm_ttft_ms: Option<f64>,
    pub tts_ttfb_ms: Option<f64>,
    pub e2e_latency_ms: Option<f64>,
    pub tool_calls: Option<Json>,
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
