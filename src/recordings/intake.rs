//! Accepting recordings: an upload (already spooled to disk with its sha256), a URL to fetch, or
//! Twilio's RecordingStatusCallback (signature checked against the account's auth token). Each becomes
//! one `recordings` row queued for the pipeline; the same bytes twice for one tenant, and the same
//! Twilio recording twice, are one recording.

use super::spool::Spooled;
use super::{Error, Recordings, Status, twilio, work};
use crate::storage::AudioStore;
use chrono::{DateTime, Utc};
use entity::{call_sessions as cs, recordings as rec};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::info;
use utoipa::ToSchema;
use uuid::Uuid;

/// No control characters.
pub const NOCTL: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// An ISO-639 language code, or empty.
pub const LANG: &str = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$";
/// A recording provider, or empty for the default.
pub const PROVIDER: &str = r"^$|^(deepgram|assemblyai|gladia|elevenlabs|openai)$";
/// An http(s) URL with a host name.
pub const URL: &str = r"^https?://[A-Za-z]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?(\.[A-Za-z]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~%-]*)*$";

/// A role in the channel map (`customer`, `agent`, or a name of your own).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 32, pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$", example = "customer")]
pub struct RoleName(pub String);

fn role_names(v: &Option<Vec<RoleName>>) -> Option<Vec<String>> {
    v.as_ref()
        .filter(|r| !r.is_empty())
        .map(|r| r.iter().map(|n| n.0.clone()).collect())
}

/// What the caller says about a recording (the `metadata` part of an upload, or beside `url`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"call_id": "call-2026-12-03-0042", "tenant_id": "acme", "agent_id": "support-line",
    "started_at": "2026-12-03T09:58:00Z", "channels": ["customer", "agent"], "language": "en", "provider": "deepgram"}))]
pub struct Metadata {
    /// The call's id (a session with this id gets the recording as its full-call audio); generated
    /// when absent.
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub call_id: Option<String>,
    /// Defaults to the API key's tenant (`default` for an every-tenant key).
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub tenant_id: Option<String>,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub agent_id: Option<String>,
    /// When the call started (default: when the recording arrived).
    pub started_at: Option<DateTime<Utc>>,
    /// Channel → role, e.g. `["customer","agent"]` (default). On a one-channel file, the roles of the
    /// speakers in the order they are first heard.
    #[schema(max_items = 8)]
    pub channels: Option<Vec<RoleName>>,
    /// ISO-639-1 hint (`en`); absent lets the provider detect it.
    #[schema(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
    /// `deepgram`, `assemblyai`, `gladia`, `elevenlabs` or `openai` (default `INSIGHTS_RECORDING_PROVIDER`).
    #[schema(pattern = r"^$|^(deepgram|assemblyai|gladia|elevenlabs|openai)$")]
    pub provider: Option<String>,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub model: Option<String>,
}

/// `POST /api/v1/recordings` as JSON: a URL the service fetches, and the same metadata.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://recordings.example.com/2026/12/03/call-0042.wav", "tenant_id": "acme", "channels": ["agent", "customer"]}))]
pub struct UrlImport {
    /// `https://…` (or `http://`): fetched behind the SSRF guard, at most `INSIGHTS_RECORDING_MAX_BYTES`.
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[A-Za-z]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?(\.[A-Za-z]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~%-]*)*$"
    )]
    pub url: String,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub call_id: Option<String>,
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub tenant_id: Option<String>,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub agent_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    #[schema(max_items = 8)]
    pub channels: Option<Vec<RoleName>>,
    #[schema(pattern = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
    pub language: Option<String>,
    #[schema(pattern = r"^$|^(deepgram|assemblyai|gladia|elevenlabs|openai)$")]
    pub provider: Option<String>,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub model: Option<String>,
}

impl UrlImport {
    pub fn split(self) -> (String, Metadata) {
        (
            self.url,
            Metadata {
                call_id: self.call_id,
                tenant_id: self.tenant_id,
                agent_id: self.agent_id,
                started_at: self.started_at,
                channels: self.channels,
                language: self.language,
                provider: self.provider,
                model: self.model,
            },
        )
    }
}

