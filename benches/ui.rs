//! UI benchmark: figures only, never assertions.
//!
//!   eval "$(scripts/services.sh)"
//!   cargo bench --bench ui [-- --turns 200 --sessions 2000 --requests 200]
//!
//! On a fresh PostgreSQL database with the HTTP API and UI served in this process: one call of
//! `--turns` turns (every agent turn with a latency breakdown, so every row draws a waterfall, and
//! issues diagnosed) among `--sessions` one-report calls. Times, over `--requests` sequential
//! requests each: the session page of the long call, the sessions list (50 rows with badges), the
//! dashboards page; p50/p99 and page sizes. The JavaScript the UI ships is summed from the binary's
//! assets. (The browser's own time to a usable page is printed by the browser test:
//! "DOMContentLoaded after … ms".)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[path = "support/mod.rs"]
mod support;

use call_insights::app::App;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn long_call(turns: usize) -> String {
    let turns: Vec<serde_json::Value> = (0..turns)
        .map(|i| {
            let user = i % 2 == 0;
            let start = i as i64 * 4000;
            if user {
                serde_json::json!({"index": i, "role": "user", "content": format!("User sentence number {i}, about moving an appointment."),
                    "start_ms": start, "end_ms": start + 1800, "transcription_delay_ms": 140.0, "end_of_turn_delay_ms": 320.0 + (i % 7) as f64 * 20.0, "confidence": 0.93})
            } else {
                let llm = 250.0 + (i % 11) as f64 * 90.0;
                serde_json::json!({"index": i, "role": "assistant", "content": format!("Agent answer number {i}: your booking is confirmed for Thursday."),
                    "start_ms": start, "end_ms": start + 2500, "llm_ttft_ms": llm, "tts_ttfb_ms": 210.0, "e2e_latency_ms": 320.0 + llm + 210.0 + 35.0})
            }
        })
        .collect();
    let events: Vec<serde_json::Value> = (0..turns.len())
        .map(|i| serde_json::json!({"seq": i, "type": "user_started_speaking", "at_ms": i * 4000, "turn_index": i}))
        .collect();
    serde_json::json!({
        "schema_version": 1, "report_type": "final", "seq": 0, "call_id": "ui-bench-long", "tenant_id": "acme",
        "agent_id": "booking-bot", "started_at": chrono::Utc::now().to_rfc3339(), "ended_at": chrono::Utc::now().to_rfc3339(),
        "turns": turns, "events": events,
    })
    .to_string()
}

fn short_call(i: usize) -> String {
    serde_json::json!({
        "schema_version": 1, "report_type": "final", "seq": 0, "call_id": format!("ui-bench-{i}"), "tenant_id": "acme",
        "agent_id": format!("bot-{}", i % 4), "started_at": chrono::Utc::now().to_rfc3339(), "ended_at": chrono::Utc::now().to_rfc3339(),
        "turns": [
            {"index": 0, "role": "user", "content": "Hi, I'd like to move my appointment.", "start_ms": 0, "end_ms": 1500},
            {"index": 1, "role": "assistant", "content": "Sure, to which day?", "start_ms": 2300, "end_ms": 3500, "e2e_latency_ms": 820.0 + (i % 9) as f64 * 100.0}
        ],
        "events": [{"seq": 0, "type": "user_started_speaking", "at_ms": 0, "turn_index": 0}],
    })
    .to_string()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn time_page(
    http: &reqwest::Client,
    url: &str,
    n: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut ms = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).send().await?;
        anyhow::ensure!(r.status() == 200, "{url}: {}", r.status());
        size = r.bytes().await?.len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((pct(&mut ms, 0.5), pct(&mut ms, 0.99), size))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (mut turns, mut sessions, mut requests) = (200usize, 2000usize, 200usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--turns" => turns = val().unwrap_or(turns),
            "--sessions" => sessions = val().unwrap_or(sessions),
            "--requests" => requests = val().unwrap_or(requests),
            _ => {}
        }
    }
    let (bench_db, c) = support::fresh("uibench").await?;
    let app = Arc::new(App::build(c).await?);
    let base = support::serve(&app).await?;

    let client = redis::Client::open(app.config.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for i in 0..sessions {
        pipe.cmd("XADD")
            .arg(&app.config.stream)
            .arg("*")
            .arg("payload")
            .arg(short_call(i))
            .ignore();
    }
    pipe.cmd("XADD")
        .arg(&app.config.stream)
        .arg("*")
        .arg("payload")
        .arg(long_call(turns))
        .ignore();
    pipe.query_async::<()>(&mut conn).await?;
    let mut consumer = app.consumer();
    let mut done = 0;
    while done < sessions + 1 {
        let r = consumer.process_next_batch().await?;
        done += r.read;
        if r.read == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // The offline analyzer fills the dashboards (and the list's sentiment and lead badges).
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(call_insights::analytics::worker::run_worker(
        app.analytics.clone(),
        app.db.clone(),
        "bench".into(),
        stop.clone(),
    ));
    let t = Instant::now();
    loop {
        let n = <CountRow as sea_orm::FromQueryResult>::find_by_statement(
            sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM call_analytics",
            ),
        )
        .one(&app.db)
        .await?
        .map_or(0, |r| r.n);
        if n as usize > sessions || t.elapsed() > Duration::from_secs(120) {
            println!(
                "analytics of {n} calls stored in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let long =
        <IdRow as sea_orm::FromQueryResult>::find_by_statement(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT id FROM call_sessions WHERE call_id = 'ui-bench-long'",
        ))
        .one(&app.db)
        .await?
        .map(|r| (r.id,))
        .ok_or_else(|| anyhow::anyhow!("the long call was not stored"))?;

    let http = reqwest::Client::new();
    println!(
        "UI pages over HTTP on PostgreSQL, {requests} sequential requests each ({sessions} sessions + one of {turns} turns):"
    );
    for (label, path) in [
        (
            format!("session page, {turns} turns"),
            format!("/sessions/{}", long.0),
        ),
        ("sessions list, 50 rows".to_string(), "/".to_string()),
        ("dashboards, 7 days".to_string(), "/dashboards".to_string()),
    ] {
        time_page(&http, &format!("{base}{path}"), 5).await?;
        let (p50, p99, size) = time_page(&http, &format!("{base}{path}"), requests).await?;
        println!(
            "  {label:<28} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  {:>7.1} KiB",
            size as f64 / 1024.0
        );
    }
    let js = call_insights::ui::assets::js_bytes();
    println!(
        "JavaScript shipped (app.js + vendored htmx, wavesurfer + regions, uPlot): {:.1} KiB",
        js as f64 / 1024.0
    );

    stop.cancel();
    let _: () = redis::cmd("DEL")
        .arg(&app.config.stream)
        .query_async(&mut conn)
        .await
        .unwrap_or(());
    drop(consumer);
    drop(app);
    bench_db.drop_all().await?;
    Ok(())
}

#[derive(sea_orm::FromQueryResult)]
struct CountRow {
    n: i64,
}

#[derive(sea_orm::FromQueryResult)]
struct IdRow {
    id: uuid::Uuid,
}
