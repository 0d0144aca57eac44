//! The recording pipeline, durable and resumable on any replica: a worker claims a recording with a
//! lease and a fencing token (`FOR UPDATE SKIP LOCKED` on PostgreSQL), renews the lease while it works,
//! and every step it records is fenced by the token, so a replica frozen or killed mid-transcription
//! changes nothing once another has taken the recording over. Each step is done once and skipped on a
//! resumed run: fetch (URL or Twilio media) → store → decode → transcribe (each queued version) →
//! derive (turns, conversation metrics, and a final report handed to ingest: diagnosis, analytics,
//! webhooks and live events follow as for any call).

use super::decode::{self, AudioFacts};
use super::spool::{Spool, Spooled};
use super::store::roles_of;
use super::transcribe::{Audio, Transcript};
use super::turns::{self, Word};
use super::{Recordings, Status, intake, work};
use crate::db::stmt;
use crate::diagnosis::Thresholds;
use crate::ingest::contract::{
    Component, Pipeline, ReportType, Role, SessionReport, Turn as ReportTurn,
};
use crate::ingest::row_cache::RowCache;
use crate::ingest::{DecodedEntry, Ingestor};
use crate::storage::AudioStore;
use crate::stt::{ProviderId, SttErrorKind};
use chrono::Utc;
use entity::{call_sessions as cs, recording_transcripts as rt, recordings as rec};
use futures::StreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, Value,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Starts of a recording's work before it fails for good.
const MAX_ATTEMPTS: i32 = 6;

/// What the worker needs, built once by the composition root.
#[derive(Debug, Clone)]
pub struct Worker {
    pub recordings: Arc<Recordings>,
    pub db: DatabaseConnection,
    pub store: Arc<dyn AudioStore>,
    pub ingestor: Ingestor,
    pub row_cache: Arc<RowCache>,
    pub live: Option<Arc<crate::live::hub::Hub>>,
    pub broker: crate::broker::Broker,
    pub updates_channel: String,
    pub thresholds: Arc<Thresholds>,
    pub worker_id: String,
    /// The replay providers: a recording's transcription takes a slot of the same provider's
    /// process-wide concurrency bound (`INSIGHTS_<P>_CONCURRENCY`), at batch priority.
    pub stt: crate::stt::SttProviders,
}

/// A claimed recording.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub id: Uuid,
    pub token: Uuid,
    pub attempts: i32,
}

/// What became of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    Completed,
    /// Failed for good; the reason is on the recording.
    Failed(String),
    /// Sent back for a later try (a provider or the store was unavailable).
    Retrying(String),
    /// Another worker holds the recording now (or new work was asked for): nothing more recorded.
    Lost,
}

/// Why a step stopped.
enum Stop {
    Lost,
    Fail(String),
    Retry(String),
    Db(DbErr),
}

impl From<DbErr> for Stop {
    fn from(e: DbErr) -> Self {
        Stop::Db(e)
    }
}