/// The answer to an accepted recording.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"recording_id": "0190f1a2-3b4c-7d5e-8f60-718293a4b5c6", "session_id": null, "status": "queued", "duplicate": false}))]
pub struct Accepted {
    pub recording_id: Uuid,
    /// Known at once when the call already has a session; otherwise once the recording is analysed.
    pub session_id: Option<Uuid>,
    pub status: String,
    /// True when these bytes (or this Twilio recording) were already here: the answer is that one.
    pub duplicate: bool,
}

fn accepted(m: &rec::Model, duplicate: bool) -> Accepted {
    Accepted {
        recording_id: m.id,
        session_id: m.session_id,
        status: m.status.to_string(),
        duplicate,
    }
}

/// Checked metadata, ready for a row.
struct Checked {
    tenant: String,
    call_id: Option<String>,
    agent_id: Option<String>,
    started_at: Option<DateTime<Utc>>,
    roles: Vec<String>,
    language: Option<String>,
    provider: crate::stt::ProviderId,
    model: Option<String>,
}

fn check_text(
    param: &'static str,
    v: &Option<String>,
    max: usize,
) -> Result<Option<String>, Error> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > max => Err(Error::invalid(
            param,
            format!("{param} is longer than {max} characters"),
        )),
        Some(s) if s.chars().any(char::is_control) => Err(Error::invalid(
            param,
            format!("{param} holds control characters"),
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// Checks a channel → role map (1–8 roles, each 1–32 characters).
pub fn check_roles(roles: &[String]) -> Result<Vec<String>, Error> {
    if roles.is_empty() || roles.len() > super::decode::MAX_CHANNELS {
        return Err(Error::invalid(
            "channels",
            "channels needs 1 to 8 roles, e.g. [\"customer\",\"agent\"]",
        ));
    }
    roles
        .iter()
        .map(|r| {
            let r = r.trim();
            let ok = r.len() <= 32
                && r.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                Err(Error::invalid(
                    "channels",
                    format!("role {r:?} must be a letter then up to 31 letters, digits, _ or - (customer, agent …)"),
                ))
            } else {
                Ok(r.to_ascii_lowercase())
            }
        })
        .collect()
}

/// The tenant a request may write: its key's, or the one it names with an every-tenant key.
pub fn tenant_for(key_tenant: Option<&str>, requested: Option<&str>) -> Result<String, Error> {
    let requested = requested.map(str::trim).filter(|t| !t.is_empty());
    match (key_tenant, requested) {
        (Some(k), Some(r)) if k != r => Err(Error::invalid(
            "tenant_id",
            format!("this API key writes tenant {k:?}, not {r:?}"),
        )),
        (Some(k), _) => Ok(k.to_string()),
        (None, Some(r)) if r.len() > 64 || r.chars().any(char::is_control) => Err(Error::invalid(
            "tenant_id",
            "tenant_id must be 1–64 printable characters",
        )),
        (None, Some(r)) => Ok(r.to_string()),
        (None, None) => Ok("default".to_string()),
    }
}

fn check(
    r: &Recordings,
    key_tenant: Option<&str>,
    m: &Metadata,
    default_roles: Option<&[String]>,
) -> Result<Checked, Error> {
    let roles = match (&role_names(&m.channels), default_roles) {
        (Some(c), _) => check_roles(c)?,
        (None, Some(d)) => check_roles(d)?,
        (None, None) => super::default_roles(),
    };
    let language = check_text("language", &m.language, 16)?.map(|l| l.to_ascii_lowercase());
    if let Some(l) = &language
        && !(l.len() >= 2 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(Error::invalid(
            "language",
            format!("language {l:?} is not a language code such as en or pt-BR"),
        ));
    }
    Ok(Checked {
        tenant: tenant_for(key_tenant, m.tenant_id.as_deref())?,
        call_id: check_text("call_id", &m.call_id, 128)?,
        agent_id: check_text("agent_id", &m.agent_id, 128)?,
        started_at: m.started_at,
        roles,
        language,
        provider: r.pick_provider(m.provider.as_deref())?,
        model: check_text("model", &m.model, 128)?,
    })
}

/// The file extension a recording is stored under (from its content type, else its name).
pub fn extension_of(content_type: Option<&str>, file_name: Option<&str>) -> String {
    let from_type = content_type.and_then(|t| {
        let t = t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(match t.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
            "audio/mpeg" | "audio/mp3" => "mp3",
            "audio/flac" | "audio/x-flac" => "flac",
            "audio/ogg" | "application/ogg" | "audio/opus" => "ogg",
            _ => return None,
        })
    });
    let from_name = file_name.and_then(|n| {
        let ext = n.rsplit_once('.')?.1.to_ascii_lowercase();
        ["wav", "mp3", "flac", "ogg", "oga", "opus"]
            .contains(&ext.as_str())
            .then_some(ext)
    });
    from_type
        .map(str::to_string)
        .or(from_name)
        .unwrap_or_else(|| "bin".into())
}

