//! Typed settings from `INSIGHTS_*` environment variables (each also a flag). Secrets are never
//! printed: `Debug` redacts them.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct Config {
    /// Redis holding the session stream.
    #[arg(
        long,
        env = "INSIGHTS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// Redis Cluster seed nodes, comma-separated (`redis://host:7000,redis://host:7001`); when set,
    /// the service talks to the cluster instead of `INSIGHTS_REDIS_URL`.
    #[arg(long, env = "INSIGHTS_REDIS_CLUSTER_URLS", global = true)]
    pub redis_cluster_urls: Option<String>,
    /// Partitions of the session stream: 1 is the single `<stream>`; N > 1 (or any N on a Redis
    /// Cluster) is `<stream>:{0}` … `<stream>:{N-1}`, a call on partition crc32(call_id) mod N.
    #[arg(
        long,
        env = "INSIGHTS_STREAM_PARTITIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024),
        global = true
    )]
    pub stream_partitions: u32,
    /// Stream Atlas publishes session reports to.
    #[arg(
        long,
        env = "INSIGHTS_STREAM",
        default_value = "call-insights:sessions",
        global = true
    )]
    pub stream: String,
    /// Dead-letter stream [default: <stream>:dlq].
    #[arg(long, env = "INSIGHTS_DLQ_STREAM", global = true)]
    pub dlq_stream: Option<String>,
    #[arg(
        long,
        env = "INSIGHTS_CONSUMER_GROUP",
        default_value = "call-insights-service",
        global = true
    )]
    pub consumer_group: String,
    /// Consumer name of this process [default: <hostname>-<pid>]. Give each replica a stable name to
    /// have a restarted replica re-read its own pending entries at once.
    #[arg(long, env = "INSIGHTS_CONSUMER_NAME", global = true)]
    pub consumer_name: Option<String>,

    /// Database URL (postgres://… or sqlite://…). Default: SQLite at <data dir>/insights.db, or
    /// PostgreSQL when INSIGHTS_POSTGRES_HOST is set.
    #[arg(
        long,
        env = "INSIGHTS_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    #[arg(long, env = "INSIGHTS_POSTGRES_HOST", global = true)]
    pub postgres_host: Option<String>,
    #[arg(
        long,
        env = "INSIGHTS_POSTGRES_PORT",
        default_value_t = 5432,
        global = true
    )]
    pub postgres_port: u16,
    #[arg(
        long,
        env = "INSIGHTS_POSTGRES_USER",
        default_value = "postgres",
        global = true
    )]
    pub postgres_user: String,
    #[arg(
        long,
        env = "INSIGHTS_POSTGRES_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub postgres_password: Option<String>,
    #[arg(
        long,
        env = "INSIGHTS_POSTGRES_DB",
        default_value = "call_insights",
        global = true
    )]
    pub postgres_db: String,
    /// Pool size of the database connection.
    #[arg(
        long,
        env = "INSIGHTS_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,
    /// PostgreSQL ends a session left idle inside a transaction this long (0 = never), releasing
    /// its row locks: a replica frozen mid-commit (SIGSTOP, a VM pause) cannot block the replica that
    /// claimed its entries. Keep it below `INSIGHTS_CLAIM_IDLE_MS`.
    #[arg(
        long,
        env = "INSIGHTS_DB_IDLE_TRANSACTION_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub db_idle_transaction_timeout_ms: u64,
    /// Time limit of each database step of an ingest batch: a database that does not answer
    /// within it (a blackholed connection never errors) is treated as down: nothing is
    /// acknowledged, and the batch is retried once a ping answers.
    #[arg(
        long,
        env = "INSIGHTS_DB_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub db_timeout_ms: u64,

    /// Folder for the embedded defaults (SQLite database, audio).
    #[arg(long, env = "INSIGHTS_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// Audio folder when no S3 endpoint is set [default: <data dir>/audio].
    #[arg(long, env = "INSIGHTS_AUDIO_DIR", global = true)]
    pub audio_dir: Option<PathBuf>,
    /// S3 endpoint (Garage, MinIO, AWS, Spaces): audio goes to S3 when set.
    #[arg(long, env = "INSIGHTS_S3_ENDPOINT_URL", global = true)]
    pub s3_endpoint_url: Option<String>,
    #[arg(
        long,
        env = "INSIGHTS_S3_BUCKET",
        default_value = "call-insights-audio",
        global = true
    )]
    pub s3_bucket: String,
    #[arg(
        long,
        env = "INSIGHTS_S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub s3_region: String,
    #[arg(
        long,
        env = "INSIGHTS_S3_ACCESS_KEY",
        default_value = "",
        global = true,
        hide_env_values = true
    )]
    pub s3_access_key: String,
    #[arg(
        long,
        env = "INSIGHTS_S3_SECRET_KEY",
        default_value = "",
        global = true,
        hide_env_values = true
    )]
    pub s3_secret_key: String,
    /// Prefix of every object key the service writes (e.g. `prod/`).
    #[arg(long, env = "INSIGHTS_S3_PREFIX", default_value = "", global = true)]
    pub s3_prefix: String,

    /// API keys: `key=tenant` pairs separated by commas (`*` = every tenant). Empty: the API is open.
    #[arg(
        long,
        env = "INSIGHTS_API_KEYS",
        default_value = "",
        global = true,
        hide_env_values = true
    )]
    pub api_keys: String,
    /// Secret of signed audio URLs, UI sessions and live tokens [default: generated once into the database, shared by every replica].
    #[arg(
        long,
        env = "INSIGHTS_URL_SIGNING_KEY",
        global = true,
        hide_env_values = true
    )]
    pub url_signing_key: Option<String>,
    /// Host presigned S3 URLs must carry when the service reaches S3 through an internal one.
    #[arg(long, env = "INSIGHTS_S3_PUBLIC_ENDPOINT_URL", global = true)]
    pub s3_public_endpoint_url: Option<String>,
    /// Base of the service's own URLs in responses [default: http://<Host header>].
    #[arg(long, env = "INSIGHTS_PUBLIC_BASE_URL", global = true)]
    pub public_base_url: Option<String>,
    /// Origins allowed by CORS, comma-separated, or `*` [default: none].
    #[arg(long, env = "INSIGHTS_CORS_ORIGINS", global = true)]
    pub cors_origins: Option<String>,
    /// Time limit of one HTTP request.
    #[arg(
        long,
        env = "INSIGHTS_HTTP_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub http_timeout_ms: u64,
    /// Largest HTTP request body.
    #[arg(long, env = "INSIGHTS_HTTP_BODY_LIMIT_BYTES", default_value_t = 1 << 20, global = true)]
    pub http_body_limit_bytes: usize,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(
        long,
        env = "INSIGHTS_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,

    /// Most entries per read.
    #[arg(
        long,
        env = "INSIGHTS_BATCH_SIZE",
        default_value_t = 250,
        global = true
    )]
    pub batch_size: usize,
    /// Target bytes of entries held per batch (COUNT adapts to entry size).
    #[arg(long, env = "INSIGHTS_BATCH_MEMORY_BYTES", default_value_t = 16 << 20, global = true)]
    pub batch_memory_bytes: usize,
    /// Transactions one consumer runs at once: a large batch is split by call into this many lanes
    /// written concurrently (PostgreSQL; SQLite always writes one at a time).
    #[arg(
        long,
        env = "INSIGHTS_INGEST_LANES",
        default_value_t = 2,
        global = true
    )]
    pub ingest_lanes: usize,
    #[arg(long, env = "INSIGHTS_BLOCK_MS", default_value_t = 2000, global = true)]
    pub block_ms: u64,
    /// Idle time before another consumer's pending entry is claimed.
    #[arg(
        long,
        env = "INSIGHTS_CLAIM_IDLE_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub claim_idle_ms: u64,
    #[arg(
        long,
        env = "INSIGHTS_CLAIM_INTERVAL_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub claim_interval_ms: u64,
    /// Deliveries after which an entry goes to the dead-letter stream.
    #[arg(
        long,
        env = "INSIGHTS_MAX_DELIVERIES",
        default_value_t = 5,
        global = true
    )]
    pub max_deliveries: u64,
    /// Idle time after which a consumer with nothing pending is removed from the group.
    #[arg(
        long,
        env = "INSIGHTS_DEAD_CONSUMER_IDLE_MS",
        default_value_t = 3_600_000,
        global = true
    )]
    pub dead_consumer_idle_ms: u64,
    /// Largest accepted payload (after gunzip).
    #[arg(long, env = "INSIGHTS_MAX_PAYLOAD_BYTES", default_value_t = 32 << 20, global = true)]
    pub max_payload_bytes: usize,
    #[arg(
        long,
        env = "INSIGHTS_DLQ_MAXLEN",
        default_value_t = 100_000,
        global = true
    )]
    pub dlq_maxlen: usize,
    /// Audio segments decoded and uploaded at once.
    #[arg(
        long,
        env = "INSIGHTS_AUDIO_CONCURRENCY",
        default_value_t = 8,
        global = true
    )]
    pub audio_concurrency: usize,
    /// Calls whose committed rows are remembered (fingerprints, ≈5 KB each) so newer reports send only
    /// what changed; 0 disables.
    #[arg(
        long,
        env = "INSIGHTS_ROW_CACHE_CALLS",
        default_value_t = 20_000,
        global = true
    )]
    pub row_cache_calls: usize,
    /// Timeout of one object-store request.
    #[arg(
        long,
        env = "INSIGHTS_S3_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub s3_timeout_ms: u64,
    /// TOML file overriding diagnosis thresholds (keys: see docs/diagnosis.md).
    #[arg(long, env = "INSIGHTS_DIAGNOSIS_CONFIG", global = true)]
    pub diagnosis_config: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "INSIGHTS_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    /// Sessions of batch analysis jobs this process analyses at once (0: it runs none).
    #[arg(
        long,
        env = "INSIGHTS_ANALYSIS_CONCURRENCY",
        default_value_t = 4,
        global = true
    )]
    pub analysis_concurrency: usize,
    /// How long a claimed analysis item stays with its worker without a renewal (renewed every
    /// quarter of it); a crashed worker's items are claimed again after it.
    #[arg(
        long,
        env = "INSIGHTS_ANALYSIS_LEASE_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub analysis_lease_ms: u64,
    /// How often an idle worker looks for queued analysis items (other replicas' jobs).
    #[arg(
        long,
        env = "INSIGHTS_ANALYSIS_POLL_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub analysis_poll_ms: u64,
    /// Archive of reported clips: an S3 endpoint [default: the audio store's].
    #[arg(long, env = "INSIGHTS_ARCHIVE_S3_ENDPOINT_URL", global = true)]
    pub archive_s3_endpoint_url: Option<String>,
    /// Archive bucket [default: the audio bucket, under INSIGHTS_ARCHIVE_S3_PREFIX].
    #[arg(long, env = "INSIGHTS_ARCHIVE_S3_BUCKET", global = true)]
    pub archive_s3_bucket: Option<String>,
    /// [default: INSIGHTS_S3_REGION]
    #[arg(long, env = "INSIGHTS_ARCHIVE_S3_REGION", global = true)]
    pub archive_s3_region: Option<String>,
    /// [default: INSIGHTS_S3_ACCESS_KEY]
    #[arg(
        long,
        env = "INSIGHTS_ARCHIVE_S3_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub archive_s3_access_key: Option<String>,
    /// [default: INSIGHTS_S3_SECRET_KEY]
    #[arg(
        long,
        env = "INSIGHTS_ARCHIVE_S3_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub archive_s3_secret_key: Option<String>,
    /// Key prefix of archived clips.
    #[arg(
        long,
        env = "INSIGHTS_ARCHIVE_S3_PREFIX",
        default_value = "archive/",
        global = true
    )]
    pub archive_s3_prefix: String,
    /// Archive folder when no S3 is configured [default: <data dir>/archive].
    #[arg(long, env = "INSIGHTS_ARCHIVE_DIR", global = true)]
    pub archive_dir: Option<PathBuf>,
    /// Requests per second each API key may make (token bucket); unset: no limit.
    #[arg(long, env = "INSIGHTS_RATE_LIMIT_PER_SECOND", global = true)]
    pub rate_limit_per_second: Option<f64>,
    /// Burst of the rate limit [default: the per-second rate, at least 1].
    #[arg(long, env = "INSIGHTS_RATE_LIMIT_BURST", global = true)]
    pub rate_limit_burst: Option<u32>,
    /// Live monitoring events (`<stream>:events`, `/api/v1/monitor/stream`).
    #[arg(long, env = "INSIGHTS_LIVE", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub live: bool,
    /// A call with no report for this long is reported as ended (`reason: timeout`).
    #[arg(
        long,
        env = "INSIGHTS_ACTIVE_CALL_TIMEOUT_MS",
        default_value_t = 600_000,
        global = true
    )]
    pub active_call_timeout_ms: u64,
    /// Events an SSE client may have queued before it is dropped.
    #[arg(
        long,
        env = "INSIGHTS_MONITOR_CLIENT_BUFFER",
        default_value_t = 1024,
        global = true
    )]
    pub monitor_client_buffer: usize,
    /// Lifetime of a monitor stream token (`POST /api/v1/monitor/token`).
    #[arg(
        long,
        env = "INSIGHTS_MONITOR_TOKEN_TTL_MS",
        default_value_t = 300_000,
        global = true
    )]
    pub monitor_token_ttl_ms: u64,
    /// How often silent calls are swept for `call_ended` timeouts.
    #[arg(
        long,
        env = "INSIGHTS_ACTIVE_CALL_SWEEP_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub active_call_sweep_ms: u64,
    /// Live events still in the outbox this long after their commit (their process died, or Redis
    /// refused them) are appended by the outbox sweep of any replica.
    #[arg(
        long,
        env = "INSIGHTS_LIVE_OUTBOX_GRACE_MS",
        default_value_t = 15_000,
        global = true
    )]
    pub live_outbox_grace_ms: u64,
    /// Sessions (their rows, audio and short-term report clips) older than this many days are erased
    /// by a periodic sweep (off when unset).
    #[arg(long, env = "INSIGHTS_RETENTION_DAYS", global = true)]
    pub retention_days: Option<u32>,
    /// Reported clips in the archive older than this many days are removed (off when unset).
    #[arg(long, env = "INSIGHTS_ARCHIVE_RETENTION_DAYS", global = true)]
    pub archive_retention_days: Option<u32>,
    /// How often the retention sweep runs.
    #[arg(
        long,
        env = "INSIGHTS_RETENTION_SWEEP_MS",
        default_value_t = 3_600_000,
        global = true
    )]
    pub retention_sweep_ms: u64,
    /// Sessions erased per sweep step (each step is short; the sweep continues until none are due).
    #[arg(
        long,
        env = "INSIGHTS_RETENTION_BATCH",
        default_value_t = 100,
        global = true
    )]
    pub retention_batch: u64,
    /// The UI's latency budget: the line every waterfall bar is measured against (ms).
    #[arg(
        long,
        env = "INSIGHTS_UI_LATENCY_BUDGET_MS",
        default_value_t = 800,
        global = true
    )]
    pub ui_latency_budget_ms: u64,
    /// How long a UI sign-in lasts before the API key is asked for again (hours).
    #[arg(
        long,
        env = "INSIGHTS_UI_SESSION_HOURS",
        default_value_t = 12,
        global = true
    )]
    pub ui_session_hours: u64,
    /// The provider that transcribes recordings unless a request names another: `deepgram`,
    /// `assemblyai`, `gladia`, `elevenlabs` or `openai` (its key comes from `INSIGHTS_<PROVIDER>_*`).
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_PROVIDER",
        default_value = "deepgram",
        global = true
    )]
    pub recording_provider: String,
    /// Largest recording accepted (upload, URL or Twilio media), in bytes.
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_MAX_BYTES",
        default_value_t = 512 << 20,
        global = true
    )]
    pub recording_max_bytes: u64,
    /// Per request to a provider while transcribing a recording (uploads and long files take long).
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_TIMEOUT_MS",
        default_value_t = 900_000,
        global = true
    )]
    pub recording_timeout_ms: u64,
    /// Recordings this replica works on at once.
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_CONCURRENCY",
        default_value_t = 2,
        global = true
    )]
    pub recording_concurrency: usize,
    /// A recording's work lease; renewed while the work runs, taken over by another replica after it
    /// runs out (a replica that died mid-transcription).
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_LEASE_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub recording_lease_ms: u64,
    /// How often an idle replica looks for recordings to work on.
    #[arg(
        long,
        env = "INSIGHTS_RECORDING_POLL_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub recording_poll_ms: u64,
    /// TOML file of the Twilio accounts whose recording callbacks are accepted
    /// (`[[account]] sid, auth_token, tenant_id, channels`).
    #[arg(long, env = "INSIGHTS_TWILIO_ACCOUNTS_FILE", global = true)]
    pub twilio_accounts_file: Option<PathBuf>,
    /// The only origin Twilio media is fetched from (trusted even when private, as in tests).
    #[arg(
        long,
        env = "INSIGHTS_TWILIO_API_BASE_URL",
        default_value = "https://api.twilio.com",
        global = true
    )]
    pub twilio_api_base_url: String,
    /// First wait before asking Twilio again for media it does not have yet (404); doubles per try.
    #[arg(
        long,
        env = "INSIGHTS_TWILIO_MEDIA_RETRY_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub twilio_media_retry_ms: u64,
    /// STT providers (`INSIGHTS_<PROVIDER>_*`, `INSIGHTS_STT_*`): read by `SttConfig::from_process_env`
    /// in `main`, empty in `Config::defaults()` so tests configure their own fakes.
    #[arg(skip)]
    pub stt: crate::stt::SttConfig,
    /// Post-call analytics (`INSIGHTS_ANALYTICS*`, `INSIGHTS_LLM_*`): read by
    /// `analytics::Settings::from_lookup` in `main`; the offline analyzer in `Config::defaults()`.
    #[arg(skip)]
    pub analytics: crate::analytics::Settings,
    /// Webhook delivery (`INSIGHTS_WEBHOOK_*`), read in `main` like the above.
    #[arg(skip)]
    pub webhooks: crate::webhooks::Settings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis_url))
            .field(
                "redis_cluster_urls",
                &self.redis_cluster_urls.as_deref().map(|u| {
                    u.split(',')
                        .map(|u| redact_url(u.trim()))
                        .collect::<Vec<_>>()
                }),
            )
            .field("stream_partitions", &self.stream_partitions)
            .field("stream", &self.stream)
            .field("dlq_stream", &self.dlq_stream())
            .field("consumer_group", &self.consumer_group)
            .field("consumer_name", &self.consumer_name())
            .field("database", &redact_url(&self.database_url()))
            .field(
                "audio",
                &self.s3_endpoint_url.as_deref().map_or_else(
                    || self.audio_dir().display().to_string(),
                    |e| format!("s3 {e} bucket {}", self.s3_bucket),
                ),
            )
            .field("http_addr", &self.http_addr)
            .field("batch_size", &self.batch_size)
            .field("block_ms", &self.block_ms)
            .field("claim_idle_ms", &self.claim_idle_ms)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}