impl From<crate::storage::StorageError> for Stop {
    fn from(e: crate::storage::StorageError) -> Self {
        match e {
            crate::storage::StorageError::Unavailable(m) => Stop::Retry(m),
            other => Stop::Fail(other.to_string()),
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct ClaimRow {
    id: Uuid,
    attempts: i32,
}

fn retry_delay(attempts: i32) -> Duration {
    let secs = 2u64.saturating_pow(attempts.clamp(0, 8) as u32).min(300);
    Duration::from_secs(secs).mul_f64(0.75 + 0.5 * fastrand::f64())
}

/// The recordings table as a leased queue (a row with `work` is due).
const QUEUE: crate::lease::Queue = crate::lease::Queue {
    table: "recordings",
    key: &["id"],
    order: "available_at",
};

impl Worker {
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Claims up to `n` recordings with work due (or whose holder's lease ran out).
    pub async fn claim(&self, n: usize) -> Result<Vec<Claim>, DbErr> {
        let now = Utc::now();
        let (token, rows) = QUEUE
            .claim::<ClaimRow>(
                &self.db,
                &self.worker_id,
                self.recordings.settings.lease,
                n,
                crate::lease::Due {
                    sql: "work IS NOT NULL AND available_at <= ? AND (lease_until IS NULL OR lease_until < ?)",
                    values: vec![now.into(), now.into()],
                    also: "attempts = attempts + 1",
                    also_values: Vec::new(),
                    returning: "id, attempts",
                },
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Claim {
                id: r.id,
                token,
                attempts: r.attempts,
            })
            .collect())
    }

    /// Records `sets` on the claimed row; false when the claim is no longer this worker's.
    async fn fenced(&self, c: &Claim, sets: &str, mut values: Vec<Value>) -> Result<bool, DbErr> {
        values.push(Utc::now().into());
        QUEUE
            .fenced(
                &self.db,
                &[c.id.into()],
                c.token,
                &format!("{sets}, updated_at = ?"),
                values,
            )
            .await
    }

    async fn must(&self, c: &Claim, sets: &str, values: Vec<Value>) -> Result<(), Stop> {
        if self.fenced(c, sets, values).await? {
            Ok(())
        } else {
            Err(Stop::Lost)
        }
    }

    async fn renew(&self, c: &Claim) -> Result<bool, DbErr> {
        QUEUE
            .renew(
                &self.db,
                &[c.id.into()],
                c.token,
                self.recordings.settings.lease,
            )
            .await
    }

    /// Runs one claimed recording to its end, renewing the lease meanwhile.
    pub async fn run(&self, c: &Claim) -> Result<RunResult, DbErr> {
        if c.attempts > MAX_ATTEMPTS {
            let why = "gave up after repeated failures (see the service log)".to_string();
            self.fenced(
                c,
                "work = NULL, status = ?, error = COALESCE(error, ?), claim_token = NULL, lease_until = NULL",
                vec![Status::Failed.into(), why.clone().into()],
            )
            .await?;
            return Ok(RunResult::Failed(why));
        }
        let lease = self.recordings.settings.lease;
        let scratch = self.recordings.settings.spool_dir.join(format!(
            "{}-{}",
            c.id.simple(),
            c.token.simple()
        ));
        let work = self.process(c, &scratch);
        tokio::pin!(work);
        // Renewals run beside the work, never instead of it: a renewal waiting for SQLite's write
        // lock while the work holds it in a transaction (and is not polled) would deadlock both
        // until the busy timeout.
        let renewals = async {
            let mut tick = tokio::time::interval(lease / 4);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !self.renew(c).await? {
                    return Ok::<(), DbErr>(());
                }
            }
        };
        tokio::pin!(renewals);
        let outcome = tokio::select! {
            r = &mut work => r,
            stopped = &mut renewals => {
                stopped?;
                // Taken over, or new work asked for: the run goes on fenced and records nothing.
                (&mut work).await
            }
        };
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        match outcome {
            Ok(()) => {
                let done = self
                    .fenced(
                        c,
                        "work = NULL, status = ?, error = NULL, claim_token = NULL, claimed_by = NULL, lease_until = NULL, completed_at = ?",
                        vec![Status::Completed.into(), Utc::now().into()],
                    )
                    .await?;
                Ok(if done {
                    RunResult::Completed
                } else {
                    RunResult::Lost
                })
            }
            Err(Stop::Lost) => Ok(RunResult::Lost),
            Err(Stop::Db(e)) => Err(e),
            Err(Stop::Fail(why)) => {
                warn!(recording_id = %c.id, reason = %why, "recording failed");
                let done = self
                    .fenced(
                        c,
                        "work = NULL, status = ?, error = ?, claim_token = NULL, claimed_by = NULL, lease_until = NULL",
                        vec![Status::Failed.into(), why.clone().into()],
                    )
                    .await?;
                Ok(if done {
                    RunResult::Failed(why)
                } else {
                    RunResult::Lost
                })
            }
            Err(Stop::Retry(why)) => {
                let at = Utc::now()
                    + chrono::Duration::from_std(retry_delay(c.attempts)).unwrap_or_default();
                if c.attempts >= MAX_ATTEMPTS {
                    let why = format!("gave up after {} attempts: {why}", c.attempts);
                    warn!(recording_id = %c.id, reason = %why, "recording failed");
                    let done = self
                        .fenced(
                            c,
                            "work = NULL, status = ?, error = ?, claim_token = NULL, claimed_by = NULL, lease_until = NULL",
                            vec![Status::Failed.into(), why.clone().into()],
                        )
                        .await?;
                    return Ok(if done {
                        RunResult::Failed(why)
                    } else {
                        RunResult::Lost
                    });
                }
                info!(recording_id = %c.id, reason = %why, attempt = c.attempts, "recording work retried later");
                let done = self
                    .fenced(
                        c,
                        "error = ?, available_at = ?, claim_token = NULL, claimed_by = NULL, lease_until = NULL",
                        vec![format!("retrying: {why}").into(), at.into()],
                    )
                    .await?;
                Ok(if done {
                    RunResult::Retrying(why)
                } else {
                    RunResult::Lost
                })
            }
        }
    }

    async fn row(&self, c: &Claim) -> Result<rec::Model, Stop> {
        let m = rec::Entity::find_by_id(c.id)
            .one(&self.db)
            .await?
            .ok_or(Stop::Lost)?;
        if m.claim_token != Some(c.token) {
            return Err(Stop::Lost);
        }
        Ok(m)
    }

    async fn process(&self, c: &Claim, scratch: &Path) -> Result<(), Stop> {
        let m = self.row(c).await?;
        let what = m.work.clone().unwrap_or_else(|| work::PROCESS.to_string());
        tokio::fs::create_dir_all(scratch)
            .await
            .map_err(|e| Stop::Retry(format!("cannot create {}: {e}", scratch.display())))?;
        // 1. The original bytes, stored untouched.
        let m = if m.object_key.is_none() {
            match self.fetch(c, &m).await? {
                Some(m) => m,
                None => return Ok(()), // a duplicate of a recording already here
            }
        } else {
            m
        };
        let key = m.object_key.clone().ok_or(Stop::Lost)?;
        let ext = intake::extension_of(m.content_type.as_deref(), m.file_name.as_deref());
        let local = self.local_copy(&key, &ext, scratch).await?;
        // 2. What the file is.
        let m = if m.channels.is_none() {
            let facts = self.decode(&local, &ext).await?;
            self.must(
                c,
                "codec = ?, channels = ?, sample_rate = ?, duration_ms = ?, waveform = ?",
                vec![
                    facts.codec.clone().into(),
                    (facts.channels as i32).into(),
                    (facts.sample_rate as i32).into(),
                    facts.duration_ms.into(),
                    serde_json::json!(facts.waveform).into(),
                ],
            )
            .await?;
            info!(recording_id = %c.id, codec = %facts.codec, channels = facts.channels, sample_rate = facts.sample_rate, duration_ms = facts.duration_ms, "recording decoded");
            self.row(c).await?
        } else {
            m
        };
        // 3. Every queued transcript version.
        let had_record = m.transcript_version.is_some();
        if what != work::DERIVE || !had_record {
            self.transcribe(c, &m, &local, &ext, scratch).await?;
        }
        let m = self.row(c).await?;
        if m.transcript_version.is_none() {
            let why = rt::Entity::find()
                .filter(rt::Column::RecordingId.eq(m.id))
                .all(&self.db)
                .await?
                .into_iter()
                .filter_map(|t| t.error)
                .next_back()
                .unwrap_or_else(|| "no transcript was made".into());
            return Err(Stop::Fail(format!("transcription failed: {why}")));
        }
        // 4. Turns, metrics, and the session.
        if what != work::TRANSCRIBE || !had_record {
            self.must(c, "status = ?", vec![Status::Analysing.into()])
                .await?;
            self.derive(c).await?;
        }
        Ok(())
    }

    /// Fetches a URL or Twilio recording into the store. `None` when its bytes turn out to be a
    /// recording this tenant already has (this one then points at it).
    async fn fetch(&self, c: &Claim, m: &rec::Model) -> Result<Option<rec::Model>, Stop> {
        self.must(c, "status = ?", vec![Status::Fetching.into()])
            .await?;
        let url = m
            .source_url
            .clone()
            .ok_or_else(|| Stop::Fail("nothing to fetch: no URL".into()))?;
        let r = &self.recordings;
        let (file, content_type) = if m.source == "twilio" {
            self.fetch_twilio(m, &url).await?
        } else {
            let resp = r.url_client.get(&url).send().await.map_err(fetch_error)?;
            let st = resp.status();
            if !st.is_success() {
                let msg = format!("the URL answered HTTP {}", st.as_u16());
                return Err(if st.is_server_error() || st.as_u16() == 429 {
                    Stop::Retry(msg)
                } else {
                    Stop::Fail(msg)
                });
            }
            let ct = header_type(&resp);
            (self.spool_body(resp).await?, ct)
        };
        if let Some(other) = rec::Entity::find()
            .filter(rec::Column::TenantId.eq(m.tenant_id.as_str()))
            .filter(rec::Column::Sha256.eq(file.sha256.as_str()))
            .filter(rec::Column::Id.ne(m.id))
            .one(&self.db)
            .await?
        {
            info!(recording_id = %m.id, duplicate_of = %other.id, "fetched recording is one this tenant already has");
            self.must(
                c,
                "duplicate_of = ?, session_id = ?, size_bytes = ?, attached = ?",
                vec![
                    other.id.into(),
                    other.session_id.into(),
                    (file.size as i64).into(),
                    other.attached.into(),
                ],
            )
            .await?;
            return Ok(None);
        }
        let ext = intake::extension_of(content_type.as_deref(), m.file_name.as_deref());
        let ct = content_type
            .filter(|t| t.starts_with("audio/") || t == "application/ogg")
            .unwrap_or_else(|| intake::content_type_of(&ext).to_string());
        let key = intake::object_key(&r.settings.key_prefix, &m.tenant_id, m.id, &ext);
        super::store_file(self.store.as_ref(), &key, &file.path, &ct).await?;
        // The sha256 is unique per tenant: a concurrent twin makes this update fail; retried, the
        // run then finds the twin above.
        match self
            .fenced(
                c,
                "sha256 = ?, size_bytes = ?, content_type = ?, object_key = ?",
                vec![
                    file.sha256.clone().into(),
                    (file.size as i64).into(),
                    ct.into(),
                    key.into(),
                ],
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(Stop::Lost),
            Err(e) => return Err(Stop::Retry(format!("cannot record the fetched file: {e}"))),
        }
        info!(recording_id = %m.id, size_bytes = file.size, "recording fetched and stored");
        Ok(Some(self.row(c).await?))
    }

    async fn spool_body(&self, resp: reqwest::Response) -> Result<Spooled, Stop> {
        let s = &self.recordings.settings;
        if let Some(len) = resp.content_length()
            && len > s.max_bytes
        {
            return Err(Stop::Fail(format!(
                "the recording is {len} bytes, more than INSIGHTS_RECORDING_MAX_BYTES ({})",
                s.max_bytes
            )));
        }
        let mut spool = Spool::create(&s.spool_dir, s.max_bytes)
            .await
            .map_err(|e| Stop::Retry(e.detail()))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Stop::Retry(format!(
                    "the download broke off: {}",
                    crate::stt::error_chain(&e.without_url())
                ))
            })?;
            spool.write(&chunk).await.map_err(|e| match e {
                super::Error::TooLarge(m) => Stop::Fail(m),
                other => Stop::Retry(other.detail()),
            })?;
        }
        if spool.size() == 0 {
            return Err(Stop::Fail("the download was empty".into()));
        }
        spool.finish().await.map_err(|e| Stop::Retry(e.detail()))
    }

    /// `{RecordingUrl}.wav?RequestedChannels=2` (falling back to the file that exists when Twilio has
    /// no dual-channel one), Basic auth with the account's SID and token; a 404 (media not ready yet)
    /// is retried with back-off.
    async fn fetch_twilio(
        &self,
        m: &rec::Model,
        url: &str,
    ) -> Result<(Spooled, Option<String>), Stop> {
        let r = &self.recordings;
        let account = r
            .twilio
            .accounts_of_tenant(&m.tenant_id)
            .find(|a| url.contains(&a.sid))
            .ok_or_else(|| Stop::Fail("no Twilio account in INSIGHTS_TWILIO_ACCOUNTS_FILE owns this recording any more".into()))?;
        let base = format!("{url}.wav");
        let (first_wait, tries) = r.settings.media_retry;
        let mut dual = true;
        let mut wait = first_wait;
        for attempt in 1..=tries {
            let mut req = r
                .media_client
                .get(&base)
                .basic_auth(&account.sid, Some(&account.auth_token));
            if dual {
                req = req.query(&[("RequestedChannels", "2")]);
            }
            let resp = req.send().await.map_err(fetch_error)?;
            match resp.status().as_u16() {
                200..=299 => {
                    let ct = header_type(&resp);
                    return Ok((self.spool_body(resp).await?, ct));
                }
                400 if dual => {
                    info!(recording_id = %m.id, "Twilio has no dual-channel file for this recording; fetching the one it has");
                    dual = false;
                }
                404 if attempt < tries => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
                404 => {
                    return Err(Stop::Retry(
                        "Twilio has no media for this recording yet (404)".into(),
                    ));
                }
                401 | 403 => {
                    return Err(Stop::Fail(format!(
                        "Twilio refused the account's credentials (HTTP {})",
                        resp.status().as_u16()
                    )));
                }
                s if s >= 500 || s == 429 => {
                    return Err(Stop::Retry(format!("Twilio answered HTTP {s}")));
                }
                s => {
                    return Err(Stop::Fail(format!(
                        "Twilio answered HTTP {s} for the media"
                    )));
                }
            }
        }
        Err(Stop::Retry("Twilio media not available yet".into()))
    }

    /// The stored original as a local file (the filesystem store's own file, else a copy).
    async fn local_copy(&self, key: &str, ext: &str, scratch: &Path) -> Result<PathBuf, Stop> {
        if let Some(p) = self.store.local_path(key) {
            let p = p.map_err(|e| Stop::Fail(e.to_string()))?;
            if tokio::fs::metadata(&p).await.is_ok() {
                return Ok(p);
            }
            return Err(Stop::Fail("the stored original is missing".into()));
        }
        let out = scratch.join(format!("original.{ext}"));
        if !self.store.get_to_file(key, &out).await? {
            return Err(Stop::Fail("the stored original is missing".into()));
        }
        Ok(out)
    }

    async fn decode(&self, path: &Path, ext: &str) -> Result<AudioFacts, Stop> {
        let (p, e) = (path.to_path_buf(), ext.to_string());
        tokio::task::spawn_blocking(move || decode::inspect(&p, Some(&e)))
            .await
            .map_err(|e| Stop::Retry(format!("decoder task failed: {e}")))?
            .map_err(|e| Stop::Fail(e.to_string()))
    }

    async fn transcribe(
        &self,
        c: &Claim,
        m: &rec::Model,
        local: &Path,
        ext: &str,
        scratch: &Path,
    ) -> Result<(), Stop> {
        let mut versions = super::store::transcripts(&self.db, m.id)
            .await
            .map_err(|e| match e.into_db() {
                Ok(d) => Stop::Db(d),
                Err(other) => Stop::Retry(other.detail()),
            })?;
        if versions.is_empty() {
            let v = rt::ActiveModel {
                recording_id: sea_orm::Set(m.id),
                version: sea_orm::Set(1),
                provider: sea_orm::Set(m.provider.clone()),
                model: sea_orm::Set(m.model.clone()),
                language: sea_orm::Set(None),
                status: sea_orm::Set(rt::Status::Queued),
                error: sea_orm::Set(None),
                transcript: sea_orm::Set(None),
                words: sea_orm::Set(None),
                raw: sea_orm::Set(None),
                request_id: sea_orm::Set(None),
                wer_vs_record: sea_orm::Set(None),
                created_at: sea_orm::Set(Utc::now()),
                completed_at: sea_orm::Set(None),
            };
            rt::Entity::insert(v)
                .on_conflict(
                    sea_orm::sea_query::OnConflict::new()
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
            versions = super::store::transcripts(&self.db, m.id)
                .await
                .map_err(|e| Stop::Retry(e.detail()))?;
        }
        let audio = Audio {
            path: local.to_path_buf(),
            content_type: m
                .content_type
                .clone()
                .unwrap_or_else(|| intake::content_type_of(ext).into()),
            extension: Some(ext.to_string()),
            channels: m.channels.unwrap_or(1).max(1) as usize,
            language: m.language.clone(),
            scratch: scratch.to_path_buf(),
        };
        for v in versions.iter().filter(|v| v.status == rt::Status::Queued) {
            self.must(c, "status = ?", vec![Status::Transcribing.into()])
                .await?;
            let provider = ProviderId::parse(&v.provider)
                .ok_or_else(|| Stop::Fail(format!("unknown provider {}", v.provider)))?;
            let Some(t) = self.recordings.transcriber(provider) else {
                self.transcript_failed(
                    m.id,
                    v.version,
                    &format!(
                        "{provider} has no API key (INSIGHTS_{}_API_KEY)",
                        provider.env_prefix()
                    ),
                )
                .await?;
                continue;
            };
            info!(recording_id = %m.id, version = v.version, provider = %provider, "transcribing recording");
            let _slot = match self.stt.get(provider) {
                Some(bounded) => Some(bounded.acquire(crate::stt::Priority::Batch).await),
                None => None,
            };
            match t.transcribe(&audio, v.model.as_deref()).await {
                Ok(tr) => self.transcript_done(c, m, v.version, tr).await?,
                Err(e) => match e.kind {
                    SttErrorKind::RateLimited
                    | SttErrorKind::Server
                    | SttErrorKind::Timeout
                    | SttErrorKind::Network => {
                        return Err(Stop::Retry(e.to_string()));
                    }
                    _ => {
                        self.transcript_failed(m.id, v.version, &e.to_string())
                            .await?
                    }
                },
            }
        }
        Ok(())
    }

    async fn transcript_failed(&self, id: Uuid, version: i32, why: &str) -> Result<(), Stop> {
        warn!(recording_id = %id, version, reason = %why, "transcript failed");
        self.db
            .execute_raw(stmt(
                self.backend(),
                "UPDATE recording_transcripts SET status = 'failed', error = ?, completed_at = ? WHERE recording_id = ? AND version = ? AND status = 'queued'",
                [why.into(), Utc::now().into(), id.into(), version.into()],
            ))
            .await?;
        Ok(())
    }

    async fn transcript_done(
        &self,
        c: &Claim,
        m: &rec::Model,
        version: i32,
        t: Transcript,
    ) -> Result<(), Stop> {
        // Fenced through the recording: a run that lost its claim stores nothing.
        self.row(c).await?;
        let text = t.text();
        let record_text = match m.transcript_version {
            Some(v) => rt::Entity::find_by_id((m.id, v))
                .one(&self.db)
                .await?
                .and_then(|r| r.transcript),
            None => None,
        };
        let lang = t.language.clone();
        let wer = match record_text {
            Some(reference) => {
                let hyp = text.clone();
                tokio::task::spawn_blocking(move || {
                    super::store::wer_between(&reference, &hyp, lang.as_deref())
                })
                .await
                .ok()
                .flatten()
            }
            None => Some(0.0),
        };
        let words = serde_json::to_value(&t.words).unwrap_or_default();
        self.db
            .execute_raw(stmt(
                self.backend(),
                "UPDATE recording_transcripts SET status = 'completed', error = NULL, transcript = ?, words = ?, raw = ?, \
                 language = ?, model = ?, request_id = ?, wer_vs_record = ?, completed_at = ? WHERE recording_id = ? AND version = ?",
                [
                    text.into(),
                    words.into(),
                    t.raw.clone().into(),
                    t.language.clone().into(),
                    Some(t.model.clone()).into(),
                    t.request_id.clone().into(),
                    wer.into(),
                    Utc::now().into(),
                    m.id.into(),
                    version.into(),
                ],
            ))
            .await?;
        info!(recording_id = %m.id, version, words = t.words.len(), "transcript stored");
        if m.transcript_version.is_none() {
            self.must(
                c,
                "transcript_version = ?, language = COALESCE(language, ?)",
                vec![version.into(), t.language.into()],
            )
            .await?;
        }
        Ok(())
    }

    /// Turns and metrics from the transcript of record; a final report to ingest unless the call
    /// is an agent's (then only the metrics are kept, beside the agent's own turns).
    async fn derive(&self, c: &Claim) -> Result<(), Stop> {
        let m = self.row(c).await?;
        let version = m.transcript_version.ok_or(Stop::Lost)?;
        let t = rt::Entity::find_by_id((m.id, version))
            .one(&self.db)
            .await?
            .ok_or_else(|| Stop::Fail(format!("transcript version {version} is gone")))?;
        self.rescore(m.id, &t).await?;
        let words: Vec<Word> = t
            .words
            .clone()
            .and_then(|w| serde_json::from_value(w).ok())
            .unwrap_or_default();
        let roles = roles_of(&m);
        let separated = m.channels.unwrap_or(1) > 1;
        let turns = turns::build_turns(&words, &roles, separated);
        let input = turns::metrics_input(&words, &turns, &roles, separated);
        let metrics =
            crate::conversation::compute(&input, self.thresholds.dead_air_ms.round() as i64);
        let metrics_json = serde_json::to_value(&metrics).unwrap_or_default();
        if m.attached != 0 {
            self.must(c, "conversation_metrics = ?", vec![metrics_json.into()])
                .await?;
            return Ok(());
        }
        let seq = m.derivation_seq + 1;
        let mut derivations = m
            .derivations
            .clone()
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default();
        derivations.push(serde_json::json!({"seq": seq, "transcript_version": version, "channel_roles": roles, "at": Utc::now()}));
        self.must(
            c,
            "derivation_seq = ?, derivations = ?",
            vec![seq.into(), serde_json::Value::Array(derivations).into()],
        )
        .await?;
        if let Some(s) = m.session_id {
            // A re-derivation: the turns of the earlier one go (this one may have fewer).
            self.db
                .execute_raw(stmt(
                    self.backend(),
                    "DELETE FROM conversation_turns WHERE session_id = ? AND report_seq < ?",
                    [s.into(), seq.into()],
                ))
                .await?;
            self.row_cache.remove(&m.call_id);
        }
        let report = report_of(&m, &t, &turns, seq);
        let entry = DecodedEntry {
            entry_id: format!("recording:{}:{seq}", m.id.simple()),
            report,
            fields: Default::default(),
        };
        let summary = self.ingestor.ingest(&[entry]).await.map_err(|e| {
            if e.is_storage_outage() {
                Stop::Retry(e.to_string())
            } else {
                match e {
                    crate::ingest::IngestError::Database(d) => Stop::Db(d),
                    other => Stop::Retry(other.to_string()),
                }
            }
        })?;
        if let Some(hub) = &self.live {
            hub.enqueue(summary.live_events);
        }
        self.announce(&summary.session_ids).await;
        let session = cs::Entity::find()
            .filter(cs::Column::CallId.eq(m.call_id.as_str()))
            .filter(cs::Column::TenantId.eq(m.tenant_id.as_str()))
            .one(&self.db)
            .await?
            .map(|s| s.id);
        self.must(
            c,
            "conversation_metrics = ?, session_id = COALESCE(?, session_id)",
            vec![metrics_json.into(), session.into()],
        )
        .await?;
        info!(recording_id = %m.id, session_id = ?session, turns = turns.len(), seq, "recording analysed");
        Ok(())
    }

    /// Scores every completed version without a WER against the transcript of record `record`.
    async fn rescore(&self, id: Uuid, record: &rt::Model) -> Result<(), Stop> {
        let Some(reference) = record.transcript.clone() else {
            return Ok(());
        };
        let unscored: Vec<rt::Model> = rt::Entity::find()
            .filter(rt::Column::RecordingId.eq(id))
            .filter(rt::Column::Status.eq("completed"))
            .filter(rt::Column::WerVsRecord.is_null())
            .all(&self.db)
            .await?;
        for v in unscored {
            let wer = if v.version == record.version {
                Some(0.0)
            } else {
                let (r, h, l) = (
                    reference.clone(),
                    v.transcript.clone().unwrap_or_default(),
                    record.language.clone(),
                );
                tokio::task::spawn_blocking(move || super::store::wer_between(&r, &h, l.as_deref()))
                    .await
                    .ok()
                    .flatten()
            };
            self.db
                .execute_raw(stmt(
                    self.backend(),
                    "UPDATE recording_transcripts SET wer_vs_record = ? WHERE recording_id = ? AND version = ?",
                    [wer.into(), id.into(), v.version.into()],
                ))
                .await?;
        }
        Ok(())
    }

    async fn announce(&self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        if let Ok(mut conn) = self.broker.conn().await {
            crate::ingest::updates::announce(&mut conn, &self.updates_channel, ids).await;
        }
    }

    /// Claims and runs recordings until none is due (tests, the CLI).
    pub async fn process_available(&self) -> Result<Vec<RunResult>, DbErr> {
        let mut out = Vec::new();
        loop {
            let claims = self.claim(self.recordings.settings.concurrency).await?;
            if claims.is_empty() {
                return Ok(out);
            }
            let runs = claims.iter().map(|c| self.run(c));
            for r in futures::future::join_all(runs).await {
                out.push(r?);
            }
        }
    }

    /// Runs until `shutdown`, `concurrency` recordings at once (the shared pool runner); runs in
    /// flight at shutdown are stopped and their recordings handed back at once (not after their
    /// lease).
    pub async fn run_until(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = self.recordings.settings.poll;
        crate::background::run_pool(
            self,
            crate::background::PoolSchedule {
                name: "recording worker",
                poll,
                max_backoff: poll.max(Duration::from_secs(5)),
                on_stop: crate::background::OnStop::Abort,
            },
            shutdown,
        )
        .await;
    }
}