/// The content type stored with an extension.
pub fn content_type_of(ext: &str) -> &'static str {
    match ext {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

pub fn object_key(prefix: &str, tenant: &str, id: Uuid, ext: &str) -> String {
    let tenant = crate::text::percent_encode(tenant, |i, b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0)
    });
    format!("{prefix}recordings/{tenant}/{}.{ext}", id.simple())
}

/// The session an agent reported for this call, when there is one (the recording attaches to it).
async fn session_of_call(
    db: &DatabaseConnection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<Uuid>, Error> {
    Ok(cs::Entity::find()
        .filter(cs::Column::CallId.eq(call_id))
        .filter(cs::Column::TenantId.eq(tenant))
        .one(db)
        .await?
        .map(|s| s.id))
}

struct NewRow {
    id: Uuid,
    c: Checked,
    source: &'static str,
    external_id: Option<String>,
    source_url: Option<String>,
    file_name: Option<String>,
    stored: Option<(String, u64, String, String)>,
}

async fn insert(db: &DatabaseConnection, n: NewRow) -> Result<Option<rec::Model>, Error> {
    let now = Utc::now();
    let call_id =
        n.c.call_id
            .clone()
            .unwrap_or_else(|| format!("rec-{}", n.id.simple()));
    let session = session_of_call(db, &n.c.tenant, &call_id).await?;
    let (sha, size, content_type, key) = match n.stored {
        Some((sha, size, ct, key)) => (Some(sha), Some(size as i64), Some(ct), Some(key)),
        None => (None, None, None, None),
    };
    let am = rec::ActiveModel {
        id: Set(n.id),
        tenant_id: Set(n.c.tenant.clone()),
        call_id: Set(call_id),
        agent_id: Set(n.c.agent_id.clone()),
        session_id: Set(session),
        source: Set(n.source.to_string()),
        external_id: Set(n.external_id),
        source_url: Set(n.source_url),
        file_name: Set(n.file_name),
        sha256: Set(sha),
        size_bytes: Set(size),
        content_type: Set(content_type),
        object_key: Set(key),
        codec: Set(None),
        channels: Set(None),
        sample_rate: Set(None),
        duration_ms: Set(None),
        waveform: Set(None),
        channel_roles: Set(serde_json::json!(n.c.roles)),
        language: Set(n.c.language.clone()),
        provider: Set(n.c.provider.as_str().to_string()),
        model: Set(n.c.model.clone()),
        transcript_version: Set(None),
        conversation_metrics: Set(None),
        attached: Set(i32::from(session.is_some())),
        duplicate_of: Set(None),
        derivation_seq: Set(0),
        derivations: Set(None),
        status: Set(Status::Queued),
        error: Set(None),
        work: Set(Some(work::PROCESS.into())),
        attempts: Set(0),
        claimed_by: Set(None),
        claim_token: Set(None),
        lease_until: Set(None),
        available_at: Set(now),
        started_at: Set(n.c.started_at),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
    };
    let r = rec::Entity::insert(am)
        .on_conflict(
            sea_orm::sea_query::OnConflict::new()
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    if r == 0 {
        return Ok(None);
    }
    Ok(rec::Entity::find_by_id(n.id).one(db).await?)
}

async fn by_sha(
    db: &DatabaseConnection,
    tenant: &str,
    sha: &str,
) -> Result<Option<rec::Model>, Error> {
    Ok(rec::Entity::find()
        .filter(rec::Column::TenantId.eq(tenant))
        .filter(rec::Column::Sha256.eq(sha))
        .one(db)
        .await?)
}

/// An uploaded file (spooled, hashed): stored untouched, then queued.
#[allow(clippy::too_many_arguments)]
pub async fn accept_upload(
    r: &Recordings,
    db: &DatabaseConnection,
    store: &Arc<dyn AudioStore>,
    key_tenant: Option<&str>,
    meta: &Metadata,
    file: Spooled,
    file_name: Option<String>,
    content_type: Option<String>,
) -> Result<Accepted, Error> {
    let c = check(r, key_tenant, meta, None)?;
    if file.size == 0 {
        return Err(Error::invalid("file", "the file part is empty"));
    }
    if let Some(existing) = by_sha(db, &c.tenant, &file.sha256).await? {
        return Ok(accepted(&existing, true));
    }
    let id = Uuid::now_v7();
    let ext = extension_of(content_type.as_deref(), file_name.as_deref());
    let stored_type = content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| t.starts_with("audio/") || t == "application/ogg")
        .unwrap_or_else(|| content_type_of(&ext).to_string());
    let key = object_key(&r.settings.key_prefix, &c.tenant, id, &ext);
    super::store_file(store.as_ref(), &key, &file.path, &stored_type).await?;
    let tenant = c.tenant.clone();
    let row = NewRow {
        id,
        c,
        source: "upload",
        external_id: None,
        source_url: None,
        file_name,
        stored: Some((file.sha256.clone(), file.size, stored_type, key.clone())),
    };
    match insert(db, row).await? {
        Some(m) => {
            info!(recording_id = %m.id, tenant_id = %m.tenant_id, size_bytes = file.size, "recording uploaded");
            Ok(accepted(&m, false))
        }
        // The same bytes arrived at the same moment through another request: that one is it.
        None => {
            let _ = store.delete(&key).await;
            match by_sha(db, &tenant, &file.sha256).await? {
                Some(existing) => Ok(accepted(&existing, true)),
                None => Err(Error::Conflict(
                    "the recording could not be stored; retry".into(),
                )),
            }
        }
    }
}

/// A URL to fetch: queued; the worker fetches it (SSRF-guarded, size-limited).
pub async fn accept_url(
    r: &Recordings,
    db: &DatabaseConnection,
    key_tenant: Option<&str>,
    url: &str,
    meta: &Metadata,
) -> Result<Accepted, Error> {
    let c = check(r, key_tenant, meta, None)?;
    let url = url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid("url", format!("url is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::invalid(
            "url",
            "url must be an http:// or https:// URL with a host",
        ));
    }
    if url.len() > 2048 {
        return Err(Error::invalid("url", "url is longer than 2048 characters"));
    }
    r.check_url_target(&parsed)
        .await
        .map_err(|e| Error::invalid("url", e))?;
    let file_name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty());
    let id = Uuid::now_v7();
    let row = NewRow {
        id,
        c,
        source: "url",
        external_id: None,
        source_url: Some(url.to_string()),
        file_name,
        stored: None,
    };
    let m = insert(db, row)
        .await?
        .ok_or_else(|| Error::Conflict("the recording could not be queued; retry".into()))?;
    info!(recording_id = %m.id, tenant_id = %m.tenant_id, "recording URL queued");
    Ok(accepted(&m, false))
}

