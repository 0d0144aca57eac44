//! `recordings`: a call recording handed over whole (upload, URL or Twilio's callback), the facts read
//! from it, and its place in the work that turns it into a session. The row is also the work item:
//! `work` names what is left, claimed with a lease and a fencing token like the other queues.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "recordings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub call_id: String,
    pub agent_id: Option<String>,
    /// The session the recording became (or attached to, when an agent had reported the call).
    pub session_id: Option<Uuid>,
    /// `upload`, `url` or `twilio`.
    pub source: String,
    /// Twilio's `RecordingSid`.
    pub external_id: Option<String>,
    /// Where the media is fetched from (`url` and `twilio`); never logged.
    pub source_url: Option<String>,
    pub file_name: Option<String>,
    /// Hex sha256 of the original bytes, once they are stored.
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub content_type: Option<String>,
    /// Key of the original bytes in the audio store (`recordings/…`).
    pub object_key: Option<String>,
    /// What the decoder found: `pcm_s16le`, `pcm_mulaw`, `mp3`, `flac`, `vorbis` …
    pub codec: Option<String>,
    pub channels: Option<i32>,
    pub sample_rate: Option<i32>,
    pub duration_ms: Option<i64>,
    /// Per channel, a peak level per 100 ms (0–1), for the page's waveforms.
    pub waveform: Option<Json>,
    /// Channel index → role (`customer`, `agent`), e.g. `["customer","agent"]`.
    pub channel_roles: Json,
    pub language: Option<String>,
    /// The default provider of this recording's transcripts.
    pub provider: String,
    pub model: Option<String>,
    /// The transcript version the session's turns, metrics, diagnosis and analytics come from.
    pub transcript_version: Option<i32>,
    pub conversation_metrics: Option<Json>,
    /// 1 when the call already had a session from an agent's report (the recording is its full-call
    /// audio; the agent's turns stay).
    pub attached: i32,
    /// The recording with the same bytes this one turned out to be.
    pub duplicate_of: Option<Uuid>,
    /// The `seq` of the last report derived from this recording.
    pub derivation_seq: i64,
    /// Each report derived from the recording: `[{seq, transcript_version, channel_roles, at}]`, so
    /// a session's analytics (made from report `seq`) say which transcript they came from.
    pub derivations: Option<Json>,
    /// `queued`, `fetching`, `transcribing`, `analysing`, `completed` or `failed`.
    pub status: Status,
    pub error: Option<String>,
    /// What is left to do (`process`), or none.
    pub work: Option<String>,
    pub attempts: i32,
    pub claimed_by: Option<String>,
    pub claim_token: Option<Uuid>,
    pub lease_until: Option<DateTimeUtc>,
    pub available_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

crate::status_enum!(
    /// Where a recording is: `queued` → `fetching` → `transcribing` → `analysing` → `completed`, or `failed`.
    Status {
        Queued = "queued",
        Fetching = "fetching",
        Transcribing = "transcribing",
        Analysing = "analysing",
        Completed = "completed",
        Failed = "failed",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
