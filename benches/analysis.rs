//! Batch analysis benchmark: a batch of 50 sessions × their user turns × 3 renditions (pre/post
//! noise suppression, STT input) through the six fake providers, each answering after a fixed
//! latency. Prints the wall time next to the ideal schedule for the configured per-provider
//! concurrency: for each provider ceil(calls / concurrency) × latency, the slowest provider bounding
//! the whole batch. Figures only.
//!
//!   cargo bench --bench analysis [-- --sessions 50 --turns 3 --concurrency 4 --workers 4]
//!
//! Needs Redis (the sessions are ingested through the stream); the database is SQLite (`--postgres`:
//! a fresh database on INSIGHTS_TEST_DATABASE_URL's server) and audio a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::app::App;
use call_insights::audio::encode_wav_i16;
use call_insights::config::Config;
use call_insights::stt::{ProviderId, SttConfig};
use call_insights::stt_replay::jobs::{JobKind, NewJob, create_job, run_worker};
use sea_orm::EntityTrait;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::stt::FakeProvider;
use tokio_util::sync::CancellationToken;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fixed latency of each fake (ms): different, so one provider bounds the schedule.
fn latency_ms(id: ProviderId) -> u64 {
    match id {
        ProviderId::Groq => 40,
        ProviderId::Deepgram => 60,
        ProviderId::Cartesia => 70,
        ProviderId::Elevenlabs => 100,
        ProviderId::Gladia => 60,
        ProviderId::Openai => 80,
        ProviderId::Assemblyai => 90,
    }
}

