//! Speech-to-text replay: one `SttProvider` per vendor (Groq, Deepgram, Cartesia, ElevenLabs, Gladia and
//! any OpenAI-compatible server), the HTTP retry policy they share, language-code normalisation, WER
//! with the Whisper normalisers, and loopback fakes of every provider for tests and benchmarks.

mod cartesia;
mod config;
mod deepgram;
mod elevenlabs;
mod gladia;
mod groq;
pub(crate) mod http;
pub mod language;
mod limit;
pub mod normalize;
mod openai_compat;
pub mod wer;

pub use config::{ProviderConfig, SttConfig};
pub use http::{RetryPolicy, error_chain, retry_after};
pub use limit::{Permit, Priority};

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The STT vendors the service can replay audio through.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProviderId {
    Groq,
    Deepgram,
    Cartesia,
    Elevenlabs,
    Gladia,
    /// OpenAI itself or any OpenAI-compatible server (whisper.cpp, speaches, vLLM).
    Openai,
    /// AssemblyAI: transcribes recordings (upload, job, poll); not one of the clip replay providers.
    Assemblyai,
}

impl ProviderId {
    pub const ALL: [ProviderId; 6] = [
        Self::Groq,
        Self::Deepgram,
        Self::Cartesia,
        Self::Elevenlabs,
        Self::Gladia,
        Self::Openai,
    ];

    /// Every provider with settings: the replay providers and those only recordings use.
    pub const CONFIGURABLE: [ProviderId; 7] = [
        Self::Groq,
        Self::Deepgram,
        Self::Cartesia,
        Self::Elevenlabs,
        Self::Gladia,
        Self::Openai,
        Self::Assemblyai,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assemblyai => "assemblyai",
            Self::Groq => "groq",
            Self::Deepgram => "deepgram",
            Self::Cartesia => "cartesia",
            Self::Elevenlabs => "elevenlabs",
            Self::Gladia => "gladia",
            Self::Openai => "openai",
        }
    }

    /// `INSIGHTS_<PREFIX>_API_KEY` and friends.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Self::Assemblyai => "ASSEMBLYAI",
            Self::Groq => "GROQ",
            Self::Deepgram => "DEEPGRAM",
            Self::Cartesia => "CARTESIA",
            Self::Elevenlabs => "ELEVENLABS",
            Self::Gladia => "GLADIA",
            Self::Openai => "OPENAI",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::CONFIGURABLE
            .into_iter()
            .find(|p| p.as_str() == s || (s == "openai_compat" && *p == Self::Openai))
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Assemblyai => "https://api.assemblyai.com",
            Self::Groq => "https://api.groq.com",
            Self::Deepgram => "https://api.deepgram.com",
            Self::Cartesia => "https://api.cartesia.ai",
            Self::Elevenlabs => "https://api.elevenlabs.io",
            Self::Gladia => "https://api.gladia.io",
            Self::Openai => "https://api.openai.com/v1",
        }
    }

    /// Current default model of each provider (override with `INSIGHTS_<PROVIDER>_MODEL`).
    pub fn default_model(self) -> &'static str {
        match self {
            Self::Assemblyai => "universal",
            Self::Groq => "whisper-large-v3-turbo",
            Self::Deepgram => "nova-3",
            Self::Cartesia => "ink-whisper",
            Self::Elevenlabs => "scribe_v2",
            // Gladia v2 pre-recorded picks its model itself; the name is what its docs call it.
            Self::Gladia => "solaria-1",
            Self::Openai => "gpt-4o-transcribe",
        }
    }
}

impl std::fmt::Display for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to transcribe: a mono 16-bit WAV (already at the provider's preferred rate) and the
/// language the call was in.
#[derive(Debug, Clone)]
pub struct SttRequest {
    pub wav: bytes::Bytes,
    /// ISO-639-1 language hint (`en`); `None` lets the provider detect it.
    pub language: Option<String>,
}

/// How a provider's confidence was obtained. Confidences are not comparable across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceSource {
    /// The provider returned a 0–1 confidence for the transcript.
    Reported,
    /// Mean of the provider's per-utterance confidences, weighted by utterance duration.
    UtteranceMean,
    /// `exp` of the duration-weighted mean of Whisper segments' `avg_logprob`.
    SegmentLogprob,
    /// `exp` of the mean token or word log-probability.
    TokenLogprob,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Confidence {
    pub value: f64,
    pub source: ConfidenceSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Word {
    pub word: String,
    /// Seconds from the start of the audio sent.
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub confidence: Option<f64>,
}

/// Gladia's asynchronous phases, kept apart (their sum is `latency_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhaseTimings {
    pub upload_ms: f64,
    /// From the create request to the first poll that is no longer `queued`.
    pub queue_ms: f64,
    /// From then to the first poll that says `done`.
    pub processing_ms: f64,
    pub polls: u32,
}

/// A provider's answer for one audio clip.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Transcription {
    pub provider: ProviderId,
    pub model: String,
    pub transcript: String,
    pub confidence: Option<Confidence>,
    /// ISO-639-1 when the provider said which language it heard.
    pub language: Option<String>,
    pub words: Vec<Word>,
    /// Request start to full response body of the attempt that succeeded (Gladia: upload start to
    /// the first poll that says `done`).
    pub latency_ms: f64,
    /// Request start to response headers of that attempt.
    pub time_to_headers_ms: f64,
    /// Wall time over every attempt and back-off wait.
    pub total_ms: f64,
    pub attempts: u32,
    pub request_id: Option<String>,
    pub phases: Option<PhaseTimings>,
}

