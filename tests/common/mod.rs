//! Test harness: each test gets its own database (PostgreSQL or SQLite), its own stream key and its own
//! audio location (an S3 key prefix in Garage, or a temporary folder), against the real services that
//! `scripts/services.sh` starts. Helpers read like the domain: `env.publish(..)`, `env.drain(..)`.

#![allow(dead_code, unused_macros)]

/// Defines each scenario `async fn name(db: Db, store: Store)` as two tests: on PostgreSQL + Garage
/// (`postgres_s3::name`) and on SQLite + the filesystem (`sqlite_fs::name`).
macro_rules! on_both_stacks {
    ($($name:ident),* $(,)?) => {
        mod postgres_s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::Postgres, super::Store::S3).await }) *
        }
        mod sqlite_fs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::Sqlite, super::Store::Fs).await }) *
        }
    };
}

pub mod calls;
pub mod hooks;
pub mod proxy;
pub mod queue;
pub mod recorded_call;
pub mod recording_fakes;

use call_insights::app::App;
use call_insights::config::Config;
use call_insights::ingest::{BatchReport, InsightsStreamConsumer};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    S3,
    Fs,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn contract_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/contract"),
        manifest.join("shared/contract"),
    ];
    for c in candidates {
        if c.join("session-report.schema.json").exists() {
            return c;
        }
    }
    panic!("shared/contract not found beside the repository (expected ../shared/contract)");
}

pub struct TestEnv {
    pub id: String,
    pub app: std::sync::Arc<App>,
    pub redis: redis::Client,
    pub db_kind: Db,
    pub store_kind: Store,
    pg_admin_url: String,
    pg_db: Option<String>,
    tmp: PathBuf,
}

/// A config pointing at this test's own database, stream and audio location; non-blocking reads.
pub async fn spawn(db: Db, store: Store) -> TestEnv {
    spawn_with(db, store, |_| {}).await
}

