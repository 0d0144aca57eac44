//! Analytics benchmark: figures only, never assertions.
//!
//!   eval "$(scripts/services.sh)"
//!   cargo bench --bench analytics                      # every section
//!   cargo bench --bench analytics -- --section llm     # llm | offline | dashboards
//!
//! - llm: N produced calls (≈13 turns each) ingested into a fresh database, then analysed through the
//!   loopback fake OpenAI-compatible server at a fixed latency, at concurrency 4 and 8: calls/s
//!   against the ideal N × latency / concurrency.
//! - offline: the offline analyzer's calls/s on one core, and its VADER's texts/s beside Python
//!   vaderSentiment 3.3.2 on the same texts (when `python3 -c "import vaderSentiment"` works; the
//!   bench installs it into the tools venv when it can).
//! - dashboards: 1,000,000 analysed calls in PostgreSQL (5 tenants, 8 agents, 30 days) with their
//!   rollups; p50/p99 of top-leads (24 h) and a 30-day overview through the domain functions.
//!
//! Options: --calls N (200) --latency-ms L (100) --rows R (1000000) --sqlite (llm section)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::analytics::dashboards::{self, Window};
use call_insights::analytics::offline::{OfflineAnalyzer, vader_compound};
use call_insights::analytics::{CallInput, Mode};
use call_insights::app::App;
use call_insights::config::Config;
use call_insights::produce::{self, ProduceOptions};
use sea_orm::{ConnectionTrait, Database, EntityTrait};
use std::time::{Duration, Instant};
use testkit::llm::FakeLlm;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Args {
    section: String,
    calls: usize,
    latency_ms: u64,
    rows: i64,
    sqlite: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        section: "all".into(),
        calls: 200,
        latency_ms: 100,
        rows: 1_000_000,
        sqlite: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--section" => a.section = it.next().unwrap_or(a.section),
            "--calls" => a.calls = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.calls),
            "--latency-ms" => {
                a.latency_ms = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.latency_ms)
            }
            "--rows" => a.rows = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.rows),
            "--sqlite" => a.sqlite = true,
            _ => {}
        }
    }
    a
}

/// A fresh PostgreSQL database (or SQLite file) for one measurement.
struct Scratch {
    url: String,
    admin: Option<(String, String)>,
    tmp: std::path::PathBuf,
}