impl crate::background::Work for Worker {
    type Claim = Claim;
    type Error = DbErr;

    fn limit(&self) -> usize {
        self.recordings.settings.concurrency
    }

    async fn claim(&self, n: usize) -> Result<Vec<Claim>, DbErr> {
        Worker::claim(self, n).await
    }

    async fn run(self: Arc<Self>, c: Claim) {
        match Worker::run(&self, &c).await {
            Ok(r) => tracing::debug!(recording_id = %c.id, result = ?r, "recording run ended"),
            Err(e) => {
                warn!(recording_id = %c.id, error = %e, "recording run hit a database error; it runs again after its lease")
            }
        }
    }

    async fn hand_back(&self, c: &Claim) {
        if let Err(e) = self
            .fenced(
                c,
                &format!("attempts = attempts - 1, {}", crate::lease::CLEAR_CLAIM),
                vec![],
            )
            .await
        {
            warn!(recording_id = %c.id, error = %e, "cannot hand a recording back; it runs again after its lease");
        }
    }
}

fn fetch_error(e: reqwest::Error) -> Stop {
    let builder = e.is_builder();
    let msg = crate::stt::error_chain(&e.without_url());
    if builder || msg.contains("resolves to") {
        Stop::Fail(format!("cannot fetch the recording: {msg}"))
    } else {
        Stop::Retry(format!("cannot fetch the recording: {msg}"))
    }
}