pub use crate::text::redact_url;

fn percent_encode(s: &str) -> String {
    crate::text::percent_encode(s, |_, b| crate::text::unreserved(b))
}

impl Config {
    /// Defaults only (no environment): what tests start from.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let parsed = <Only as clap::Parser>::try_parse_from(["call-insights"]);
        match parsed {
            Ok(o) => o.config,
            Err(e) => unreachable!("defaults always parse: {e}"),
        }
    }

    pub fn dlq_stream(&self) -> String {
        self.dlq_stream
            .clone()
            .unwrap_or_else(|| format!("{}:dlq", self.stream))
    }

    pub fn consumer_name(&self) -> String {
        self.consumer_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "call-insights".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The session stream's partitions (names, DLQs, a call's partition).
    pub fn partitions(&self) -> crate::ingest::partition::Partitions {
        crate::ingest::partition::Partitions::new(
            &self.stream,
            &self.dlq_stream(),
            self.stream_partitions,
            self.redis_cluster_urls.is_some(),
        )
    }

    /// The database pool's settings.
    pub fn pool_settings(&self) -> crate::db::PoolSettings {
        crate::db::PoolSettings {
            max_connections: self.db_max_connections,
            idle_transaction_timeout: Duration::from_millis(self.db_idle_transaction_timeout_ms),
        }
    }

    pub fn database_url(&self) -> String {
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        if let Some(host) = &self.postgres_host {
            let auth = match &self.postgres_password {
                Some(p) => format!(
                    "{}:{}",
                    percent_encode(&self.postgres_user),
                    percent_encode(p)
                ),
                None => percent_encode(&self.postgres_user),
            };
            return format!(
                "postgres://{auth}@{host}:{}/{}",
                self.postgres_port,
                percent_encode(&self.postgres_db)
            );
        }
        format!(
            "sqlite://{}?mode=rwc",
            self.data_dir.join("insights.db").display()
        )
    }

    pub fn audio_dir(&self) -> PathBuf {
        self.audio_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audio"))
    }

    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let mut c = Config::defaults();
        c.postgres_host = Some("db".into());
        c.postgres_password = Some("p@ss word".into());
        assert_eq!(
            c.database_url(),
            "postgres://postgres:p%40ss%20word@db:5432/call_insights"
        );
        assert!(!format!("{c:?}").contains("p%40ss"));
    }

    #[test]
    fn embedded_defaults() {
        let c = Config::defaults();
        assert_eq!(c.database_url(), "sqlite://data/insights.db?mode=rwc");
        assert_eq!(c.audio_dir(), PathBuf::from("data/audio"));
        assert_eq!(c.dlq_stream(), "call-insights:sessions:dlq");
        assert_eq!(c.http_addr, "127.0.0.1:8080");
    }
}
