//! `call_analytics`: one post-call analytics result per session (summary, sentiment, intent, lead score,
//! escalation, …) with the analyzer, model, prompt and schema version that made it.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "call_analytics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    pub tenant_id: String,
    pub call_id: String,
    pub agent_id: Option<String>,
    /// The call's `started_at`: dashboards window by it.
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    /// `completed`, `skipped` or `failed`.
    pub status: Status,
    pub schema_version: i32,
    /// `llm` or `offline`.
    pub analyzer: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    /// Plain text, or `enc:<key id>:<base64>` when encryption at rest is on.
    pub summary: Option<String>,
    pub sentiment: Option<String>,
    pub sentiment_score: Option<f64>,
    pub intent: Option<String>,
    pub lead_score: Option<i32>,
    pub satisfaction: Option<i32>,
    pub escalated: Option<bool>,
    pub escalation_reason: Option<String>,
    pub resolution: Option<String>,
    pub topics: Option<Json>,
    pub action_items: Option<Json>,
    pub competitor_mentions: Option<Json>,
    pub tags: Option<Json>,
    /// JSON text, or `enc:<key id>:<base64>` when encryption at rest is on.
    pub entities: Option<String>,
    pub next_action: Option<String>,
    /// The profile's extra fields.
    pub custom: Option<Json>,
    /// Where the analyzer's answer contradicted the call's own facts (the fact was kept).
    pub disagreements: Option<Json>,
    pub hot_lead: bool,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    pub attempts: i32,
    pub error: Option<String>,
    /// The analyzer's last raw answer when it could not be used.
    pub raw_answer: Option<String>,
    /// Hash of the conversation analysed: a newer final with the same conversation is not re-analysed.
    pub conversation_hash: Option<String>,
    /// What this row added to the dashboard rollups (taken back when it is replaced).
    pub rollup: Option<Json>,
    pub analyzed_report_seq: i64,
    pub analyzed_at: DateTimeUtc,
}

crate::status_enum!(
    /// How the call's analysis ended: `completed`, `skipped` (nothing to analyse) or `failed`.
    Status {
        Completed = "completed",
        Skipped = "skipped",
        Failed = "failed",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
