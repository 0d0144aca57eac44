//! `stt_reports`: a transcription issue a user filed against one turn, with the turn's clip kept in
//! the short-term store (`source_s3_key`) and the long-term archive (`archive_s3_key`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "stt_reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub session_id: Uuid,
    pub call_id: String,
    pub turn_index: i64,
    /// What the STT produced (the turn's transcript unless the reporter said otherwise).
    pub stt_output: String,
    /// What the user actually said: the reference of the report's analysis.
    pub expected_output: String,
    /// `misrecognition`, `missing_words`, `hallucination`, `wrong_language`, `truncated`, `other`.
    pub issue_type: String,
    pub notes: Option<String>,
    pub reported_by: Option<String>,
    /// Which rendition the clip was cut from (`stt_input`, else `post_rnnoise`, else `pre_rnnoise`).
    pub clip_rendition: Option<String>,
    pub clip_start_ms: Option<i64>,
    pub clip_end_ms: Option<i64>,
    pub clip_duration_ms: Option<f64>,
    /// Key of the clip in the short-term (main) store.
    pub source_s3_key: Option<String>,
    /// Key of the clip in the archive.
    pub archive_s3_key: Option<String>,
    /// Archive bucket (S3) or folder (filesystem) the clip was archived to.
    pub archive_bucket: Option<String>,
    /// Why no clip could be kept (no audio for the turn, store unavailable, …).
    pub audio_error: Option<String>,
    /// `running`, `completed` or `failed`; `None` before the first analysis.
    pub analysis_status: Option<String>,
    pub analysis: Option<Json>,
    pub analysis_error: Option<String>,
    pub analyzed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
