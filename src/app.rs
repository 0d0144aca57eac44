//! The application: `App` holds every long-lived thing, built once at start-up; `Application` binds the
//! HTTP listener and runs the API and the stream consumer until shutdown.

use crate::api;
use crate::api::auth::ApiKeys;
use crate::api::cache::{ResponseCache, SessionVersions, follow_updates};
use crate::config::Config;
use crate::db;
use crate::diagnosis::Thresholds;
use crate::ingest::row_cache::RowCache;
use crate::ingest::{ConsumerSettings, Ingestor, InsightsStreamConsumer};
use crate::metrics::{HttpMetrics, IngestMetrics, PartitionMetrics};
use crate::signing_key::Signer;
use crate::storage::{Archive, AudioStore, FsStore, S3Settings, S3Store};
use anyhow::Context;
use sea_orm::DatabaseConnection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Everything a request, the consumer or a job needs, shared as `Arc<App>`.
#[derive(Debug)]
pub struct App {
    /// Settings the process started with.
    pub config: Config,
    /// Database pool (PostgreSQL or SQLite) shared by the API and the consumer.
    pub db: DatabaseConnection,
    /// Where audio objects live (S3 or a local folder).
    pub store: Arc<dyn AudioStore>,
    /// Redis client for health checks; the consumer holds its own connections.
    pub redis: crate::broker::Broker,
    /// Ingest counters rendered at `/metrics` (process totals).
    pub metrics: Arc<IngestMetrics>,
    /// Each partition's own counters.
    pub partition_metrics: Vec<Arc<PartitionMetrics>>,
    /// Fingerprints of committed rows per call, shared by every ingestor of the process.
    pub row_cache: Arc<RowCache>,
    /// Diagnosis thresholds (defaults, or `INSIGHTS_DIAGNOSIS_CONFIG`).
    pub thresholds: Arc<Thresholds>,
    /// API keys and the tenant each may see.
    pub api_keys: ApiKeys,
    /// Signs what the service hands out and takes back: its audio URLs (filesystem store), UI
    /// sign-in cookies, live-stream tokens.
    pub signer: Signer,
    /// HTTP request durations by route and status.
    pub http_metrics: HttpMetrics,
    /// Serialized timelines, each valid for one stored version of its session.
    pub timeline_cache: Arc<ResponseCache>,
    /// Session versions trusted while subscribed to ingest's update announcements.
    pub session_versions: Arc<SessionVersions>,
    /// STT provider clients (each with its process-wide concurrency bound) for replays.
    pub stt: crate::stt::SttProviders,
    /// This process's running analysis items (cancel and shutdown abort them).
    pub analysis: Arc<crate::stt_replay::jobs::Registry>,
    /// Long-term archive of reported clips (a second bucket, or a folder of the audio store).
    pub archive: Archive,
    /// Post-call analytics: the analyzer, profiles, encryption keys and counters.
    pub analytics: Arc<crate::analytics::Analytics>,
    /// Webhook delivery (outbox worker, signing, SSRF-guarded client).
    pub webhooks: crate::webhooks::deliver::Deliverer,
    /// Live events: the process's one reader of `<stream>:events` and its SSE clients.
    pub live: Arc<crate::live::hub::Hub>,
    /// Per-API-key token buckets (off unless `INSIGHTS_RATE_LIMIT_PER_SECOND` is set).
    pub rate_limiter: crate::api::ratelimit::RateLimiter,
    /// Recordings: settings, transcription clients, Twilio accounts.
    pub recordings: Arc<crate::recordings::Recordings>,
}

