//! The real binary: crash recovery (SIGKILL at any moment), graceful shutdown (SIGTERM), health
//! endpoints and a Redis outage.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use call_insights::produce::{self, ProduceOptions};
use common::{Db, Store, eventually, spawn};

fn sim(calls: usize, audio: bool, prefix: &str) -> ProduceOptions {
    ProduceOptions {
        calls,
        partials: 2,
        audio,
        gzip: false,
        concurrency: 25,
        seed: 9,
        call_prefix: prefix.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_is_stored_once_even_when_the_process_is_killed_mid_ingest() {
    let env = spawn(Db::Postgres, Store::S3).await;
    let audio_calls = 6;
    let plain_calls = 300;
    let mut conn = env.conn().await;
    produce::publish(
        &mut conn,
        env.stream(),
        &sim(audio_calls, true, "kill-audio"),
        None,
    )
    .await
    .unwrap();
    produce::publish(
        &mut conn,
        env.stream(),
        &sim(plain_calls, false, "kill"),
        None,
    )
    .await
    .unwrap();
    let total = (audio_calls + plain_calls) as i64;

    let name = [
        ("INSIGHTS_CONSUMER_NAME", "replica-a"),
        ("INSIGHTS_BATCH_SIZE", "40"),
        ("INSIGHTS_LIVE_OUTBOX_GRACE_MS", "500"),
    ];
    let svc = env.start_service(&name);
    eventually(60, "some sessions stored", || async {
        env.count("call_sessions").await > 10
    })
    .await;
    svc.signal("KILL");
    drop(svc);
    let before_restart = env.count("call_sessions").await;
    assert!(
        before_restart < total,
        "the kill landed mid-ingest ({before_restart} of {total})"
    );

    let svc = env.start_service(&name);
    eventually(120, "stream drained", || async {
        env.unfinished().await == 0
    })
    .await;

    assert_eq!(env.count("call_sessions").await, total);
    let finals = env
        .rows("SELECT COUNT(*) AS n FROM call_sessions WHERE is_final AND report_seq = 2")
        .await;
    assert_eq!(finals[0]["n"], total, "every call ends at its final report");
    // Exactly the final snapshots' rows: no duplicates, nothing missing.
    let opts_audio = sim(audio_calls, true, "kill-audio");
    let opts_plain = sim(plain_calls, false, "kill");
    let (mut turns, mut events, mut segments) = (0usize, 0usize, 0usize);
    for (opts, n) in [(&opts_audio, audio_calls), (&opts_plain, plain_calls)] {
        for i in 0..n {
            let last = produce::generate_call(i, opts).pop().unwrap();
            let r = call_insights::ingest::decode_report(&last.payload).unwrap();
            turns += r.turns.len();
            events += r.events.len();
            segments += r.audio_segments.len();
        }
    }
    assert_eq!(env.count("conversation_turns").await as usize, turns);
    assert_eq!(env.count("session_events").await as usize, events);
    assert_eq!(env.count("audio_segments").await as usize, segments);
    let stored = env
        .rows("SELECT s3_key FROM audio_segments WHERE status = 'stored'")
        .await;
    assert_eq!(stored.len(), segments);
    for row in stored {
        let key = row["s3_key"].as_str().unwrap();
        assert!(
            env.app.store.get(None, key).await.unwrap().is_some(),
            "{key} exists in Garage"
        );
    }
    // Live events: what the killed process committed but had not appended is appended by the
    // restarted one's outbox sweep, so every call started and ended on the live stream: one event
    // each (a copy appended twice, killed between append and delete, has the same event_id).
    eventually(30, "the live-events outbox swept", || async {
        env.count("live_outbox").await == 0
    })
    .await;
    eprintln!(
        "outbox sweep rounds that appended events the killed process had committed but not appended: {}",
        svc.log_lines("live events left in the outbox appended")
    );
    let live = live_events_by_call(&env).await;
    for kind in ["call_started", "call_ended"] {
        let once = live
            .values()
            .filter(|events| events.iter().filter(|(k, _)| k == kind).count() == 1)
            .count();
        assert_eq!(once as i64, total, "every call has one {kind}");
    }
    env.cleanup().await;
}

/// The live events stream, by call: `(type, event_id)`, each distinct event once.
async fn live_events_by_call(
    env: &common::TestEnv,
) -> std::collections::HashMap<String, std::collections::BTreeSet<(String, String)>> {
    let mut out: std::collections::HashMap<_, std::collections::BTreeSet<_>> = Default::default();
    for (_, _, _, body) in env.live_entries().await {
        out.entry(body["call_id"].as_str().unwrap().to_string())
            .or_default()
            .insert((
                body["type"].as_str().unwrap().to_string(),
                body["event_id"].as_str().unwrap().to_string(),
            ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_acknowledges_it_and_exits_zero() {
    let env = spawn(Db::Sqlite, Store::Fs).await;
    produce::publish(
        &mut env.conn().await,
        env.stream(),
        &sim(200, false, "term"),
        None,
    )
    .await
    .unwrap();
    let mut svc = env.start_service(&[("INSIGHTS_BATCH_SIZE", "20")]);
    eventually(60, "ingest started", || async {
        env.count("call_sessions").await > 0
    })
    .await;
    svc.signal("TERM");
    let status = svc.wait_exit().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        env.pending_count().await,
        0,
        "nothing left delivered but unacknowledged"
    );
    // The process has exited; its last log lines may still be on their way through the reader thread.
    eventually(10, "shutdown logged", || async {
        svc.log_lines("consumer stopped") >= 1
    })
    .await;
    assert!(svc.log_lines("consumer stopped") == 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let env = spawn(Db::Postgres, Store::Fs).await;
    env.publish_json(&common::report("call-metrics", 0, true, 2))
        .await;
    let svc = env.start_service(&[]);
    eventually(30, "stored", || async {
        env.count("call_sessions").await == 1
    })
    .await;
    let http = reqwest::Client::new();
    let h = http.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = http.get(svc.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let m = svc.metrics().await;
    assert!(
        m.contains("call_insights_ingest_entries_stored_total 1"),
        "{m}"
    );
    let doc: serde_json::Value = http
        .get(svc.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/readyz"].is_object());
    env.cleanup().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_http_up_logs_once_and_ingest_resumes() {
    let port = free_port();
    let mut redis_proc = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let env = common::spawn_with(Db::Sqlite, Store::Fs, |c| c.redis_url = url.clone()).await;
    eventually(10, "private redis up", || async {
        env.redis.get_multiplexed_async_connection().await.is_ok()
    })
    .await;
    let svc = env.start_service(&[]);
    env.publish_json(&common::report("call-before-outage", 0, true, 2))
        .await;
    eventually(30, "stored", || async {
        env.count("call_sessions").await == 1
    })
    .await;

    redis_proc.kill().unwrap();
    redis_proc.wait().unwrap();
    let http = reqwest::Client::new();
    eventually(30, "readyz reports redis down", || async {
        http.get(svc.url("/readyz"))
            .send()
            .await
            .map(|r| r.status() == 503)
            .unwrap_or(false)
    })
    .await;
    assert_eq!(
        http.get(svc.url("/healthz")).send().await.unwrap().status(),
        200
    );
    eventually(30, "outage logged", || async {
        svc.log_lines("ingest paused") == 1
    })
    .await;

    let mut redis_proc = start_redis(port);
    eventually(10, "redis back", || async {
        env.redis.get_multiplexed_async_connection().await.is_ok()
    })
    .await;
    env.publish_json(&common::report("call-after-outage", 0, true, 2))
        .await;
    eventually(60, "ingest resumed", || async {
        env.count("call_sessions").await == 2
    })
    .await;
    // "ingest resumed" is logged right after the batch that stored it, and log lines reach the test
    // through a reader thread: wait for the line, then check there was exactly one of each.
    eventually(10, "resume logged", || async {
        svc.log_lines("ingest resumed") >= 1
    })
    .await;
    assert_eq!(
        svc.log_lines("ingest paused"),
        1,
        "one warning per outage, not per attempt"
    );
    assert_eq!(svc.log_lines("ingest resumed"), 1);
    drop(svc);
    env.cleanup().await;
    redis_proc.kill().ok();
    redis_proc.wait().ok();
}
