//! Recordings: any call recording (an upload, a URL, Twilio's recording callback) becomes an analysed
//! session like an agent's report — original bytes stored untouched, decoded per channel, transcribed
//! with speakers, turned into turns and conversation metrics, diagnosed and handed to ingest, with every
//! transcript kept as a version that can become the transcript of record.
//!
//! `intake` accepts recordings, `pipeline` does the durable work on any replica, `store` holds the
//! queries every caller shares (API, UI, CLI, worker), `decode`, `transcribe`, `turns` and `twilio` are
//! the pure parts.

pub mod decode;
pub mod intake;
pub mod pipeline;
pub mod spool;
pub mod store;
pub mod transcribe;
pub mod turns;
pub mod twilio;

use crate::stt::{ProviderId, SttConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A recording's progress (`recordings.status`).
pub use entity::recordings::Status;

/// What is left to do on a recording (`recordings.work`).
pub mod work {
    /// Everything not done yet: fetch, decode, transcribe, derive.
    pub const PROCESS: &str = "process";
    /// Queued transcript versions only.
    pub const TRANSCRIBE: &str = "transcribe";
    /// Turns, metrics, diagnosis and analytics again (roles or transcript of record changed).
    pub const DERIVE: &str = "derive";
}

/// Stores a spooled file, retrying a store that failed to answer (a dropped pooled connection) twice
/// with a short pause before giving up.
pub async fn store_file(
    store: &dyn crate::storage::AudioStore,
    key: &str,
    path: &std::path::Path,
    content_type: &str,
) -> Result<(), crate::storage::StorageError> {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
        match store.put_file(key, path, content_type).await {
            Ok(()) => return Ok(()),
            Err(e @ crate::storage::StorageError::Unavailable(_)) => {
                tracing::warn!(error = %e, attempt, "storing a recording failed; trying again");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| crate::storage::StorageError::Unavailable("no attempt made".into())))
}

/// The channel map used when neither the request nor the Twilio account gives one.
pub fn default_roles() -> Vec<String> {
    vec!["customer".into(), "agent".into()]
}

/// Why a recording request cannot be done: the domain's one error type.
pub use crate::error::Error;

/// Settings (`INSIGHTS_RECORDING_*`, `INSIGHTS_TWILIO_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_provider: ProviderId,
    pub max_bytes: u64,
    pub timeout: Duration,
    pub concurrency: usize,
    pub lease: Duration,
    pub poll: Duration,
    /// Where uploads and fetched media are spooled before the store has them.
    pub spool_dir: PathBuf,
    /// Twilio media only from here.
    pub twilio_api_base_url: String,
    /// Prefix of object keys (`INSIGHTS_S3_PREFIX`).
    pub key_prefix: String,
    /// The public URL Twilio calls (`INSIGHTS_PUBLIC_BASE_URL`), for the signature.
    pub public_base_url: Option<String>,
    /// Back-off of Twilio's 404 (media not ready yet): first wait, attempts.
    pub media_retry: (Duration, u32),
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<Self> {
        let default_provider = ProviderId::parse(&c.recording_provider)
            .filter(|p| transcribe::PROVIDERS.contains(p))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "INSIGHTS_RECORDING_PROVIDER={:?}: expected deepgram, assemblyai, gladia, elevenlabs or openai",
                    c.recording_provider
                )
            })?;
        let base = c
            .twilio_api_base_url
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!(
                "INSIGHTS_TWILIO_API_BASE_URL={base:?}: expected an http:// or https:// URL"
            );
        }
        Ok(Settings {
            default_provider,
            max_bytes: c.recording_max_bytes.max(1),
            timeout: Duration::from_millis(c.recording_timeout_ms.max(1000)),
            concurrency: c.recording_concurrency.max(1),
            lease: Duration::from_millis(c.recording_lease_ms.max(200)),
            poll: Duration::from_millis(c.recording_poll_ms.max(10)),
            spool_dir: c.data_dir.join("recordings-spool"),
            twilio_api_base_url: base,
            key_prefix: c.s3_prefix.clone(),
            public_base_url: c
                .public_base_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string()),
            media_retry: (Duration::from_millis(c.twilio_media_retry_ms.max(1)), 6),
        })
    }
}