/// Builds the archive the configuration asks for: `INSIGHTS_ARCHIVE_S3_*` (any unset value taken
/// from the audio store's S3 settings), else a folder of the audio store (`archive/` in its bucket,
/// or `<data dir>/archive`).
pub fn build_archive(config: &Config, main: &Arc<dyn AudioStore>) -> anyhow::Result<Archive> {
    let prefix = format!("{}{}", config.s3_prefix, config.archive_s3_prefix);
    let endpoint = config
        .archive_s3_endpoint_url
        .clone()
        .or_else(|| config.s3_endpoint_url.clone());
    if let Some(endpoint_url) = endpoint {
        let own = config.archive_s3_endpoint_url.is_some() || config.archive_s3_bucket.is_some();
        if !own {
            return Ok(Archive {
                store: main.clone(),
                location: format!("{}/{prefix}", config.s3_bucket),
                prefix,
            });
        }
        let bucket = config
            .archive_s3_bucket
            .clone()
            .unwrap_or_else(|| config.s3_bucket.clone());
        let store = S3Store::new(S3Settings {
            endpoint_url,
            bucket: bucket.clone(),
            region: config
                .archive_s3_region
                .clone()
                .unwrap_or_else(|| config.s3_region.clone()),
            access_key: config
                .archive_s3_access_key
                .clone()
                .unwrap_or_else(|| config.s3_access_key.clone()),
            secret_key: config
                .archive_s3_secret_key
                .clone()
                .unwrap_or_else(|| config.s3_secret_key.clone()),
            request_timeout: Duration::from_millis(config.s3_timeout_ms),
            public_endpoint_url: None,
        })
        .context("cannot configure the S3 archive")?;
        return Ok(Archive {
            store: Arc::new(store),
            location: bucket,
            prefix,
        });
    }
    let dir = config
        .archive_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("archive"));
    Ok(Archive {
        store: Arc::new(FsStore::new(dir.clone())),
        location: dir.display().to_string(),
        prefix: config.archive_s3_prefix.clone(),
    })
}

/// Builds the audio store the configuration asks for.
pub fn build_store(config: &Config) -> anyhow::Result<Arc<dyn AudioStore>> {
    Ok(match &config.s3_endpoint_url {
        Some(endpoint) => Arc::new(
            S3Store::new(S3Settings {
                endpoint_url: endpoint.clone(),
                bucket: config.s3_bucket.clone(),
                region: config.s3_region.clone(),
                access_key: config.s3_access_key.clone(),
                secret_key: config.s3_secret_key.clone(),
                request_timeout: Duration::from_millis(config.s3_timeout_ms),
                public_endpoint_url: config.s3_public_endpoint_url.clone(),
            })
            .context("cannot configure the S3 audio store")?,
        ),
        None => Arc::new(FsStore::new(config.audio_dir())),
    })
}

