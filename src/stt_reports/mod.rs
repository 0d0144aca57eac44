//! STT reports, the one query layer the API and the UI share: a QA engineer files a transcription
//! issue against one user turn; the turn's clip is cut from the stored audio, kept in the short-term
//! store and copied to the long-term archive. Listing and loading are tenant-scoped.

use crate::audio::RenditionKind;
use crate::error::{Error, storable};
use crate::sessions::page_limit;
use crate::storage::report_key;
use crate::stt_replay::replay::{ClipReplay, TurnReplay, turn_clip};
use crate::tenancy::Scope;
use chrono::{DateTime, Utc};
use entity::{call_sessions as cs, conversation_turns as ct, stt_reports as rep};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What reports need, built by the composition root (`App::reports`): the database, the audio
/// store (and its key prefix), the archive, the STT providers and the default language.
#[derive(Debug, Clone)]
pub struct Reports {
    pub db: sea_orm::DatabaseConnection,
    pub store: std::sync::Arc<dyn crate::storage::AudioStore>,
    /// `INSIGHTS_S3_PREFIX`: where short-term clips go in the audio store.
    pub prefix: String,
    pub archive: crate::storage::Archive,
    pub stt: crate::stt::SttProviders,
    /// `INSIGHTS_STT_LANGUAGE`: the language of an analysis that names none.
    pub language: Option<String>,
}

/// Longest accepted text field (characters).
const MAX_TEXT: usize = 10_000;

/// What kind of transcription problem the reporter saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueType {
    /// Words heard as other words.
    Misrecognition,
    /// Words the user said are absent.
    MissingWords,
    /// Words the user never said are present.
    Hallucination,
    /// Transcribed in (or as) another language.
    WrongLanguage,
    /// The transcript stops before the user did.
    Truncated,
    Other,
}

impl IssueType {
    fn as_str(self) -> &'static str {
        match self {
            IssueType::Misrecognition => "misrecognition",
            IssueType::MissingWords => "missing_words",
            IssueType::Hallucination => "hallucination",
            IssueType::WrongLanguage => "wrong_language",
            IssueType::Truncated => "truncated",
            IssueType::Other => "other",
        }
    }
    /// The type a form names (anything else is `other`).
    pub fn parse(s: &str) -> Self {
        match s {
            "misrecognition" => IssueType::Misrecognition,
            "missing_words" => IssueType::MissingWords,
            "hallucination" => IssueType::Hallucination,
            "wrong_language" => IssueType::WrongLanguage,
            "truncated" => IssueType::Truncated,
            _ => IssueType::Other,
        }
    }
}

/// A new report: the session (by id or call id), the user turn, and what went wrong.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"call_id": "call-0900001-0e4018bf", "turn_index": 2, "stt_output": "my account number is for five sex",
    "expected_output": "my account number is four five six", "issue_type": "misrecognition", "notes": "digits misheard on a noisy line"}))]