pub async fn spawn_with(db: Db, store: Store, tweak: impl FnOnce(&mut Config)) -> TestEnv {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let tmp = std::env::temp_dir().join("call-insights-tests").join(&id);
    std::fs::create_dir_all(&tmp).unwrap();
    let pg_admin_url = env_or(
        "INSIGHTS_TEST_DATABASE_URL",
        "postgres://root@127.0.0.1:5432/postgres",
    );
    let mut config = Config::defaults();
    config.redis_url = env_or("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    config.stream = format!("test:{id}:sessions");
    config.consumer_name = Some(format!("test-{id}"));
    config.block_ms = 0;
    config.claim_interval_ms = 0;
    config.data_dir = tmp.clone();
    let mut pg_db = None;
    match db {
        Db::Postgres => {
            let name = format!("ci_{id}");
            let admin = Database::connect(&pg_admin_url)
                .await
                .expect("PostgreSQL reachable (run scripts/services.sh)");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
            admin.close().await.ok();
            let base = pg_admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
            config.database_url = Some(format!("{base}/{name}"));
            pg_db = Some(name);
        }
        Db::Sqlite => {
            config.database_url = Some(format!(
                "sqlite://{}?mode=rwc",
                tmp.join("insights.db").display()
            ));
        }
    }
    match store {
        Store::S3 => {
            config.s3_endpoint_url = Some(env_or(
                "INSIGHTS_TEST_S3_ENDPOINT_URL",
                "http://127.0.0.1:3900",
            ));
            config.s3_bucket = env_or("INSIGHTS_TEST_S3_BUCKET", "call-insights-test");
            config.s3_region = env_or("INSIGHTS_TEST_S3_REGION", "garage");
            config.s3_access_key =
                env_or("INSIGHTS_TEST_S3_ACCESS_KEY", "GK0123456789abcdef01234567");
            config.s3_secret_key = env_or(
                "INSIGHTS_TEST_S3_SECRET_KEY",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            );
            config.s3_prefix = format!("test-{id}/");
            // Reported clips are archived to a second bucket, as in production.
            config.archive_s3_bucket = Some(env_or(
                "INSIGHTS_TEST_S3_ARCHIVE_BUCKET",
                "call-insights-archive-test",
            ));
        }
        Store::Fs => config.audio_dir = Some(tmp.join("audio")),
    }
    tweak(&mut config);
    let redis = redis::Client::open(config.redis_url.as_str()).unwrap();
    let app = std::sync::Arc::new(App::build(config).await.expect("app builds"));
    if store == Store::S3 {
        app.store
            .check()
            .await
            .expect("Garage reachable (run scripts/services.sh)");
    }
    TestEnv {
        id,
        app,
        redis,
        db_kind: db,
        store_kind: store,
        pg_admin_url,
        pg_db,
        tmp,
    }
}

impl TestEnv {
    /// Serves this test's HTTP API on a free loopback port; returns its base URL.
    pub async fn serve_api(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = call_insights::api::router(self.app.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }

    pub fn stream(&self) -> &str {
        &self.app.config.stream
    }

    pub fn dlq(&self) -> String {
        self.app.config.dlq_stream()
    }

    pub fn consumer(&self) -> InsightsStreamConsumer {
        self.app.consumer()
    }

    /// Every entry of the live-events stream, oldest first: `(stream id, type, tenant_id, body)`.
    pub async fn live_entries(&self) -> Vec<(String, String, String, serde_json::Value)> {
        let v: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(call_insights::live::events_stream(self.stream()))
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        v.ids
            .into_iter()
            .map(|e| {
                let field = |k: &str| match e.map.get(k) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                let body = serde_json::from_str(&field("body")).unwrap_or(serde_json::Value::Null);
                (e.id.clone(), field("type"), field("tenant_id"), body)
            })
            .collect()
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.redis.get_multiplexed_async_connection().await.unwrap()
    }

    /// XADDs an entry with the given fields; returns its id.
    pub async fn publish_fields(&self, fields: &[(&str, &[u8])]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream()).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query_async(&mut self.conn().await).await.unwrap()
    }

    pub async fn publish(&self, payload: &[u8]) -> String {
        self.publish_fields(&[("payload", payload)]).await
    }

    /// Publishes a report to its call's partition (the only stream unless partitioned).
    pub async fn publish_json(&self, v: &serde_json::Value) -> String {
        let p = self.app.config.partitions();
        if p.count() == 1 && self.app.config.redis_cluster_urls.is_none() {
            return self.publish(&serde_json::to_vec(v).unwrap()).await;
        }
        let call = v["call_id"].as_str().unwrap_or_default();
        redis::cmd("XADD")
            .arg(p.stream_of_call(call))
            .arg("*")
            .arg("payload")
            .arg(serde_json::to_vec(v).unwrap())
            .query_async(&mut self.broker_conn().await)
            .await
            .unwrap()
    }

    /// A connection to this test's Redis or Redis Cluster (as the service sees it).
    pub async fn broker_conn(&self) -> call_insights::broker::Conn {
        self.app.redis.conn().await.unwrap()
    }

    /// Runs the consumer step by step until a step reads nothing; returns the sum of the steps.
    pub async fn drain(&self, consumer: &mut InsightsStreamConsumer) -> BatchReport {
        let mut total = BatchReport::default();
        for _ in 0..10_000 {
            let r = consumer
                .process_next_batch()
                .await
                .expect("batch processes");
            if r.read == 0 {
                return total;
            }
            total.read += r.read;
            total.stored += r.stored;
            total.stale += r.stale;
            total.duplicate += r.duplicate;
            total.dead_lettered += r.dead_lettered;
            total.failed += r.failed;
            total.deleted += r.deleted;
        }
        panic!("stream did not drain");
    }

    /// Entries of the dead-letter stream: (field → value as lossy text).
    /// Every partition's, oldest partition first.
    pub async fn dlq_entries(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut ids = Vec::new();
        let mut conn = self.broker_conn().await;
        for dlq in self.app.config.partitions().dlqs() {
            let v: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(dlq)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            ids.extend(v.ids);
        }
        ids.into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .map(|(k, v)| {
                        let s = match v {
                            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                            other => format!("{other:?}"),
                        };
                        (k, s)
                    })
                    .collect()
            })
            .collect()
    }

    /// Entries pending in the group (delivered, not acknowledged).
    pub async fn pending_count(&self) -> i64 {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(&self.app.config.consumer_group)
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// A consumer named `name` reads up to `count` entries and dies without acknowledging them
    /// (creating the group first, as a running service would).
    pub async fn read_and_die(&self, name: &str, count: usize) {
        let mut conn = self.conn().await;
        let group = &self.app.config.consumer_group;
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(name)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.stream())
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Every row of every ingest table as sorted text lines: what "the same rows" means in tests.
    pub async fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (table, order) in [
            ("call_sessions", "call_id"),
            ("conversation_turns", "session_id, turn_index"),
            ("session_events", "session_id, seq"),
            ("audio_segments", "session_id, segment_id"),
        ] {
            out.extend(
                self.rows(&format!("SELECT * FROM {table} ORDER BY {order}"))
                    .await
                    .into_iter()
                    .map(|r| format!("{table} {r}")),
            );
        }
        out
    }

    /// Rows of a query as JSON objects (one line each).
    pub async fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let db = &self.app.db;
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => format!("SELECT row_to_json(q)::text AS j FROM ({sql}) q"),
            _ => sql.to_string(),
        };
        let rows = db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
        rows.into_iter()
            .map(|row| match backend {
                DbBackend::Postgres => {
                    serde_json::from_str(&row.try_get::<String>("", "j").unwrap()).unwrap()
                }
                _ => sqlite_row_json(&row),
            })
            .collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let db = &self.app.db;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    pub async fn session(&self, call_id: &str) -> Option<entity::call_sessions::Model> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        entity::call_sessions::Entity::find()
            .filter(entity::call_sessions::Column::CallId.eq(call_id))
            .one(&self.app.db)
            .await
            .unwrap()
    }

    pub async fn segments(&self, call_id: &str) -> Vec<entity::audio_segments::Model> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let Some(s) = self.session(call_id).await else {
            return Vec::new();
        };
        entity::audio_segments::Entity::find()
            .filter(entity::audio_segments::Column::SessionId.eq(s.id))
            .order_by_asc(entity::audio_segments::Column::SegmentId)
            .all(&self.app.db)
            .await
            .unwrap()
    }

    /// Drops this test's database, stream and files.
    pub async fn cleanup(self) {
        if let Ok(mut conn) = self.app.redis.conn().await {
            let p = self.app.config.partitions();
            // One key per DEL: on a cluster the partitions live in different slots.
            for key in p.streams().into_iter().chain(p.dlqs()) {
                let _: () = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(());
            }
        }
        let TestEnv {
            app,
            pg_db,
            pg_admin_url,
            tmp,
            ..
        } = self;
        drop(app);
        if let Some(name) = pg_db
            && let Ok(admin) = Database::connect(&pg_admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
        let _ = std::fs::remove_dir_all(tmp);
    }
}

