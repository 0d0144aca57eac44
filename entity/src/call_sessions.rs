//! `call_sessions`: one row per call, the newest report's view of it plus service-computed aggregates.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "call_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub call_id: String,
    pub room_id: Option<String>,
    pub job_id: Option<String>,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    pub channel_type: Option<String>,
    pub stt_provider: Option<String>,
    pub stt_model: Option<String>,
    pub llm_provider: Option<String>,
    pub llm_model: Option<String>,
    pub tts_provider: Option<String>,
    pub tts_model: Option<String>,
    pub vad_threshold: Option<f64>,
    pub noise_suppression_enabled: Option<bool>,
    pub rnnoise_enabled: Option<bool>,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    pub duration_seconds: Option<f64>,
    pub close_reason: Option<String>,
    pub was_transferred: Option<bool>,
    pub error: Option<String>,
    pub total_user_turns: i32,
    pub total_agent_turns: i32,
    pub avg_e2e_latency_ms: Option<f64>,
    pub has_near_miss: bool,
    pub has_issues: bool,
    pub issue_summary: Option<String>,
    /// `seq` of the newest report applied; reports with a lower seq are stale and change nothing.
    pub report_seq: i64,
    pub is_final: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::conversation_turns::Entity")]
    ConversationTurns,
    #[sea_orm(has_many = "super::session_events::Entity")]
    SessionEvents,
    #[sea_orm(has_many = "super::audio_segments::Entity")]
    AudioSegments,
    #[sea_orm(has_many = "super::diagnosis_issues::Entity")]
    DiagnosisIssues,
}

impl Related<super::conversation_turns::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ConversationTurns.def()
    }
}

impl Related<super::session_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SessionEvents.def()
    }
}

impl Related<super::audio_segments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AudioSegments.def()
    }
}

impl Related<super::diagnosis_issues::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DiagnosisIssues.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