impl App {
    /// Connects to the database (migrating it), the store and Redis (lazily).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config_stt = config.stt.clone();
        let thresholds = Arc::new(Thresholds::load(config.diagnosis_config.as_deref())?);
        let api_keys = ApiKeys::parse(&config.api_keys).map_err(anyhow::Error::msg)?;
        if api_keys.is_open() {
            warn!("INSIGHTS_API_KEYS is empty: the API is open to anyone who can reach it");
        }
        let db = db::connect(&config.database_url(), config.pool_settings()).await?;
        if config.db_idle_transaction_timeout_ms == 0
            || config.db_idle_transaction_timeout_ms >= config.claim_idle_ms
        {
            warn!(
                idle_transaction_timeout_ms = config.db_idle_transaction_timeout_ms,
                claim_idle_ms = config.claim_idle_ms,
                "INSIGHTS_DB_IDLE_TRANSACTION_TIMEOUT_MS is not below INSIGHTS_CLAIM_IDLE_MS: a replica frozen mid-commit can block the one that claims its entries"
            );
        }
        db::migrate(&db).await?;
        let (signing_key, key_source) =
            crate::signing_key::load(config.url_signing_key.as_deref(), &db, &config.data_dir)
                .await
                .context("cannot load the URL signing key from the database")?;
        info!(source = ?key_source, "URL signing key ready");
        let signer = Signer::new(signing_key);
        let store = build_store(&config)?;
        let archive = build_archive(&config, &store)?;
        if let Err(e) = store.check().await {
            warn!(error = %e, "audio store not reachable yet; ingest will wait for it");
        }
        let redis =
            crate::broker::Broker::open(&config.redis_url, config.redis_cluster_urls.as_deref())
                .with_context(|| {
                    format!(
                        "invalid INSIGHTS_REDIS_URL {} or INSIGHTS_REDIS_CLUSTER_URLS",
                        crate::config::redact_url(&config.redis_url)
                    )
                })?;
        let partition_metrics = (0..config.stream_partitions.max(1))
            .map(|_| Arc::new(PartitionMetrics::default()))
            .collect();
        let row_cache = Arc::new(RowCache::new(config.row_cache_calls));
        let metrics = Arc::new(IngestMetrics::default());
        let rate_limiter = crate::api::ratelimit::RateLimiter::new(
            config.rate_limit_per_second,
            config.rate_limit_burst,
        );
        let live = Arc::new(crate::live::hub::Hub::new(
            redis.clone(),
            crate::live::events_stream(&config.stream),
            config.monitor_client_buffer,
            db.clone(),
        ));
        let analytics = Arc::new(
            crate::analytics::Analytics::build(
                config.analytics.clone(),
                Some(live.clone()),
                Some(metrics.clone()),
            )
            .context("cannot set up analytics")?,
        );
        if let Some(a) = &analytics.analyzer {
            info!(
                analyzer = a.kind(),
                model = a.model().unwrap_or_default(),
                "post-call analytics on"
            );
        } else {
            info!("post-call analytics off (INSIGHTS_ANALYTICS=off)");
        }
        let webhooks = crate::webhooks::deliver::Deliverer::new(
            db.clone(),
            config.webhooks.clone(),
            analytics.keys.clone(),
            config.consumer_name(),
        )
        .context("cannot build the webhook client")?;
        if config.webhooks.allow_private {
            warn!(
                "INSIGHTS_WEBHOOK_ALLOW_PRIVATE=true: webhooks may target loopback and private addresses"
            );
        }
        let twilio = match &config.twilio_accounts_file {
            Some(path) => crate::recordings::twilio::Accounts::load(path)?,
            None => crate::recordings::twilio::Accounts::default(),
        };
        let recordings = Arc::new(
            crate::recordings::Recordings::build(
                crate::recordings::Settings::from_config(&config)?,
                &config_stt,
                twilio,
                config.webhooks.allow_private,
            )
            .context("cannot set up recordings")?,
        );
        Ok(App {
            recordings,
            config,
            db,
            store,
            redis,
            metrics,
            partition_metrics,
            row_cache,
            thresholds,
            api_keys,
            signer,
            http_metrics: HttpMetrics::default(),
            timeline_cache: Arc::new(ResponseCache::new(1024, 64 << 20)),
            session_versions: Arc::new(SessionVersions::default()),
            stt: crate::stt::SttProviders::from_config(&config_stt)
                .context("cannot build the STT provider clients")?,
            analysis: Arc::default(),
            archive,
            analytics,
            webhooks,
            live,
            rate_limiter,
        })
    }

    fn worker_settings(&self) -> crate::stt_replay::jobs::WorkerSettings {
        let c = &self.config;
        crate::stt_replay::jobs::WorkerSettings {
            worker_id: c.consumer_name(),
            concurrency: c.analysis_concurrency,
            lease: Duration::from_millis(c.analysis_lease_ms.max(100)),
            poll: Duration::from_millis(c.analysis_poll_ms.max(10)),
        }
    }

    /// What analysis runs (batch items, single analyses, cancels) need.
    pub fn analysis_runner(&self) -> crate::stt_replay::jobs::Runner {
        crate::stt_replay::jobs::Runner {
            db: self.db.clone(),
            store: self.store.clone(),
            stt: self.stt.clone(),
            language: self.config.stt.language.clone(),
            registry: self.analysis.clone(),
            worker: self.worker_settings(),
        }
    }

    /// What erasure and the retention sweep need; erased sessions leave the web layer's caches.
    pub fn eraser(&self) -> crate::erasure::Eraser {
        let timeline_cache = self.timeline_cache.clone();
        let session_versions = self.session_versions.clone();
        let c = &self.config;
        crate::erasure::Eraser {
            db: self.db.clone(),
            store: self.store.clone(),
            archive: self.archive.clone(),
            broker: self.redis.clone(),
            stream: c.stream.clone(),
            dlqs: c.partitions().dlqs(),
            row_cache: self.row_cache.clone(),
            forget_cached: Arc::new(move |id| {
                timeline_cache.remove(id);
                session_versions.invalidate([id]);
            }),
            retention: crate::erasure::Retention {
                days: c.retention_days,
                archive_days: c.archive_retention_days,
                batch: c.retention_batch,
                sweep_every: Duration::from_millis(c.retention_sweep_ms.max(1000)),
            },
        }
    }

    /// What STT reports (filing, clips, analyses) need.
    pub fn reports(&self) -> crate::stt_reports::Reports {
        crate::stt_reports::Reports {
            db: self.db.clone(),
            store: self.store.clone(),
            prefix: self.config.s3_prefix.clone(),
            archive: self.archive.clone(),
            stt: self.stt.clone(),
            language: self.config.stt.language.clone(),
        }
    }

    /// The recording pipeline's worker.
    pub fn recording_worker(&self) -> crate::recordings::pipeline::Worker {
        crate::recordings::pipeline::Worker {
            recordings: self.recordings.clone(),
            db: self.db.clone(),
            store: self.store.clone(),
            ingestor: self.ingestor(),
            row_cache: self.row_cache.clone(),
            live: self.config.live.then(|| self.live.clone()),
            broker: self.redis.clone(),
            updates_channel: crate::ingest::updates::channel(&self.config.stream),
            thresholds: self.thresholds.clone(),
            worker_id: self.config.consumer_name(),
            stt: self.stt.clone(),
        }
    }

    /// Settings of the consumer of partition `partition`.
    pub fn consumer_settings(&self, partition: u32) -> ConsumerSettings {
        let c = &self.config;
        let p = c.partitions();
        ConsumerSettings {
            stream: p.stream(partition),
            dlq_stream: p.dlq(partition),
            partition,
            updates_channel: crate::ingest::updates::channel(&c.stream),
            group: c.consumer_group.clone(),
            consumer: c.consumer_name(),
            batch_size: c.batch_size,
            block: c.block(),
            claim_idle: Duration::from_millis(c.claim_idle_ms),
            claim_interval: Duration::from_millis(c.claim_interval_ms),
            max_deliveries: c.max_deliveries,
            dead_consumer_idle: Duration::from_millis(c.dead_consumer_idle_ms),
            max_payload_bytes: c.max_payload_bytes,
            batch_memory_bytes: c.batch_memory_bytes,
            dlq_maxlen: c.dlq_maxlen,
            // SQLite serialises writers: concurrent transactions would only wait on each other.
            ingest_lanes: if self.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
                1
            } else {
                c.ingest_lanes.clamp(1, 16)
            },
        }
    }

    pub fn ingestor(&self) -> Ingestor {
        Ingestor::new(
            self.db.clone(),
            self.store.clone(),
            self.config.s3_prefix.clone(),
            self.config.audio_concurrency,
            self.row_cache.clone(),
            self.thresholds.clone(),
        )
        .with_analytics(self.analytics.enabled())
        .with_live(self.config.live)
        .with_db_timeout(Duration::from_millis(self.config.db_timeout_ms))
    }

    /// Follows ingest's update announcements (all replicas') until `shutdown`.
    pub fn follow_updates(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        follow_updates(
            self.redis.clone(),
            crate::ingest::updates::channel(&self.config.stream),
            self.session_versions.clone(),
            self.timeline_cache.clone(),
            shutdown,
        )
    }

    /// The consumer of the first (or only) partition.
    pub fn consumer(&self) -> InsightsStreamConsumer {
        self.consumer_of(0)
    }

    /// The consumer of partition `partition`.
    pub fn consumer_of(&self, partition: u32) -> InsightsStreamConsumer {
        let metrics = self
            .partition_metrics
            .get(partition as usize)
            .cloned()
            .unwrap_or_default();
        InsightsStreamConsumer::new(
            self.consumer_settings(partition),
            self.redis.clone(),
            self.ingestor(),
            self.metrics.clone(),
            metrics,
        )
        .with_live(self.live.clone())
    }

    /// One consumer per partition: every replica consumes every partition in the group.
    pub fn consumers(&self) -> Vec<InsightsStreamConsumer> {
        (0..self.config.stream_partitions.max(1))
            .map(|i| self.consumer_of(i))
            .collect()
    }
}

