//! Live monitoring benchmark: figures only, never assertions.
//!
//!   eval "$(scripts/services.sh)"
//!   cargo bench --bench live [-- --calls 3000 --seconds 10]
//!
//! In one process (like `serve`): the consumer, the events reader and the HTTP API on a fresh
//! PostgreSQL database. 1) The maximum ingest rate: N one-report calls published at once, drained
//! with 0 and with 50 connected SSE clients. 2) Freshness: calls published at half that rate and at
//! the full rate for S seconds while one SSE client listens; for each call, the time from its XADD
//! to its `call_started` event arriving at the client, p50/p99.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[path = "support/mod.rs"]
mod support;

use call_insights::app::App;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn report(call_id: &str) -> String {
    serde_json::json!({
        "schema_version": 1, "report_type": "partial", "seq": 0, "call_id": call_id, "tenant_id": "acme",
        "agent_id": "bot", "started_at": chrono::Utc::now().to_rfc3339(),
        "turns": [
            {"index": 0, "role": "user", "content": "Hi, I'd like to move my appointment.", "start_ms": 0, "end_ms": 1500},
            {"index": 1, "role": "assistant", "content": "Sure, to which day?", "start_ms": 2300, "end_ms": 3500, "e2e_latency_ms": 820.0}
        ],
        "events": [{"seq": 0, "type": "user_started_speaking", "at_ms": 0, "turn_index": 0}],
    })
    .to_string()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// An SSE client counting `call_started` events and stamping their arrival by call id.
fn listen(
    base: String,
    query: &str,
    arrivals: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}/api/v1/monitor/stream?{query}");
    tokio::spawn(async move {
        let Ok(mut resp) = reqwest::get(url).await else {
            return;
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if let (Some(a), Some(i)) = (&arrivals, block.find("\"call_id\":\"")) {
                    let rest = &block[i + 11..];
                    let id: String = rest.chars().take_while(|c| *c != '"').collect();
                    a.lock().map(|mut m| m.insert(id, now)).ok();
                }
            }
        }
    })
}

async fn drain(
    app: &App,
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    n: usize,
) -> anyhow::Result<f64> {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg(&app.config.stream)
            .arg("*")
            .arg("payload")
            .arg(report(&format!("{prefix}-{i}")))
            .ignore();
    }
    pipe.query_async::<()>(conn).await?;
    let mut consumer = app.consumer();
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let r = consumer.process_next_batch().await?;
        done += r.read;
        if r.read == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut calls = 3000usize;
    let mut seconds = 10u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--calls" => calls = it.next().and_then(|v| v.parse().ok()).unwrap_or(calls),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            _ => {}
        }
    }
    let (bench_db, mut c) = support::fresh("lbench").await?;
    c.analytics.mode = Some(call_insights::analytics::Mode::Off);
    let app = Arc::new(App::build(c).await?);
    let stop = CancellationToken::new();
    tokio::spawn(app.live.clone().run_reader(stop.clone()));
    let base = support::serve(&app).await?;
    let client = redis::Client::open(app.config.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;

    // 1. Maximum ingest rate, without and with 50 connected clients.
    drain(&app, &mut conn, "warm", 500).await?;
    let without = drain(&app, &mut conn, "max0", calls).await?;
    let idle: Vec<_> = (0..50)
        .map(|_| listen(base.clone(), "call_id=nobody", None))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = drain(&app, &mut conn, "idle50", calls).await?;
    for c in idle {
        c.abort();
    }
    let busy: Vec<_> = (0..50)
        .map(|_| listen(base.clone(), "types=call_started", None))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_busy = drain(&app, &mut conn, "busy50", calls).await?;
    for c in busy {
        c.abort();
    }
    let again = drain(&app, &mut conn, "max0b", calls).await?;
    let mean = (without + again) / 2.0;
    println!(
        "ingest, {calls} one-report calls (2 turns, 1 event) on PostgreSQL: {without:.0} / {again:.0} entries/s with no SSE client (before / after); \
         {with_idle:.0} with 50 idle connected clients ({:+.1} % vs their mean); {with_busy:.0} with 50 clients each receiving and parsing every call_started in this same process ({:+.1} %)",
        (with_idle / mean - 1.0) * 100.0,
        (with_busy / mean - 1.0) * 100.0
    );

    // 2. Freshness at half and at the full rate, the consumer running as in `serve`.
    let consumer_stop = CancellationToken::new();
    // As `serve` runs it: blocking reads (the drains above polled without blocking).
    let mut settings = app.consumer_settings(0);
    settings.block = Duration::from_millis(200);
    let running = call_insights::ingest::InsightsStreamConsumer::new(
        settings,
        app.redis.clone(),
        app.ingestor(),
        app.metrics.clone(),
        app.partition_metrics[0].clone(),
    )
    .with_live(app.live.clone());
    let consumer = tokio::spawn(running.run(consumer_stop.clone()));
    for (label, rate) in [("half", without / 2.0), ("full", without)] {
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let l = listen(base.clone(), "types=call_started", Some(arrivals.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = (rate * seconds as f64) as usize;
        let mut sent: HashMap<String, Instant> = HashMap::with_capacity(total);
        let start = Instant::now();
        let mut i = 0usize;
        // Paced in 5 ms ticks, each tick's reports in one pipeline (as many producers would).
        while i < total {
            let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
            if due > i {
                let mut pipe = redis::pipe();
                let now = Instant::now();
                for k in i..due {
                    let call = format!("{label}-{k}");
                    pipe.cmd("XADD")
                        .arg(&app.config.stream)
                        .arg("*")
                        .arg("payload")
                        .arg(report(&call))
                        .ignore();
                    sent.insert(call, now);
                }
                pipe.query_async::<()>(&mut conn).await?;
                i = due;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrivals.lock().map(|m| m.len()).unwrap_or(0) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = arrivals.lock().map(|m| m.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = sent
            .iter()
            .filter_map(|(c, t0)| {
                got.get(c)
                    .map(|t1| t1.duration_since(*t0).as_secs_f64() * 1000.0)
            })
            .collect();
        let offered = total as f64 / start.elapsed().as_secs_f64();
        println!(
            "freshness at {label} rate ({offered:.0} calls/s offered for {seconds} s): {}/{total} events arrived; XADD → client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            pct(&mut lat, 1.0)
        );
        l.abort();
    }
    consumer_stop.cancel();
    stop.cancel();
    consumer.await.ok();
    let _: () = redis::cmd("DEL")
        .arg(&app.config.stream)
        .arg(call_insights::live::events_stream(&app.config.stream))
        .query_async(&mut conn)
        .await
        .unwrap_or(());
    drop(app);
    bench_db.drop_all().await?;
    Ok(())
}