/// The recording capability as the process holds it: settings, a transcription client per configured
/// provider, the Twilio accounts and the HTTP clients that fetch media.
#[derive(Debug)]
pub struct Recordings {
    pub settings: Settings,
    transcribers: BTreeMap<ProviderId, transcribe::Transcriber>,
    pub twilio: twilio::Accounts,
    /// Twilio media (its configured origin only, trusted).
    pub(crate) media_client: reqwest::Client,
    /// URL imports, behind the same SSRF guard as webhooks.
    pub(crate) url_client: reqwest::Client,
    /// `INSIGHTS_WEBHOOK_ALLOW_PRIVATE`: URL imports may target private addresses too.
    pub(crate) allow_private_urls: bool,
}

impl Recordings {
    pub fn build(
        settings: Settings,
        stt: &SttConfig,
        twilio: twilio::Accounts,
        allow_private_urls: bool,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("call-insights/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let transcribers = stt
            .providers
            .iter()
            .filter(|p| transcribe::PROVIDERS.contains(&p.id))
            .map(|p| {
                (
                    p.id,
                    transcribe::Transcriber::new(client.clone(), p, settings.timeout),
                )
            })
            .collect();
        let media_client = reqwest::Client::builder()
            .user_agent(concat!("call-insights/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let url_client = crate::webhooks::ssrf::client(allow_private_urls, settings.timeout)?;
        Ok(Recordings {
            settings,
            transcribers,
            twilio,
            media_client,
            url_client,
            allow_private_urls,
        })
    }

    /// Refuses a URL whose host is (or resolves to) a private, loopback, link-local or metadata
    /// address, unless private targets are allowed. The client's resolver checks names again at
    /// connect time; an address written in the URL is only checked here.
    pub async fn check_url_target(&self, url: &reqwest::Url) -> Result<(), String> {
        if self.allow_private_urls {
            return Ok(());
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        crate::webhooks::ssrf::check_host(host, port)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string().replace("webhook targets", "recording URLs"))
    }

    pub fn transcriber(&self, p: ProviderId) -> Option<&transcribe::Transcriber> {
        self.transcribers.get(&p)
    }

    /// The providers with a key, in the order of `transcribe::PROVIDERS`.
    pub fn configured(&self) -> Vec<ProviderId> {
        transcribe::PROVIDERS
            .into_iter()
            .filter(|p| self.transcribers.contains_key(p))
            .collect()
    }

    /// The provider a request names (or the default), checked to be usable.
    pub fn pick_provider(&self, requested: Option<&str>) -> Result<ProviderId, Error> {
        let p = match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => self.settings.default_provider,
            Some(name) => ProviderId::parse(name)
                .filter(|p| transcribe::PROVIDERS.contains(p))
                .ok_or_else(|| {
                    Error::invalid(
                        "provider",
                        format!("unknown provider {name:?}: expected deepgram, assemblyai, gladia, elevenlabs or openai"),
                    )
                })?,
        };
        if self.transcribers.is_empty() {
            return Err(Error::Unavailable(
                "no recording provider has an API key: set INSIGHTS_DEEPGRAM_API_KEY (or ASSEMBLYAI, GLADIA, ELEVENLABS, OPENAI)".into(),
            ));
        }
        if !self.transcribers.contains_key(&p) {
            let configured: Vec<&str> = self.configured().iter().map(|p| p.as_str()).collect();
            return Err(Error::Conflict(format!(
                "{p} has no API key here (set INSIGHTS_{}_API_KEY); configured: {}",
                p.env_prefix(),
                configured.join(", ")
            )));
        }
        Ok(p)
    }
}