/// Why a transcription failed, for the caller to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SttErrorKind {
    /// 401/402/403: the key is wrong, lacks permission or credit.
    Auth,
    /// 429 after the retries allowed.
    RateLimited,
    /// 400/404/413/415/422: the request was refused as sent (not retried).
    BadRequest,
    /// 5xx after the retries allowed, or a job that ended in `error`.
    Server,
    /// No full answer within the provider's timeout.
    Timeout,
    /// The answer did not have the provider's documented shape.
    Malformed,
    /// Connection refused, reset, DNS: the provider could not be reached.
    Network,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, thiserror::Error)]
#[error("{provider} {kind:?}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct SttError {
    pub provider: ProviderId,
    pub kind: SttErrorKind,
    pub status: Option<u16>,
    /// The provider's own message (or ours when it sent none).
    pub message: String,
    pub request_id: Option<String>,
    pub attempts: u32,
    /// What the provider last asked us to wait, when it was rate limiting.
    pub retry_after_ms: Option<u64>,
}

impl SttError {
    pub(crate) fn new(
        provider: ProviderId,
        kind: SttErrorKind,
        message: impl Into<String>,
    ) -> Self {
        SttError {
            provider,
            kind,
            status: None,
            message: message.into(),
            request_id: None,
            attempts: 1,
            retry_after_ms: None,
        }
    }
}

/// One vendor's transcription API.
#[async_trait::async_trait]
pub trait SttProvider: Send + Sync + std::fmt::Debug {
    fn id(&self) -> ProviderId;
    fn model(&self) -> &str;
    /// Sample rate to send; `None` keeps the recording's own rate.
    fn sample_rate(&self) -> Option<u32>;
    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError>;
}

/// A provider with its process-wide concurrency bound: every caller (single analyses, batch jobs)
/// goes through the same limiter, so one big batch cannot monopolise a vendor's quota, and interactive
/// callers are served before batch work waiting for the same provider.
#[derive(Debug, Clone)]
pub struct BoundedProvider {
    pub provider: Arc<dyn SttProvider>,
    limit: Arc<limit::Limiter>,
    concurrency: usize,
}

impl BoundedProvider {
    pub fn new(provider: Arc<dyn SttProvider>, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        BoundedProvider {
            provider,
            limit: limit::Limiter::new(concurrency),
            concurrency,
        }
    }

    pub fn id(&self) -> ProviderId {
        self.provider.id()
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Waits for a slot as an interactive caller, then transcribes. Dropping the future aborts the
    /// HTTP call.
    pub async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        self.transcribe_as(request, Priority::Interactive).await
    }

    /// Waits for a slot at `priority`, then transcribes. Dropping the future aborts the HTTP call.
    pub async fn transcribe_as(
        &self,
        request: &SttRequest,
        priority: Priority,
    ) -> Result<Transcription, SttError> {
        let _permit = self.limit.acquire(priority).await;
        self.provider.transcribe(request).await
    }

    /// Waits for a slot of this provider's process-wide bound at `priority` and holds it until the
    /// permit is dropped (a recording's whole transcription counts as one call).
    pub async fn acquire(&self, priority: Priority) -> Permit {
        self.limit.acquire(priority).await
    }

    /// Free slots and waiting callers (interactive, batch).
    pub fn load(&self) -> (usize, usize, usize) {
        self.limit.snapshot()
    }
}

/// The configured providers, built once at start-up and shared.
#[derive(Debug, Clone, Default)]
pub struct SttProviders {
    providers: Vec<BoundedProvider>,
}

impl SttProviders {
    /// One client per replay provider whose API key is set.
    pub fn from_config(config: &SttConfig) -> anyhow::Result<Self> {
        let client = http::client()?;
        let providers = config
            .providers
            .iter()
            .filter_map(|p| {
                let provider: Arc<dyn SttProvider> = build(p, client.clone())?;
                Some(BoundedProvider::new(provider, p.concurrency))
            })
            .collect();
        Ok(SttProviders { providers })
    }

    pub fn from_providers(providers: Vec<BoundedProvider>) -> Self {
        SttProviders { providers }
    }

    pub fn all(&self) -> &[BoundedProvider] {
        &self.providers
    }

    pub fn get(&self, id: ProviderId) -> Option<&BoundedProvider> {
        self.providers.iter().find(|p| p.id() == id)
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// The replay client of a provider; `None` for providers only recordings use (AssemblyAI).
fn build(p: &ProviderConfig, client: reqwest::Client) -> Option<Arc<dyn SttProvider>> {
    let http = http::Http::new(client, p);
    Some(match p.id {
        ProviderId::Groq => Arc::new(groq::Groq::new(http)),
        ProviderId::Deepgram => Arc::new(deepgram::Deepgram::new(http)),
        ProviderId::Cartesia => Arc::new(cartesia::Cartesia::new(http)),
        ProviderId::Elevenlabs => Arc::new(elevenlabs::ElevenLabs::new(http)),
        ProviderId::Gladia => Arc::new(gladia::Gladia::new(http, p.poll_interval)),
        ProviderId::Openai => Arc::new(openai_compat::OpenAiCompatible::new(http)),
        ProviderId::Assemblyai => return None,
    })
}

/// A `words` array of `{"word", "start", "end"}` objects (Whisper verbose_json, Cartesia).
pub(crate) fn timed_words(words: &serde_json::Value) -> Vec<Word> {
    words
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| {
                    Some(Word {
                        word: w["word"].as_str()?.trim().to_string(),
                        start_s: w["start"].as_f64(),
                        end_s: w["end"].as_f64(),
                        confidence: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Milliseconds of a duration, as the timings are reported.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The message of an error body in any provider's shape (OpenAI's `{"error": {"message"}}` included).
pub fn error_message(body: &[u8]) -> Option<String> {
    http::error_details(body).0
}