pub struct NewReport {
    #[schema(nullable = false)]
    pub session_id: Option<Uuid>,
    /// Instead of `session_id`.
    #[schema(nullable = false)]
    pub call_id: Option<String>,
    /// A user turn of the session.
    #[serde(deserialize_with = "crate::json_num::json_i64")]
    pub turn_index: i64,
    /// What the STT produced [default: the turn's stored transcript].
    #[schema(max_length = 10000)]
    pub stt_output: Option<String>,
    /// What the user actually said.
    #[schema(max_length = 10000)]
    pub expected_output: String,
    pub issue_type: IssueType,
    #[schema(max_length = 10000)]
    pub notes: Option<String>,
    /// Who reported it (free text: an e-mail, a name).
    #[schema(max_length = 10000)]
    pub reported_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportAudioStatus {
    /// In the short-term store and the archive.
    Stored,
    /// Only in the archive (the short-term copy failed or is gone).
    Archived,
    /// No clip could be kept; `audio_error` says why.
    Missing,
}

/// A report as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    pub id: Uuid,
    pub tenant_id: String,
    pub session_id: Uuid,
    pub call_id: String,
    pub turn_index: i64,
    pub stt_output: String,
    pub expected_output: String,
    pub issue_type: IssueType,
    pub notes: Option<String>,
    pub reported_by: Option<String>,
    pub audio_status: ReportAudioStatus,
    /// The rendition the clip was cut from (`stt_input`, else `post_rnnoise`, else `pre_rnnoise`).
    pub clip_rendition: Option<RenditionKind>,
    pub clip_start_ms: Option<i64>,
    pub clip_end_ms: Option<i64>,
    pub clip_duration_ms: Option<f64>,
    /// Key of the clip in the short-term store.
    pub source_s3_key: Option<String>,
    /// Key of the clip in the archive.
    pub archive_s3_key: Option<String>,
    /// The archive bucket (or folder).
    pub archive_bucket: Option<String>,
    pub audio_error: Option<String>,
    /// `running`, `completed` or `failed`; null before the first analysis.
    pub analysis_status: Option<String>,
    pub analyzed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn report_view(r: rep::Model) -> ReportView {
    let audio_status = match (&r.source_s3_key, &r.archive_s3_key) {
        (Some(_), Some(_)) => ReportAudioStatus::Stored,
        (None, Some(_)) => ReportAudioStatus::Archived,
        // A short-term copy only: still downloadable, but say the archive copy failed.
        (Some(_), None) => ReportAudioStatus::Stored,
        (None, None) => ReportAudioStatus::Missing,
    };
    ReportView {
        id: r.id,
        tenant_id: r.tenant_id,
        session_id: r.session_id,
        call_id: r.call_id,
        turn_index: r.turn_index,
        stt_output: r.stt_output,
        expected_output: r.expected_output,
        issue_type: IssueType::parse(&r.issue_type),
        notes: r.notes,
        reported_by: r.reported_by,
        audio_status,
        clip_rendition: r.clip_rendition.as_deref().and_then(RenditionKind::parse),
        clip_start_ms: r.clip_start_ms,
        clip_end_ms: r.clip_end_ms,
        clip_duration_ms: r.clip_duration_ms,
        source_s3_key: r.source_s3_key,
        archive_s3_key: r.archive_s3_key,
        archive_bucket: r.archive_bucket,
        audio_error: r.audio_error,
        analysis_status: r.analysis_status,
        analyzed_at: r.analyzed_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub fn text_field(
    param: &'static str,
    v: Option<String>,
    required: bool,
) -> Result<Option<String>, Error> {
    match v {
        None if required => Err(Error::invalid(param, format!("{param} is required"))),
        None => Ok(None),
        Some(t) => {
            if t.chars().count() > MAX_TEXT {
                return Err(Error::invalid(
                    param,
                    format!("{param} is longer than {MAX_TEXT} characters"),
                ));
            }
            // PostgreSQL text cannot hold NUL.
            Ok(Some(t.replace('\0', "\u{FFFD}")))
        }
    }
}

/// File a report against a user turn: the clip is cut and stored (short-term and archive) before the
/// row is written; a clip that cannot be made or stored is recorded in `audio_error`.
pub async fn create(app: &Reports, scope: &Scope, req: NewReport) -> Result<ReportView, Error> {
    let session = match (&req.session_id, &req.call_id) {
        (Some(id), None) => crate::sessions::load(&app.db, scope, *id).await?,
        (None, Some(call)) => {
            let found = if storable(call) {
                cs::Entity::find()
                    .filter(cs::Column::CallId.eq(call.as_str()))
                    .one(&app.db)
                    .await?
            } else {
                None
            };
            match found {
                Some(s) if scope.allows(&s.tenant_id) => s,
                _ => return Err(Error::NotFound(format!("session of call {call:?}"))),
            }
        }
        _ => {
            return Err(Error::invalid(
                "session_id",
                "give session_id or call_id (one of them)",
            ));
        }
    };
    let expected =
        text_field("expected_output", Some(req.expected_output), true)?.unwrap_or_default();
    let notes = text_field("notes", req.notes, false)?;
    let reported_by = text_field("reported_by", req.reported_by, false)?;
    let stt_output = text_field("stt_output", req.stt_output, false)?;
    let turn = ct::Entity::find_by_id((session.id, req.turn_index))
        .one(&app.db)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!("turn {} of session {}", req.turn_index, session.id))
        })?;
    if turn.role != "user" {
        return Err(Error::NotFound(format!(
            "user turn {} of session {} (it is an {} turn; reports are about user turns)",
            turn.turn_index, session.id, turn.role
        )));
    }
    let id = Uuid::now_v7();
    let mut row = rep::Model {
        id,
        tenant_id: session.tenant_id.clone(),
        session_id: session.id,
        call_id: session.call_id.clone(),
        turn_index: turn.turn_index,
        stt_output: stt_output.unwrap_or_else(|| turn.content.clone()),
        expected_output: expected,
        issue_type: req.issue_type.as_str().into(),
        notes,
        reported_by,
        clip_rendition: None,
        clip_start_ms: turn.start_ms,
        clip_end_ms: turn.end_ms,
        clip_duration_ms: None,
        source_s3_key: None,
        archive_s3_key: None,
        archive_bucket: None,
        audio_error: None,
        analysis_status: None,
        analysis: None,
        analysis_error: None,
        analyzed_at: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    match turn_clip(&app.db, app.store.clone(), session.id, turn).await? {
        Err(reason) => row.audio_error = Some(format!("no clip of the turn: {reason}")),
        Ok(clip) => {
            row.clip_rendition = Some(clip.kind.as_str().into());
            row.clip_duration_ms = Some(clip.duration_ms);
            let mut errors = Vec::new();
            let source = report_key(&app.prefix, &session.tenant_id, id);
            match app.store.put(&source, &clip.wav, "audio/wav").await {
                Ok(()) => row.source_s3_key = Some(source),
                Err(e) => errors.push(format!("short-term store: {e}")),
            }
            let archive = report_key(&app.archive.prefix, &session.tenant_id, id);
            match app
                .archive
                .store
                .put(&archive, &clip.wav, "audio/wav")
                .await
            {
                Ok(()) => {
                    row.archive_s3_key = Some(archive);
                    row.archive_bucket = Some(app.archive.location.clone());
                }
                Err(e) => errors.push(format!("archive: {e}")),
            }
            if !errors.is_empty() {
                tracing::warn!(report = %id, errors = ?errors, "reported clip not fully stored");
                row.audio_error = Some(errors.join("; "));
            }
        }
    }
    rep::Entity::insert(rep::ActiveModel::from(row.clone()))
        .exec_without_returning(&app.db)
        .await?;
    tracing::info!(report = %id, session = %session.id, turn = row.turn_index, issue = %row.issue_type, "STT report filed");
    Ok(report_view(row))
}

/// Which reports to list.
#[derive(Debug, Default)]
pub struct ReportFilter {
    pub tenant_id: Option<String>,
    pub session_id: Option<Uuid>,
    pub call_id: Option<String>,
    pub issue_type: Option<IssueType>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    /// Newest first.
    pub items: Vec<ReportView>,
    pub next_cursor: Option<String>,
}

/// A page of the caller's reports, newest first.
pub async fn list(
    db: &DatabaseConnection,
    scope: &Scope,
    f: &ReportFilter,
) -> Result<ReportList, Error> {
    let limit = page_limit(f.limit)?;
    if [&f.tenant_id, &f.call_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !storable(v)))
    {
        return Ok(ReportList {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    let mut q = rep::Entity::find();
    if let Some(t) = scope.tenant() {
        q = q.filter(rep::Column::TenantId.eq(t));
    }
    if let Some(t) = &f.tenant_id {
        q = q.filter(rep::Column::TenantId.eq(t.as_str()));
    }
    if let Some(s) = f.session_id {
        q = q.filter(rep::Column::SessionId.eq(s));
    }
    if let Some(c) = &f.call_id {
        q = q.filter(rep::Column::CallId.eq(c.as_str()));
    }
    if let Some(i) = f.issue_type {
        q = q.filter(rep::Column::IssueType.eq(i.as_str()));
    }
    let (rows, next_cursor) = crate::paging::keyset_page(
        db,
        q,
        (rep::Column::CreatedAt, rep::Column::Id),
        f.cursor.as_deref(),
        limit,
        |r| (r.created_at, r.id),
    )
    .await?;
    Ok(ReportList {
        items: rows.into_iter().map(report_view).collect(),
        next_cursor,
    })
}

/// A report the caller may see, or 404.
pub async fn load(db: &DatabaseConnection, scope: &Scope, id: Uuid) -> Result<rep::Model, Error> {
    match rep::Entity::find_by_id(id).one(db).await? {
        Some(r) if scope.allows(&r.tenant_id) => Ok(r),
        _ => Err(Error::NotFound(format!("report {id}"))),
    }
}

/// The reported clip's bytes: the short-term copy, else the archive's (and which it was).
pub async fn clip_bytes(
    app: &Reports,
    r: &rep::Model,
) -> Result<Option<(Vec<u8>, &'static str)>, Error> {
    if let Some(key) = &r.source_s3_key {
        match app.store.get(None, key).await {
            Ok(Some(b)) => return Ok(Some((b, "short_term"))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(report = %r.id, error = %e, "short-term store unavailable; trying the archive")
            }
        }
    }
    if let Some(key) = &r.archive_s3_key {
        match app.archive.store.get(None, key).await {
            Ok(Some(b)) => return Ok(Some((b, "archive"))),
            Ok(None) => {}
            Err(e) => return Err(Error::internal(e)),
        }
    }
    Ok(None)
}

/// What a report analysis found: the reported clip and the turn's renditions through the providers,
/// every transcript scored against `expected_output` (`wer_vs_expected`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAnalysisResult {
    /// The archived clip (always analysable while the report exists).
    pub clip: Option<ClipReplay>,
    pub clip_error: Option<String>,
    /// The turn's `pre_rnnoise`, `post_rnnoise` and `stt_input` renditions from the call's stored
    /// audio: shows whether noise suppression or the STT input caused the issue. Absent once the
    /// call's audio is gone (`turn_error` says why).
    pub turn: Option<TurnReplay>,
    pub turn_error: Option<String>,
}

async fn set_analysis(
    db: &sea_orm::DatabaseConnection,
    id: Uuid,
    status: &str,
    result: Option<serde_json::Value>,
    error: Option<String>,
) -> Result<(), Error> {
    let at = Utc::now();
    let mut u = rep::Entity::update_many()
        .col_expr(rep::Column::AnalysisStatus, Expr::value(status))
        .col_expr(rep::Column::AnalysisError, Expr::value(error))
        .col_expr(rep::Column::UpdatedAt, Expr::value(at));
    if status == "completed" {
        u = u
            .col_expr(rep::Column::Analysis, Expr::value(result))
            .col_expr(rep::Column::AnalyzedAt, Expr::value(at));
    }
    u.filter(rep::Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

/// Run the provider comparison on a report's clip and its turn's renditions (interactive priority),
/// scored against `expected_output`; stores the result (or why nothing could be analysed).
pub async fn analyze(
    app: &Reports,
    r: &rep::Model,
    providers: Option<Vec<crate::stt::ProviderId>>,
    language: Option<String>,
) -> Result<(), Error> {
    use crate::stt::Priority;
    use crate::stt_replay::replay::{ReplayOptions, replay_clip, replay_session};
    let language = language.or_else(|| app.language.clone());
    let db = &app.db;
    set_analysis(db, r.id, "running", None, None).await?;
    let options = ReplayOptions {
        providers,
        turns: Some(vec![r.turn_index]),
        language,
        tenant: None,
        priority: Priority::Interactive,
        expected: Some(r.expected_output.clone()),
    };
    let audio = clip_bytes(app, r).await?;
    let clip = async {
        let Some((wav, _)) = audio else {
            return Err(format!(
                "the report has no clip{}",
                r.audio_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        };
        let kind = r
            .clip_rendition
            .as_deref()
            .and_then(RenditionKind::parse)
            .unwrap_or(RenditionKind::SttInput);
        replay_clip(
            &app.stt,
            kind,
            wav,
            &r.stt_output,
            &r.expected_output,
            &options,
        )
        .await
        .map_err(|e| e.to_string())
    };
    // The turn's three renditions from the call's stored audio, while it is still kept.
    let turn = async {
        match replay_session(db, app.store.clone(), &app.stt, r.session_id, &options).await {
            Ok(mut grid) => grid
                .turns
                .pop()
                .ok_or_else(|| format!("turn {} is no longer stored", r.turn_index)),
            Err(e) => Err(e.to_string()),
        }
    };
    let (clip, turn) = tokio::join!(clip, turn);
    let result = ReportAnalysisResult {
        clip_error: clip.as_ref().err().cloned(),
        turn_error: turn.as_ref().err().cloned(),
        clip: clip.ok(),
        turn: turn.ok(),
    };
    if result.clip.is_none() && result.turn.is_none() {
        let error = format!(
            "nothing to analyse: {}; {}",
            result.clip_error.as_deref().unwrap_or_default(),
            result.turn_error.as_deref().unwrap_or_default()
        );
        set_analysis(db, r.id, "failed", None, Some(error)).await?;
    } else {
        let json = serde_json::to_value(&result).map_err(Error::internal)?;
        set_analysis(db, r.id, "completed", Some(json), None).await?;
    }
    Ok(())
}

/// The stored analyses of these reports (one query), by report id.
pub async fn analyses(
    db: &DatabaseConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, serde_json::Value>, Error> {
    use sea_orm::QuerySelect;
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, Option<serde_json::Value>)> = rep::Entity::find()
        .select_only()
        .columns([rep::Column::Id, rep::Column::Analysis])
        .filter(rep::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, a)| Some((id, a?)))
        .collect())
}