fn tone(ms: i64, amplitude: f32) -> Vec<f32> {
    (0..(ms * 16) as usize)
        .map(|i| amplitude * (i as f32 * 300.0 * std::f32::consts::TAU / 16000.0).sin())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let sessions = arg("--sessions", 50) as usize;
    let turns = arg("--turns", 3) as i64;
    let concurrency = arg("--concurrency", 4) as usize;
    let workers = arg("--workers", 4) as usize;
    let tmp = std::env::temp_dir().join(format!(
        "call-insights-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&tmp)?;

    let fakes = FakeProvider::start_all().await?;
    for f in &fakes {
        f.set_transcript("I'd like to book a table for two please");
        f.set_latency(Duration::from_millis(latency_ms(f.id())));
    }
    let mut config = Config::defaults();
    config.redis_url = std::env::var("INSIGHTS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    config.stream = format!("bench:{}:sessions", uuid::Uuid::new_v4().simple());
    config.block_ms = 0;
    config.data_dir = tmp.clone();
    config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        tmp.join("bench.db").display()
    ));
    let postgres = std::env::args().any(|a| a == "--postgres");
    let pg_admin = std::env::var("INSIGHTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into());
    let pg_name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    if postgres {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(&pg_admin).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{pg_name}\""))
            .await?;
        let base = pg_admin
            .rsplit_once('/')
            .map_or(pg_admin.as_str(), |(b, _)| b);
        config.database_url = Some(format!("{base}/{pg_name}"));
    }
    config.audio_dir = Some(tmp.join("audio"));
    config.analysis_concurrency = workers;
    config.analysis_poll_ms = 20;
    config.stt = SttConfig {
        providers: fakes
            .iter()
            .map(|f| {
                let mut c = f.config();
                c.concurrency = concurrency;
                c.poll_interval = Duration::from_millis(5);
                c
            })
            .collect(),
        language: Some("en".into()),
    };
    let app = Arc::new(App::build(config).await?);

    // Sessions: `turns` user turns of 1.5 s, each with its STT input, in 60 s pre/post recordings.
    let redis = redis::Client::open(app.config.redis_url.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let total_ms = 60_000i64;
    let recording = encode_wav_i16(&tone(total_ms, 0.2), 16000);
    let stt = encode_wav_i16(&tone(1500, 0.2), 16000);
    for s in 0..sessions {
        let call = format!("bench-call-{s}");
        let mut report_turns = Vec::new();
        let mut segments = vec![
            json!({"segment_id": "pre", "segment_type": "full_pre_rnnoise", "offset_ms": 0, "audio": {"field": "audio:pre"}}),
            json!({"segment_id": "post", "segment_type": "full_post_rnnoise", "offset_ms": 0, "audio": {"field": "audio:post"}}),
        ];
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            ("audio:pre".into(), recording.clone()),
            ("audio:post".into(), recording.clone()),
        ];
        for t in 0..turns {
            let start = 1000 + t * 4000;
            report_turns.push(json!({"index": 2 * t, "role": "user", "content": "I'd like to book a table for two, please.",
                "start_ms": start, "end_ms": start + 1500}));
            report_turns.push(
                json!({"index": 2 * t + 1, "role": "assistant", "content": "Sure.",
                "start_ms": start + 2000, "end_ms": start + 3000}),
            );
            segments.push(json!({"segment_id": format!("stt-{t}"), "segment_type": "stt_input", "turn_index": 2 * t,
                "offset_ms": start, "audio": {"field": format!("audio:stt-{t}")}}));
            fields.push((format!("audio:stt-{t}"), stt.clone()));
        }
        let report = json!({"schema_version": 1, "report_type": "final", "seq": 0, "call_id": call, "tenant_id": "acme",
            "started_at": "2026-11-01T09:00:00Z", "ended_at": "2026-11-01T09:01:00Z",
            "turns": report_turns, "events": [], "audio_segments": segments});
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&app.config.stream)
            .arg("*")
            .arg("payload")
            .arg(serde_json::to_vec(&report)?);
        for (k, v) in &fields {
            cmd.arg(k).arg(v);
        }
        let _: String = cmd.query_async(&mut conn).await?;
    }
    let mut consumer = app.consumer();
    loop {
        let r = consumer.process_next_batch().await?;
        if r.read == 0 {
            break;
        }
    }
    let ids: Vec<uuid::Uuid> = entity::call_sessions::Entity::find()
        .all(&app.db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    anyhow::ensure!(
        ids.len() == sessions,
        "ingested {} of {sessions} sessions",
        ids.len()
    );

    let ingest_peak = peak_rss_mb();
    // Reset the peak (Linux: `5` to clear_refs) so the analysis phase is measured on its own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run_worker(app.analysis_runner(), stop.clone()));
    let started = Instant::now();
    let (job, _) = create_job(
        &app.db,
        &NewJob {
            kind: JobKind::Batch,
            tenant: None,
            sessions: ids,
            providers: None,
            language: Some("en".into()),
            filter: None,
        },
        None,
    )
    .await?;
    app.analysis.wake.notify_one();
    loop {
        let j = entity::analysis_jobs::Entity::find_by_id(job.id)
            .one(&app.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("job vanished"))?;
        if j.status != entity::analysis_jobs::Status::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let analysis_peak = peak_rss_mb();
    stop.cancel();
    worker.await?;

    // Per provider: calls made, the ideal schedule from the configured latency, and from the mean
    // latency the client measured (what a call really took, including transport and, for Gladia,
    // the upload and polling).
    let rows = entity::session_analyses::Entity::find()
        .all(&app.db)
        .await?;
    let completed = rows
        .iter()
        .filter(|r| r.status == entity::session_analyses::Status::Completed)
        .count();
    println!(
        "batch: {sessions} sessions × {turns} user turns × 3 renditions × {} providers; per-provider concurrency {concurrency}; {workers} sessions at once",
        fakes.len()
    );
    println!(
        "completed analyses: {completed}/{sessions} ({}); peak RSS of this process (service + fakes): {ingest_peak} MB while ingesting, {analysis_peak} MB while analysing",
        if postgres { "PostgreSQL" } else { "SQLite" },
    );
    let mut ideal_cfg: f64 = 0.0;
    let mut ideal_measured: f64 = 0.0;
    println!(
        "{:<11} {:>6} {:>7} {:>12} {:>14} {:>14}",
        "provider", "calls", "errors", "latency ms", "measured ms", "ideal s"
    );
    for f in &fakes {
        let mut latencies = Vec::new();
        let mut errors = 0usize;
        for r in &rows {
            let Some(result) = &r.result else { continue };
            for t in result["grid"]["turns"].as_array().into_iter().flatten() {
                for rend in t["renditions"].as_array().into_iter().flatten() {
                    for c in rend["results"].as_array().into_iter().flatten() {
                        if c["provider"] != f.id().as_str() {
                            continue;
                        }
                        match c["transcription"]["latency_ms"].as_f64() {
                            Some(l) => latencies.push(l),
                            None => errors += 1,
                        }
                    }
                }
            }
        }
        let calls = latencies.len() + errors;
        let rounds = calls.div_ceil(concurrency) as f64;
        let configured = latency_ms(f.id()) as f64;
        let measured = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
        let ideal = rounds * configured / 1000.0;
        ideal_cfg = ideal_cfg.max(ideal);
        ideal_measured = ideal_measured.max(rounds * measured / 1000.0);
        println!(
            "{:<11} {calls:>6} {errors:>7} {configured:>12.0} {measured:>14.1} {ideal:>14.2}",
            f.id().as_str()
        );
    }
    println!("wall time                  {wall:.2} s");
    println!(
        "ideal (configured latency) {ideal_cfg:.2} s  → wall / ideal = {:.3}",
        wall / ideal_cfg
    );
    println!(
        "ideal (measured latency)   {ideal_measured:.2} s  → wall / ideal = {:.3}",
        wall / ideal_measured
    );
    let _ = std::fs::remove_dir_all(&tmp);
    if postgres {
        use sea_orm::ConnectionTrait;
        app.db.clone().close().await.ok();
        let admin = sea_orm::Database::connect(&pg_admin).await?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{pg_name}\" WITH (FORCE)"
            ))
            .await?;
    }
    let _: () = redis::cmd("DEL")
        .arg(&app.config.stream)
        .query_async(&mut conn)
        .await
        .unwrap_or(());
    Ok(())
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
