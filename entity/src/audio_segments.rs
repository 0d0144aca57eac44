//! `audio_segments`: one row per (session, segment id): where the audio is stored and what it measured.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "audio_segments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub segment_id: String,
    /// `stt_input`, `full_pre_rnnoise`, `full_post_rnnoise` or `near_miss`.
    pub segment_type: String,
    pub turn_index: Option<i64>,
    pub offset_ms: Option<i64>,
    /// Duration the agent reported, or the decoded duration when it reported none.
    pub duration_ms: Option<i64>,
    /// Object key in the audio store (null when the audio never arrived).
    pub s3_key: Option<String>,
    /// Bucket holding the object when it is not the service's own (agent-uploaded `s3_key` form).
    pub bucket: Option<String>,
    /// How the audio reached us: `field`, `b64`, `s3_key` or `none`.
    pub source: String,
    pub size_bytes: Option<i64>,
    pub sample_rate: Option<i32>,
    pub channels: Option<i32>,
    pub bits_per_sample: Option<i32>,
    pub decoded_duration_ms: Option<f64>,
    /// RMS over the whole segment, linear full scale (0..1).
    pub rms_mean: Option<f64>,
    /// Highest RMS of any 20 ms frame, linear full scale (0..1).
    pub rms_peak: Option<f64>,
    /// Estimated SNR in dB (loud frames against the noise floor).
    pub snr_estimate: Option<f64>,
    pub peak_dbfs: Option<f64>,
    /// Fraction of samples at or near full scale.
    pub clipped_ratio: Option<f64>,
    /// Runs of 3 or more consecutive clipped samples (hard clipping rather than a stray peak).
    pub clip_runs: Option<i32>,
    /// Full-call recordings: level over the user's speech spans, overall and per user turn
    /// (`{"overall_dbfs": -23.1, "turns": [{"turn_index": 0, "dbfs": -22.8}, ...]}`).
    pub speech_levels: Option<Json>,
    /// `stored`, `missing` or `error`.
    pub status: Status,
    pub error: Option<String>,
    /// `seq` of the report that last wrote this row.
    pub report_seq: i64,
}

crate::status_enum!(
    /// Whether the segment's audio is `stored`, was announced but `missing`, or could not be stored (`error`).
    Status {
        Stored = "stored",
        Missing = "missing",
        Error = "error",
    }
);

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