fn header_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The final report a recording's transcript of record makes.
pub fn report_of(m: &rec::Model, t: &rt::Model, turns: &[turns::Turn], seq: i64) -> SessionReport {
    let started_at = m.started_at.unwrap_or(m.created_at);
    let duration_ms = m
        .duration_ms
        .unwrap_or_else(|| turns.iter().map(|t| t.end_ms).max().unwrap_or(0));
    SessionReport {
        schema_version: 1,
        report_type: ReportType::Final,
        seq,
        call_id: m.call_id.clone(),
        room_id: None,
        job_id: None,
        tenant_id: m.tenant_id.clone(),
        agent_id: m.agent_id.clone(),
        channel_type: Some("recording".into()),
        pipeline: Pipeline {
            stt: Component {
                provider: Some(t.provider.clone()),
                model: t.model.clone(),
            },
            ..Default::default()
        },
        started_at,
        ended_at: Some(started_at + chrono::Duration::milliseconds(duration_ms)),
        duration_seconds: Some(duration_ms as f64 / 1000.0),
        outcome: Default::default(),
        turns: turns
            .iter()
            .take(5000)
            .enumerate()
            .map(|(i, t)| ReportTurn {
                index: i as i64,
                role: if t.role == crate::conversation::AGENT {
                    Role::Assistant
                } else {
                    Role::User
                },
                content: t.text.clone(),
                start_ms: Some(t.start_ms),
                end_ms: Some(t.end_ms),
                interrupted: None,
                stt_confidence: t.confidence,
                transcription_delay_ms: None,
                end_of_turn_delay_ms: None,
                llm_ttft_ms: None,
                tts_ttfb_ms: None,
                e2e_latency_ms: None,
                tool_calls: None,
            })
            .collect(),
        events: Vec::new(),
        audio_segments: Vec::new(),
    }
}