fn sqlite_row_json(row: &sea_orm::QueryResult) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    for col in row.column_names() {
        let v = if let Ok(v) = row.try_get::<Option<i64>>("", &col) {
            serde_json::json!(v)
        } else if let Ok(v) = row.try_get::<Option<f64>>("", &col) {
            serde_json::json!(v)
        } else if let Ok(v) = row.try_get::<Option<String>>("", &col) {
            serde_json::json!(v)
        } else if let Ok(v) = row.try_get::<Option<Vec<u8>>>("", &col) {
            serde_json::json!(v)
        } else {
            serde_json::Value::String("<unreadable>".into())
        };
        obj.insert(col, v);
    }
    serde_json::Value::Object(obj)
}

/// A 16 kHz mono 16-bit WAV of `ms` milliseconds of a 220 Hz tone at the given amplitude.
pub fn tone_wav(ms: u32, amplitude: f32) -> Vec<u8> {
    let n = 16 * ms as usize;
    let s: Vec<f32> = (0..n)
        .map(|i| amplitude * (i as f32 * 220.0 * std::f32::consts::TAU / 16000.0).sin())
        .collect();
    call_insights::audio::encode_wav_i16(&s, 16000)
}

/// A minimal valid report for `call_id` at `seq`, with `turns` user/assistant turns.
pub fn report(call_id: &str, seq: i64, is_final: bool, turns: usize) -> serde_json::Value {
    let turns: Vec<serde_json::Value> = (0..turns)
        .map(|i| {
            let user = i % 2 == 0;
            serde_json::json!({"index": i, "role": if user { "user" } else { "assistant" },
                "content": format!("turn {i} of seq {seq}"), "start_ms": i * 1000, "end_ms": i * 1000 + 800,
                "e2e_latency_ms": if user { serde_json::Value::Null } else { serde_json::json!(900.0 + i as f64) }})
        })
        .collect();
    let events: Vec<serde_json::Value> = (0..turns.len())
        .map(|i| serde_json::json!({"seq": i, "type": "user_started_speaking", "at_ms": i * 1000, "turn_index": i}))
        .collect();
    serde_json::json!({
        "schema_version": 1, "report_type": if is_final { "final" } else { "partial" }, "seq": seq,
        "call_id": call_id, "tenant_id": "acme", "started_at": "2026-11-01T09:00:00Z",
        "ended_at": if is_final { serde_json::json!("2026-11-01T09:01:00Z") } else { serde_json::Value::Null },
        "turns": turns, "events": events,
    })
}

