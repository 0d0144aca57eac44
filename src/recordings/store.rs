//! The recordings' queries, shared by the API, the UI, the CLI and the worker: find, list (filters,
//! cursor), the views the API answers, and the requests for more work (re-transcription, a new channel
//! map, another transcript of record) that hand a recording back to the pipeline.

use super::{Error, Status, work};
use crate::conversation::ConversationMetrics;
use crate::db::stmt;
use chrono::{DateTime, Utc};
use entity::{recording_transcripts as rt, recordings as rec};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A recording as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"recording_id": "0190f1a2-3b4c-7d5e-8f60-718293a4b5c6", "session_id": "6c3e2f0a-8d0e-4d8b-9a55-0f0e8f4b2d11",
    "call_id": "CA1234567890abcdef1234567890abcdef", "tenant_id": "acme", "source": "twilio", "status": "completed",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size_bytes": 1920044, "content_type": "audio/wav",
    "codec": "pcm_s16le", "channels": 2, "sample_rate": 8000, "duration_ms": 60000, "channel_roles": ["customer", "agent"],
    "provider": "deepgram", "model": "nova-3", "transcript_version": 1, "created_at": "2026-12-03T10:00:00Z"}))]
pub struct RecordingView {
    pub recording_id: Uuid,
    /// The session the recording became (or attached to); `null` until it is analysed.
    pub session_id: Option<Uuid>,
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    /// `upload`, `url` or `twilio`.
    pub source: String,
    /// Twilio's `RecordingSid`.
    pub external_id: Option<String>,
    pub file_name: Option<String>,
    /// `queued`, `fetching`, `transcribing`, `analysing`, `completed` or `failed`.
    pub status: String,
    /// Why it failed, for a person.
    pub error: Option<String>,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub content_type: Option<String>,
    pub codec: Option<String>,
    pub channels: Option<i32>,
    pub sample_rate: Option<i32>,
    pub duration_ms: Option<i64>,
    /// Channel (or, on one diarized channel, speaker in order of first appearance) → role.
    pub channel_roles: Vec<String>,
    pub language: Option<String>,
    pub provider: String,
    pub model: Option<String>,
    /// The transcript version the session's turns, metrics, diagnosis and analytics come from.
    pub transcript_version: Option<i32>,
    /// True when an agent had reported the call: the recording is its full-call audio.
    pub attached: bool,
    /// The recording with the same bytes this one turned out to be.
    pub duplicate_of: Option<Uuid>,
    pub conversation_metrics: Option<ConversationMetrics>,
    pub started_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Every transcript version (without words; `GET …/transcripts` has them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcripts: Option<Vec<TranscriptVersion>>,
}

/// One transcript version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TranscriptVersion {
    pub version: i32,
    pub provider: String,
    pub model: Option<String>,
    pub language: Option<String>,
    /// `queued`, `completed` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Words in the version.
    pub word_count: Option<usize>,
    /// True for the transcript of record.
    pub of_record: bool,
    /// Word error rate of this version against the transcript of record (0 for itself).
    pub wer_vs_record: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

pub fn roles_of(m: &rec::Model) -> Vec<String> {
    serde_json::from_value(m.channel_roles.clone()).unwrap_or_else(|_| super::default_roles())
}

pub fn view(m: rec::Model) -> RecordingView {
    let channel_roles = roles_of(&m);
    RecordingView {
        recording_id: m.id,
        session_id: m.session_id,
        call_id: m.call_id,
        tenant_id: m.tenant_id,
        agent_id: m.agent_id,
        source: m.source,
        external_id: m.external_id,
        file_name: m.file_name,
        status: m.status.to_string(),
        error: m.error,
        sha256: m.sha256,
        size_bytes: m.size_bytes,
        content_type: m.content_type,
        codec: m.codec,
        channels: m.channels,
        sample_rate: m.sample_rate,
        duration_ms: m.duration_ms,
        channel_roles,
        language: m.language,
        provider: m.provider,
        model: m.model,
        transcript_version: m.transcript_version,
        attached: m.attached != 0,
        duplicate_of: m.duplicate_of,
        conversation_metrics: m
            .conversation_metrics
            .and_then(|v| serde_json::from_value(v).ok()),
        started_at: m.started_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
        completed_at: m.completed_at,
        transcripts: None,
    }
}

/// A recording the caller may see (`tenant` `None` = every tenant), or `NotFound`.
pub async fn load(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    id: Uuid,
) -> Result<rec::Model, Error> {
    let mut q = rec::Entity::find_by_id(id);
    if let Some(t) = tenant {
        q = q.filter(rec::Column::TenantId.eq(t));
    }
    q.one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("recording {id}")))
}