/// A built application: listening, not yet serving.
pub struct Application {
    app: Arc<App>,
    listener: TcpListener,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let addr = config.http_addr.clone();
        let app = Arc::new(App::build(config).await?);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Application { app, listener })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves HTTP and runs the consumer until `shutdown` is cancelled, then lets in-flight work finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        info!(http_addr = %addr, config = ?self.app.config, "call-insights serving");
        let consumers: Vec<_> = self
            .app
            .consumers()
            .into_iter()
            .map(|c| tokio::spawn(c.run(shutdown.clone())))
            .collect();
        let updates = tokio::spawn(self.app.follow_updates(shutdown.clone()));
        let worker = tokio::spawn(crate::stt_replay::jobs::run_worker(
            self.app.analysis_runner(),
            shutdown.clone(),
        ));
        let analytics = tokio::spawn(crate::analytics::worker::run_worker(
            self.app.analytics.clone(),
            self.app.db.clone(),
            self.app.config.consumer_name(),
            shutdown.clone(),
        ));
        let deliveries = tokio::spawn(self.app.webhooks.clone().run(shutdown.clone()));
        let live = tokio::spawn(self.app.live.clone().run_reader(shutdown.clone()));
        let sweeper = tokio::spawn(crate::live::active::run_sweeper(
            self.app.db.clone(),
            self.app.live.clone(),
            self.app.redis.clone(),
            self.app.config.live.then(|| {
                (
                    Duration::from_millis(self.app.config.active_call_timeout_ms.max(1000)),
                    Duration::from_millis(self.app.config.active_call_sweep_ms.max(100)),
                )
            }),
            shutdown.clone(),
        ));
        let outbox = tokio::spawn(crate::live::outbox::run_sweeper(
            self.app.db.clone(),
            self.app.live.clone(),
            Duration::from_millis(self.app.config.live_outbox_grace_ms),
            shutdown.clone(),
        ));
        let recordings =
            tokio::spawn(Arc::new(self.app.recording_worker()).run_until(shutdown.clone()));
        let retention = tokio::spawn(crate::erasure::run_sweeper(
            self.app.eraser(),
            shutdown.clone(),
        ));
        let router = api::router(self.app.clone());
        let server = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let served = server.await.context("HTTP server failed");
        shutdown.cancel();
        for consumer in consumers {
            consumer.await.context("consumer task panicked")?;
        }
        updates.await.context("update subscription task panicked")?;
        worker.await.context("analysis worker panicked")?;
        analytics.await.context("analytics worker panicked")?;
        deliveries
            .await
            .context("webhook delivery worker panicked")?;
        live.await.context("live event reader panicked")?;
        sweeper.await.context("active-call sweeper panicked")?;
        outbox
            .await
            .context("live-events outbox sweeper panicked")?;
        retention.await.context("retention sweeper panicked")?;
        recordings.await.context("recording worker panicked")?;
        served
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("Ctrl-C: shutting down"),
        _ = term => info!("SIGTERM: shutting down"),
    }
}