/// What became of a Twilio callback.
#[derive(Debug, Clone)]
pub enum TwilioOutcome {
    /// Not `completed`: logged, nothing to do.
    Ignored {
        status: String,
    },
    Accepted(Accepted),
}

/// Twilio's RecordingStatusCallback: `url` is the public URL Twilio called (configured base + path),
/// `params` the form fields. A signature that does not verify stores nothing.
pub async fn accept_twilio(
    r: &Recordings,
    db: &DatabaseConnection,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<TwilioOutcome, Error> {
    let account_sid = params
        .iter()
        .find(|(k, _)| k == "AccountSid")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some(account) = r.twilio.get(account_sid) else {
        return Err(Error::Forbidden(format!(
            "unknown Twilio account {account_sid:?} (INSIGHTS_TWILIO_ACCOUNTS_FILE)"
        )));
    };
    if !twilio::verify(&account.auth_token, url, params, signature.unwrap_or("")) {
        return Err(Error::Forbidden(
            "X-Twilio-Signature does not verify for this URL and body (is INSIGHTS_PUBLIC_BASE_URL the URL Twilio calls?)".into(),
        ));
    }
    let cb = twilio::Callback::from_params(params).map_err(|e| Error::invalid("body", e))?;
    if cb.status != "completed" {
        info!(recording_sid = %cb.recording_sid, call_sid = %cb.call_sid, status = %cb.status,
            error_code = cb.error_code.as_deref().unwrap_or("-"), "Twilio recording callback: not completed, nothing to fetch");
        return Ok(TwilioOutcome::Ignored { status: cb.status });
    }
    let expected_prefix = format!("{}/", r.settings.twilio_api_base_url);
    let media = rebase_twilio_url(&cb.recording_url, &r.settings.twilio_api_base_url);
    if !media.starts_with(&expected_prefix) {
        return Err(Error::invalid(
            "RecordingUrl",
            "RecordingUrl is not a Twilio API URL",
        ));
    }
    if let Some(existing) = rec::Entity::find()
        .filter(rec::Column::TenantId.eq(account.tenant_id.as_str()))
        .filter(rec::Column::ExternalId.eq(cb.recording_sid.as_str()))
        .one(db)
        .await?
    {
        return Ok(TwilioOutcome::Accepted(accepted(&existing, true)));
    }
    let meta = Metadata {
        call_id: Some(cb.call_sid.clone()),
        started_at: cb.start_time,
        ..Default::default()
    };
    let c = check(
        r,
        Some(&account.tenant_id),
        &meta,
        account.channels.as_deref(),
    )?;
    let id = Uuid::now_v7();
    let row = NewRow {
        id,
        c,
        source: "twilio",
        external_id: Some(cb.recording_sid.clone()),
        source_url: Some(media),
        file_name: Some(format!("{}.wav", cb.recording_sid)),
        stored: None,
    };
    match insert(db, row).await? {
        Some(m) => {
            info!(recording_id = %m.id, recording_sid = %cb.recording_sid, call_sid = %cb.call_sid, "Twilio recording queued");
            Ok(TwilioOutcome::Accepted(accepted(&m, false)))
        }
        None => {
            let existing = rec::Entity::find()
                .filter(rec::Column::TenantId.eq(account.tenant_id.as_str()))
                .filter(rec::Column::ExternalId.eq(cb.recording_sid.as_str()))
                .one(db)
                .await?
                .ok_or_else(|| {
                    Error::Conflict("the recording could not be queued; retry".into())
                })?;
            Ok(TwilioOutcome::Accepted(accepted(&existing, true)))
        }
    }
}

/// The media URL on the configured Twilio origin: Twilio's own URL keeps its path, and its origin is
/// replaced by `INSIGHTS_TWILIO_API_BASE_URL` only when that is the default one or the URL already
/// points there (a test server stands in for api.twilio.com).
fn rebase_twilio_url(recording_url: &str, base: &str) -> String {
    const TWILIO: &str = "https://api.twilio.com";
    match recording_url.strip_prefix(TWILIO) {
        Some(path) if path.starts_with('/') => format!("{base}{path}"),
        _ => recording_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_come_from_the_key_or_the_request() {
        assert_eq!(tenant_for(Some("acme"), None).unwrap(), "acme");
        assert_eq!(tenant_for(Some("acme"), Some("acme")).unwrap(), "acme");
        assert!(tenant_for(Some("acme"), Some("globex")).is_err());
        assert_eq!(tenant_for(None, Some("globex")).unwrap(), "globex");
        assert_eq!(tenant_for(None, None).unwrap(), "default");
    }

    #[test]
    fn extensions_and_keys() {
        assert_eq!(extension_of(Some("audio/mpeg"), Some("x.wav")), "mp3");
        assert_eq!(
            extension_of(Some("application/octet-stream"), Some("call.FLAC")),
            "flac"
        );
        assert_eq!(extension_of(None, None), "bin");
        let id = Uuid::nil();
        assert_eq!(
            object_key("p/", "a/b", id, "wav"),
            "p/recordings/a%2Fb/00000000000000000000000000000000.wav"
        );
        assert!(check_roles(&[]).is_err());
        assert_eq!(check_roles(&["Agent".into()]).unwrap(), vec!["agent"]);
    }

    #[test]
    fn twilio_media_stays_on_the_configured_origin() {
        let u = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1";
        assert_eq!(
            rebase_twilio_url(u, "http://127.0.0.1:9000"),
            "http://127.0.0.1:9000/2010-04-01/Accounts/AC1/Recordings/RE1"
        );
        assert_eq!(
            rebase_twilio_url("https://evil.example/x", "https://api.twilio.com"),
            "https://evil.example/x"
        );
    }
}