/// Every transcript version of a recording, oldest first.
pub async fn transcripts(db: &DatabaseConnection, id: Uuid) -> Result<Vec<rt::Model>, Error> {
    Ok(rt::Entity::find()
        .filter(rt::Column::RecordingId.eq(id))
        .order_by_asc(rt::Column::Version)
        .all(db)
        .await?)
}

fn words_text(words: &Option<serde_json::Value>) -> Option<String> {
    let ws: Vec<super::turns::Word> = serde_json::from_value(words.clone()?).ok()?;
    Some(
        ws.iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Word error rate of `hypothesis` against `reference` (Whisper's normaliser for the language);
/// `None` when the two are too long to align in reasonable memory.
pub fn wer_between(reference: &str, hypothesis: &str, language: Option<&str>) -> Option<f64> {
    let n = reference.split_whitespace().count().max(1);
    let m = hypothesis.split_whitespace().count().max(1);
    if n.saturating_mul(m) > 20_000_000 {
        return None;
    }
    let s = crate::stt::wer::score(
        reference,
        hypothesis,
        crate::stt::wer::Normalizer::for_language(language),
    );
    Some((s.wer * 10_000.0).round() / 10_000.0)
}

/// The versions as the API lists them (WER as scored against the transcript of record).
pub fn versions(
    rows: &[rt::Model],
    of_record: Option<i32>,
    with_text: bool,
) -> Vec<TranscriptVersion> {
    rows.iter()
        .map(|r| TranscriptVersion {
            version: r.version,
            provider: r.provider.clone(),
            model: r.model.clone(),
            language: r.language.clone(),
            status: r.status.to_string(),
            error: r.error.clone(),
            created_at: r.created_at,
            completed_at: r.completed_at,
            word_count: r.words.as_ref().and_then(|w| w.as_array().map(Vec::len)),
            of_record: Some(r.version) == of_record,
            wer_vs_record: if Some(r.version) == of_record && r.status == rt::Status::Completed {
                Some(0.0)
            } else {
                r.wer_vs_record
            },
            transcript: if with_text {
                r.transcript.clone().or_else(|| words_text(&r.words))
            } else {
                None
            },
        })
        .collect()
}

/// A recording with its versions.
pub async fn detail(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    id: Uuid,
) -> Result<RecordingView, Error> {
    let m = load(db, tenant, id).await?;
    let rows = transcripts(db, id).await?;
    let of_record = m.transcript_version;
    let mut v = view(m);
    v.transcripts = Some(versions(&rows, of_record, false));
    Ok(v)
}

/// The recording of a session, when it has one.
pub async fn of_session(
    db: &DatabaseConnection,
    session_id: Uuid,
) -> Result<Option<rec::Model>, sea_orm::DbErr> {
    rec::Entity::find()
        .filter(rec::Column::SessionId.eq(session_id))
        .filter(rec::Column::DuplicateOf.is_null())
        .order_by_desc(rec::Column::CreatedAt)
        .one(db)
        .await
}

/// List filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// Only this tenant (a tenant key is always limited to its own).
    pub tenant_id: Option<String>,
    /// `queued`, `fetching`, `transcribing`, `analysing`, `completed` or `failed`.
    #[param(pattern = r"^$|^(queued|fetching|transcribing|analysing|completed|failed)$")]
    pub status: Option<String>,
    /// `upload`, `url` or `twilio`.
    #[param(pattern = r"^$|^(upload|url|twilio)$")]
    pub source: Option<String>,
    pub call_id: Option<String>,
    pub session_id: Option<Uuid>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Cursor from a previous page's `next_cursor` (treat it as opaque).
    #[param(pattern = r"^-?[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordingList {
    pub items: Vec<RecordingView>,
    pub next_cursor: Option<String>,
}

/// One page of recordings, newest first.
pub async fn list(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    f: &Filter,
) -> Result<RecordingList, Error> {
    let limit = match f.limit {
        None => 50,
        Some(n @ 1..=200) => n,
        Some(_) => return Err(Error::invalid("limit", "limit must be 1–200")),
    };
    let f = &Filter {
        tenant_id: f.tenant_id.clone().filter(|v| !v.is_empty()),
        status: f.status.clone().filter(|v| !v.is_empty()),
        source: f.source.clone().filter(|v| !v.is_empty()),
        call_id: f.call_id.clone().filter(|v| !v.is_empty()),
        session_id: f.session_id,
        limit: f.limit,
        cursor: f.cursor.clone(),
    };
    if let Some(s) = &f.status
        && !Status::ALL.iter().any(|x| x.as_str() == s.as_str())
    {
        return Err(Error::invalid(
            "status",
            format!(
                "unknown status {s:?}: expected one of {}",
                Status::ALL
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(s) = &f.source
        && !["upload", "url", "twilio"].contains(&s.as_str())
    {
        return Err(Error::invalid(
            "source",
            "source must be upload, url or twilio",
        ));
    }
    let mut q = rec::Entity::find();
    if let Some(t) = tenant {
        q = q.filter(rec::Column::TenantId.eq(t));
    }
    if let Some(t) = &f.tenant_id {
        q = q.filter(rec::Column::TenantId.eq(t.as_str()));
    }
    if let Some(s) = &f.status {
        q = q.filter(rec::Column::Status.eq(s.as_str()));
    }
    if let Some(s) = &f.source {
        q = q.filter(rec::Column::Source.eq(s.as_str()));
    }
    if let Some(c) = &f.call_id {
        q = q.filter(rec::Column::CallId.eq(c.as_str()));
    }
    if let Some(s) = f.session_id {
        q = q.filter(rec::Column::SessionId.eq(s));
    }
    if let Some(c) = &f.cursor {
        let (at, id) = crate::paging::decode(c)
            .ok_or_else(|| Error::invalid("cursor", crate::paging::BAD_CURSOR))?;
        q = q.filter(
            sea_orm::Condition::any()
                .add(rec::Column::CreatedAt.lt(at))
                .add(
                    sea_orm::Condition::all()
                        .add(rec::Column::CreatedAt.eq(at))
                        .add(rec::Column::Id.lt(id)),
                ),
        );
    }
    let mut rows = q
        .order_by_desc(rec::Column::CreatedAt)
        .order_by_desc(rec::Column::Id)
        .limit(u64::from(limit) + 1)
        .all(db)
        .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| crate::paging::cursor_of(r.created_at, r.id))
    } else {
        None
    };
    Ok(RecordingList {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    })
}

/// Hands a recording back to the pipeline for `what` (merged with work already asked for), showing
/// `shown` as its status meanwhile. A worker holding it is fenced out: its claim token is cleared,
/// so its remaining writes change nothing and the next claim starts from the row as it now is.
pub async fn request_work<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    what: &str,
    shown: Status,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE recordings SET work = CASE WHEN work IS NULL OR work = ? THEN ? ELSE ? END, \
         status = ?, error = NULL, claim_token = NULL, lease_until = NULL, claimed_by = NULL, \
         attempts = 0, available_at = ?, updated_at = ? WHERE id = ?",
        [
            what.into(),
            what.into(),
            work::PROCESS.into(),
            shown.into(),
            now.into(),
            now.into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Forgets every version's WER (the transcript of record changed); the worker scores them again.
pub async fn clear_scores<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE recording_transcripts SET wer_vs_record = NULL WHERE recording_id = ?",
        [id.into()],
    ))
    .await?;
    Ok(())
}

/// The transcript version the report `seq` of a recorded session was derived from.
pub async fn version_of_report(
    db: &DatabaseConnection,
    session_id: Uuid,
    seq: i64,
) -> Result<Option<i32>, sea_orm::DbErr> {
    let Some(r) = of_session(db, session_id).await? else {
        return Ok(None);
    };
    Ok(r.derivations
        .as_ref()
        .and_then(|d| d.as_array())
        .and_then(|d| d.iter().find(|x| x["seq"].as_i64() == Some(seq)))
        .and_then(|x| x["transcript_version"].as_i64())
        .and_then(|v| i32::try_from(v).ok()))
}

/// Why a recording cannot be worked on again: a duplicate, or no decoded audio yet.
pub fn check_reworkable(m: &rec::Model) -> Result<(), Error> {
    if let Some(d) = m.duplicate_of {
        return Err(Error::Conflict(format!(
            "recording {} is a duplicate of {d}: change that one",
            m.id
        )));
    }
    if m.object_key.is_none() || m.channels.is_none() {
        return Err(Error::Conflict(format!(
            "recording {} has no decoded audio yet (status {}{})",
            m.id,
            m.status,
            m.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// A new channel map: stored, and turns, metrics, diagnosis and analytics derived again.
pub async fn set_roles(
    db: &DatabaseConnection,
    m: &rec::Model,
    roles: &[String],
) -> Result<(), Error> {
    use sea_orm::{ActiveModelTrait, Set, TransactionTrait};
    check_reworkable(m)?;
    let roles = super::intake::check_roles(roles)?;
    let txn = db.begin().await?;
    let mut am: rec::ActiveModel = m.clone().into();
    am.channel_roles = Set(serde_json::json!(roles));
    am.update(&txn).await?;
    request_work(&txn, m.id, work::DERIVE, Status::Analysing).await?;
    txn.commit().await?;
    Ok(())
}

/// Queues a new transcript version of the stored original through `provider`; its number.
pub async fn queue_transcript(
    db: &DatabaseConnection,
    m: &rec::Model,
    provider: crate::stt::ProviderId,
    model: Option<String>,
) -> Result<i32, Error> {
    use sea_orm::{Set, TransactionTrait};
    check_reworkable(m)?;
    let model = model
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    if model.as_ref().is_some_and(|m| m.chars().count() > 128) {
        return Err(Error::invalid(
            "model",
            "model is longer than 128 characters",
        ));
    }
    let txn = db.begin().await?;
    let next = transcripts(db, m.id)
        .await?
        .iter()
        .map(|t| t.version)
        .max()
        .unwrap_or(0)
        + 1;
    rt::Entity::insert(rt::ActiveModel {
        recording_id: Set(m.id),
        version: Set(next),
        provider: Set(provider.as_str().into()),
        model: Set(model),
        language: Set(None),
        status: Set(rt::Status::Queued),
        error: Set(None),
        transcript: Set(None),
        words: Set(None),
        raw: Set(None),
        request_id: Set(None),
        wer_vs_record: Set(None),
        created_at: Set(Utc::now()),
        completed_at: Set(None),
    })
    .exec_without_returning(&txn)
    .await
    .map_err(|_| {
        Error::Conflict("another re-transcription was asked for at the same moment; retry".into())
    })?;
    request_work(&txn, m.id, work::TRANSCRIBE, Status::Transcribing).await?;
    txn.commit().await?;
    Ok(next)
}

/// Makes `version` the transcript of record: the session's turns, metrics, diagnosis and analytics
/// are derived from it again.
pub async fn set_transcript_of_record(
    db: &DatabaseConnection,
    m: &rec::Model,
    version: i64,
) -> Result<(), Error> {
    use sea_orm::{ActiveModelTrait, Set, TransactionTrait};
    check_reworkable(m)?;
    let rows = transcripts(db, m.id).await?;
    let row = rows
        .iter()
        .find(|r| i64::from(r.version) == version)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "transcript version {version} of recording {}",
                m.id
            ))
        })?;
    if row.status != rt::Status::Completed {
        return Err(Error::Conflict(format!(
            "transcript version {version} is {}{}",
            row.status,
            row.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }
    let txn = db.begin().await?;
    let mut am: rec::ActiveModel = m.clone().into();
    am.transcript_version = Set(Some(row.version));
    am.update(&txn).await?;
    clear_scores(&txn, m.id).await?;
    request_work(&txn, m.id, work::DERIVE, Status::Analysing).await?;
    txn.commit().await?;
    Ok(())
}