impl Scratch {
    async fn new(sqlite: bool) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let tmp = std::env::temp_dir().join(format!("call-insights-abench-{id}"));
        std::fs::create_dir_all(&tmp)?;
        if sqlite {
            return Ok(Scratch {
                url: format!("sqlite://{}?mode=rwc", tmp.join("bench.db").display()),
                admin: None,
                tmp,
            });
        }
        let admin_url = env_or(
            "INSIGHTS_TEST_DATABASE_URL",
            "postgres://root@127.0.0.1:5432/postgres",
        );
        let name = format!("abench_{id}");
        let admin = Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url)
            .to_string();
        Ok(Scratch {
            url: format!("{base}/{name}"),
            admin: Some((admin_url, name)),
            tmp,
        })
    }

    fn config(&self, stream: &str) -> Config {
        let mut c = Config::defaults();
        c.redis_url = env_or("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        c.database_url = Some(self.url.clone());
        c.data_dir = self.tmp.clone();
        c.stream = stream.to_string();
        c.consumer_name = Some("bench".into());
        c.block_ms = 0;
        c
    }

    async fn drop_db(self) {
        if let Some((admin_url, name)) = self.admin
            && let Ok(admin) = Database::connect(&admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let r = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(r.try_get::<i64>("", "n")?)
}

async fn llm_section(a: &Args) -> anyhow::Result<()> {
    println!(
        "== LLM path: {} calls through the fake at {} ms per completion",
        a.calls, a.latency_ms
    );
    let llm = FakeLlm::start().await?;
    llm.set_latency(Duration::from_millis(a.latency_ms));
    for concurrency in [4usize, 8] {
        let scratch = Scratch::new(a.sqlite).await?;
        let stream = format!("abench:{}:sessions", uuid::Uuid::new_v4().simple());
        let mut config = scratch.config(&stream);
        config.analytics.mode = Some(Mode::Llm);
        config.analytics.llm = llm.settings();
        config.analytics.llm.concurrency = concurrency;
        config.analytics.poll_ms = 20;
        let app = std::sync::Arc::new(App::build(config).await?);
        let client = call_insights::broker::Broker::open(&app.config.redis_url, None)?;
        let mut conn = produce::connect(&client).await?;
        let opts = ProduceOptions {
            calls: a.calls,
            partials: 0,
            audio: false,
            gzip: false,
            concurrency: 1,
            seed: 7,
            call_prefix: "abench".into(),
            ..Default::default()
        };
        produce::publish(&mut conn, &stream, &opts, None).await?;
        let mut consumer = app.consumer();
        while consumer.process_next_batch().await?.read > 0 {}
        let queued = count(&app.db, "SELECT COUNT(*) AS n FROM analytics_queue").await?;
        let before = llm.completions();
        let stop = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let worker = tokio::spawn(call_insights::analytics::worker::run_worker(
            app.analytics.clone(),
            app.db.clone(),
            "bench".into(),
            stop.clone(),
        ));
        loop {
            let done = count(&app.db, "SELECT COUNT(*) AS n FROM call_analytics").await?;
            if done >= queued {
                break;
            }
            if started.elapsed() > Duration::from_secs(900) {
                anyhow::bail!("analytics did not finish within 15 minutes ({done}/{queued})");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = started.elapsed().as_secs_f64();
        stop.cancel();
        worker.await?;
        let completed = count(
            &app.db,
            "SELECT COUNT(*) AS n FROM call_analytics WHERE status = 'completed'",
        )
        .await?;
        let ideal = queued as f64 * a.latency_ms as f64 / 1000.0 / concurrency as f64;
        println!(
            "concurrency {concurrency}: {queued} calls ({completed} completed, {} completions) in {wall:.2} s = {:.1} calls/s; ideal {ideal:.2} s = {:.1} calls/s; wall/ideal {:.3}; peak in flight at the fake {}",
            llm.completions() - before,
            queued as f64 / wall,
            queued as f64 / ideal,
            wall / ideal,
            llm.peak_in_flight()
        );
        let _: () = redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .unwrap_or(());
        drop(app);
        scratch.drop_db().await;
    }
    Ok(())
}

async fn offline_section() -> anyhow::Result<()> {
    println!("== Offline analyzer (one core)");
    // Calls built the way `produce` writes them: caller and agent turns of realistic length.
    let templates = [
        "Hi, I'd like to move my appointment to Thursday afternoon if that's possible.",
        "I was charged twice for the same order last week and I'm really not happy about it.",
        "Great, thank you so much, that works perfectly for me.",
        "Can you tell me how much the premium plan costs per month?",
        "This is the third time I'm calling, nobody ever fixes anything.",
        "Okay, that sounds fine, please go ahead.",
    ];
    let agent =
        "Sure, I can help with that. I have updated your account and sent you a confirmation.";
    let session = entity::call_sessions::Model {
        id: uuid::Uuid::nil(),
        call_id: "bench".into(),
        room_id: None,
        job_id: None,
        tenant_id: "t".into(),
        agent_id: None,
        channel_type: None,
        stt_provider: None,
        stt_model: None,
        llm_provider: None,
        llm_model: None,
        tts_provider: None,
        tts_model: None,
        vad_threshold: None,
        noise_suppression_enabled: None,
        rnnoise_enabled: None,
        started_at: chrono::Utc::now(),
        ended_at: None,
        duration_seconds: Some(90.0),
        close_reason: None,
        was_transferred: None,
        error: None,
        total_user_turns: 6,
        total_agent_turns: 6,
        avg_e2e_latency_ms: None,
        has_near_miss: false,
        has_issues: false,
        issue_summary: None,
        report_seq: 0,
        is_final: true,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let calls: Vec<CallInput> = (0..2000)
        .map(|c| CallInput {
            session: session.clone(),
            turns: (0..12)
                .map(|i| entity::conversation_turns::Model {
                    session_id: uuid::Uuid::nil(),
                    turn_index: i,
                    role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
                    content: if i % 2 == 0 {
                        templates[(c + i as usize) % templates.len()].into()
                    } else {
                        agent.into()
                    },
                    start_ms: None,
                    end_ms: None,
                    interrupted: None,
                    stt_confidence: None,
                    transcription_delay_ms: None,
                    end_of_turn_delay_ms: None,
                    llm_ttft_ms: None,
                    tts_ttfb_ms: None,
                    e2e_latency_ms: Some(800.0),
                    tool_calls: None,
                    report_seq: 0,
                })
                .collect(),
            events: vec![],
            issues: vec![],
        })
        .collect();
    let profiles = call_insights::analytics::profile::Profiles::default();
    let profile = profiles.for_agent(None);
    let analyzer = OfflineAnalyzer;
    let _ = analyzer.analyse(&calls[0], profile);
    let t = Instant::now();
    let mut score = 0.0;
    for c in &calls {
        score += analyzer.analyse(c, profile).sentiment_score;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "offline analyzer: {} calls (12 turns) in {secs:.3} s = {:.0} calls/s (checksum {score:.2})",
        calls.len(),
        calls.len() as f64 / secs
    );

    let texts: Vec<String> = (0..20_000)
        .map(|i| templates[i % templates.len()].to_string())
        .collect();
    let t = Instant::now();
    let mut sum = 0.0;
    for s in &texts {
        sum += vader_compound(s);
    }
    let rust = texts.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "VADER (vader-parity, Rust): {} texts = {rust:.0} texts/s (checksum {sum:.2})",
        texts.len()
    );
    let tools = env_or("CALL_INSIGHTS_TOOLS", "/opt/call-insights-tools");
    let python = format!("{tools}/venv/bin/python");
    let python = if std::path::Path::new(&python).exists() {
        python
    } else {
        "python3".into()
    };
    let have = |py: &str| {
        std::process::Command::new(py)
            .args(["-c", "import vaderSentiment"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have(&python) {
        let _ = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q", "vaderSentiment==3.3.2"])
            .status();
    }
    if !have(&python) {
        println!(
            "Python vaderSentiment: not installed (pip install vaderSentiment==3.3.2), skipped"
        );
        return Ok(());
    }
    let file = std::env::temp_dir().join("call-insights-vader-texts.txt");
    std::fs::write(&file, texts.join("\n"))?;
    let script = format!(
        "import time\nfrom vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer\na=SentimentIntensityAnalyzer()\nt=[l.rstrip('\\n') for l in open({:?})]\ns=time.perf_counter()\nx=sum(a.polarity_scores(v)['compound'] for v in t)\ne=time.perf_counter()-s\nprint(len(t)/e, round(x,2))",
        file.display().to_string()
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let py: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let checksum = parts.next().unwrap_or("?");
    println!(
        "Python vaderSentiment 3.3.2: {py:.0} texts/s (checksum {checksum}); Rust is {:.1}× faster on the same texts",
        rust / py.max(1e-9)
    );
    let _ = std::fs::remove_file(file);
    Ok(())
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn dashboards_section(a: &Args) -> anyhow::Result<()> {
    println!("== Dashboards over {} analysed calls (PostgreSQL)", a.rows);
    let scratch = Scratch::new(false).await?;
    let config = scratch.config("abench:dash");
    let app = App::build(config).await?;
    let db = &app.db;
    let t = Instant::now();
    let n = a.rows;
    // Calls spread over the last 30 days; 5 tenants, 8 agents; 97 % completed, 2 % skipped, 1 % failed.
    db.execute_unprepared(&format!(
        "INSERT INTO call_sessions (id, call_id, tenant_id, agent_id, started_at, ended_at, duration_seconds, total_user_turns, \
         total_agent_turns, has_near_miss, has_issues, report_seq, is_final, created_at, updated_at) \
         SELECT md5(g::text)::uuid, 'bench-' || g, 'tenant-' || (g % 5), 'agent-' || (g % 8), \
         now() - ((g * 2591) % 2592000) * interval '1 second', now() - ((g * 2591) % 2592000) * interval '1 second' + interval '90 seconds', \
         30 + g % 300, 6, 6, false, g % 7 = 0, 1, true, now(), now() FROM generate_series(1::bigint, {n}::bigint) g"
    ))
    .await?;
    db.execute_unprepared(
        "INSERT INTO call_analytics (session_id, tenant_id, call_id, agent_id, started_at, ended_at, status, schema_version, analyzer, model, \
         prompt_version, summary, sentiment, sentiment_score, intent, lead_score, satisfaction, escalated, resolution, topics, entities, \
         hot_lead, attempts, analyzed_report_seq, analyzed_at) \
         SELECT s.id, s.tenant_id, s.call_id, s.agent_id, s.started_at, s.ended_at, \
           CASE WHEN k % 100 < 97 THEN 'completed' WHEN k % 100 < 99 THEN 'skipped' ELSE 'failed' END, 1, 'llm', 'gpt-4o-mini', 'p1-bench', \
           'The caller asked about their booking.', CASE WHEN k % 3 = 0 THEN 'negative' ELSE 'positive' END, ((k % 200) - 100) / 100.0, \
           (ARRAY['info','booking','complaint','sales','support','other'])[(1 + k % 6)::int], ((k * 7919) % 101)::int, (1 + k % 5)::int, k % 11 = 0, \
           CASE WHEN k % 11 = 0 THEN 'escalated' WHEN k % 13 = 0 THEN 'dropped' ELSE 'resolved' END, '[\"billing\"]'::jsonb, \
           '{\"name\":null,\"email\":null,\"phone\":null,\"topic\":\"billing\"}', (k * 7919) % 101 >= 80 AND k % 6 = 3, 1, 1, now() \
         FROM (SELECT id, tenant_id, call_id, agent_id, started_at, ended_at, (('x' || substr(md5(call_id), 1, 8))::bit(32)::int & 2147483647)::bigint AS k FROM call_sessions) s",
    )
    .await?;
    db.execute_unprepared("UPDATE call_analytics SET sentiment = NULL, sentiment_score = NULL, intent = NULL, lead_score = NULL, satisfaction = NULL, escalated = NULL, resolution = NULL, hot_lead = false WHERE status <> 'completed'").await?;
    // The rollups, as the write path keeps them.
    db.execute_unprepared(
        "INSERT INTO analytics_rollups SELECT a.tenant_id, coalesce(a.agent_id, ''), to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24'), \
         coalesce(a.intent, ''), count(*), count(*) FILTER (WHERE a.status = 'completed'), count(*) FILTER (WHERE a.status = 'skipped'), \
         count(*) FILTER (WHERE a.status = 'failed'), count(*) FILTER (WHERE s.has_issues), coalesce(sum(s.duration_seconds), 0), count(s.duration_seconds), \
         coalesce(sum(a.sentiment_score), 0), count(a.sentiment_score), coalesce(sum(a.satisfaction), 0), count(a.satisfaction), \
         count(*) FILTER (WHERE a.escalated), count(*) FILTER (WHERE a.resolution = 'resolved'), count(*) FILTER (WHERE a.resolution = 'dropped'), \
         count(*) FILTER (WHERE a.hot_lead) FROM call_analytics a JOIN call_sessions s ON s.id = a.session_id GROUP BY 1, 2, 3, 4",
    )
    .await?;
    db.execute_unprepared(
        "INSERT INTO analytics_latency_rollups SELECT tenant_id, coalesce(agent_id, ''), to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24'), \
         70 + (lead_score % 20), count(*) * 6 FROM call_analytics WHERE lead_score IS NOT NULL GROUP BY 1, 2, 3, 4",
    )
    .await?;
    db.execute_unprepared(
        "INSERT INTO analytics_topic_rollups SELECT tenant_id, coalesce(agent_id, ''), to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24'), \
         intent, 'billing', count(*) FROM call_analytics WHERE status = 'completed' GROUP BY 1, 2, 3, 4",
    )
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    let rollup_rows = count(db, "SELECT COUNT(*) AS n FROM analytics_rollups").await?;
    println!(
        "loaded {n} sessions + analytics rows and {rollup_rows} hourly rollup rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let keys = &app.analytics.keys;
    let runs = 300;
    let measure = async |name: &str, hours: i64, tenant: Option<&str>| -> anyhow::Result<()> {
        let mut lat = Vec::with_capacity(runs);
        for i in 0..runs + 10 {
            let w = Window::last_hours(tenant.map(str::to_string), None, hours);
            let t = Instant::now();
            match name {
                "top-leads" => {
                    let items = dashboards::top_leads(db, keys, &w, 20).await?;
                    std::hint::black_box(items.len());
                }
                "overview" => {
                    std::hint::black_box(dashboards::overview(db, &w).await?.total_calls);
                }
                "quality" => {
                    std::hint::black_box(dashboards::quality(db, &w).await?.len());
                }
                _ => {
                    std::hint::black_box(dashboards::intents(db, &w).await?.len());
                }
            }
            if i >= 10 {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        println!(
            "{name:<10} {:>4} h, {}: p50 {:.2} ms, p99 {:.2} ms over {runs} runs",
            hours,
            tenant.unwrap_or("every tenant"),
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.99)
        );
        Ok(())
    };
    measure("top-leads", 24, Some("tenant-1")).await?;
    measure("top-leads", 24, None).await?;
    measure("overview", 30 * 24, Some("tenant-1")).await?;
    measure("overview", 30 * 24, None).await?;
    measure("intents", 30 * 24, Some("tenant-1")).await?;
    measure("quality", 7 * 24, Some("tenant-1")).await?;
    let _ = entity::call_analytics::Entity::find().one(db).await?;
    drop(app);
    scratch.drop_db().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = parse_args();
    let all = a.section == "all";
    if all || a.section == "llm" {
        llm_section(&a).await?;
    }
    if all || a.section == "offline" {
        offline_section().await?;
    }
    if all || a.section == "dashboards" {
        dashboards_section(&a).await?;
    }
    Ok(())
}