/// The real `call-insights` binary running against a test's database, stream and store.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub http_addr: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestEnv {
    /// The `INSIGHTS_*` variables describing this test's stack (what operators set).
    pub fn service_env(&self) -> Vec<(String, String)> {
        let c = &self.app.config;
        let mut v = vec![
            ("INSIGHTS_REDIS_URL", c.redis_url.clone()),
            ("INSIGHTS_STREAM", c.stream.clone()),
            ("INSIGHTS_CONSUMER_GROUP", c.consumer_group.clone()),
            ("INSIGHTS_DATABASE_URL", c.database_url()),
            ("INSIGHTS_DATA_DIR", c.data_dir.display().to_string()),
            ("INSIGHTS_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("INSIGHTS_BLOCK_MS", "200".to_string()),
            ("INSIGHTS_S3_PREFIX", c.s3_prefix.clone()),
        ];
        match &c.s3_endpoint_url {
            Some(e) => v.extend([
                ("INSIGHTS_S3_ENDPOINT_URL", e.clone()),
                ("INSIGHTS_S3_BUCKET", c.s3_bucket.clone()),
                ("INSIGHTS_S3_REGION", c.s3_region.clone()),
                ("INSIGHTS_S3_ACCESS_KEY", c.s3_access_key.clone()),
                ("INSIGHTS_S3_SECRET_KEY", c.s3_secret_key.clone()),
            ]),
            None => v.push(("INSIGHTS_AUDIO_DIR", c.audio_dir().display().to_string())),
        }
        if let Some(b) = &c.archive_s3_bucket {
            v.push(("INSIGHTS_ARCHIVE_S3_BUCKET", b.clone()));
        }
        if c.stream_partitions > 1 {
            v.push((
                "INSIGHTS_STREAM_PARTITIONS",
                c.stream_partitions.to_string(),
            ));
        }
        if let Some(urls) = &c.redis_cluster_urls {
            v.push(("INSIGHTS_REDIS_CLUSTER_URLS", urls.clone()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Starts the binary with this test's environment plus `extra`; returns once it listens.
    pub fn start_service(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_call-insights"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info");
        for (k, v) in self.service_env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("service starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(i) = line.find("http_addr=") {
                    let addr: String = line[i + 10..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let http_addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("service did not start: {:#?}", log.lock().unwrap()));
        ServiceProcess {
            child,
            http_addr,
            log,
        }
    }
}

impl ServiceProcess {
    /// Its `/metrics` text (empty while it does not answer).
    pub async fn metrics(&self) -> String {
        match reqwest::get(self.url("/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    pub fn log_lines(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The last `n` lines the process logged (for a failing test's message).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Waits (polling, bounded) for the process to exit.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("service did not exit within 60 s")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 50 ms for up to `secs` seconds (a wait for a condition, not a timing assertion).
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

impl TestEnv {
    /// Group lag + pending: 0 when every published entry is consumed and acknowledged.
    /// Summed over the partitions.
    pub async fn unfinished(&self) -> i64 {
        let mut total = 0;
        for stream in self.app.config.partitions().streams() {
            total += self.unfinished_in(&stream).await;
        }
        total
    }

    /// Lag + pending of one partition's stream.
    pub async fn unfinished_in(&self, stream: &str) -> i64 {
        let Ok(mut conn) = self.app.redis.conn().await else {
            return i64::MAX / 4;
        };
        let v: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let group = &self.app.config.consumer_group;
        match call_insights::ingest::redis_reply::parse_groups(v)
            .into_iter()
            .find(|g| &g.name == group)
        {
            Some(g) => g.pending + g.lag.unwrap_or(i64::MAX / 4),
            None => i64::MAX / 4,
        }
    }
}
