//! `recording_transcripts`: every transcript made of a recording, one row per version: the provider's
//! raw JSON answer beside the normalised words (text, start, end, confidence, channel, speaker).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "recording_transcripts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub recording_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    pub provider: String,
    pub model: Option<String>,
    pub language: Option<String>,
    /// `queued`, `completed` or `failed`.
    pub status: Status,
    pub error: Option<String>,
    pub transcript: Option<String>,
    pub words: Option<Json>,
    pub raw: Option<Json>,
    pub request_id: Option<String>,
    /// Word error rate against the transcript of record when this version was scored.
    pub wer_vs_record: Option<f64>,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

crate::status_enum!(
    /// A transcript version is `queued` until its provider answered (`completed`) or gave up (`failed`).
    Status {
        Queued = "queued",
        Completed = "completed",
        Failed = "failed",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
