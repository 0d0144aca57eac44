//! The UI in a real browser: Debian's chromium driven by playwright-core (`tests/browser/`), both
//! installed by `scripts/browser-deps.sh` (which `scripts/test.sh` runs), against this service on
//! PostgreSQL and Garage with two ingested calls; a third call is published while the live page is
//! open. Screenshots of every page land in `$INSIGHTS_UI_SCREENSHOTS` (default
//! `<target dir>/ui-screenshots`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use call_insights::stt::SttConfig;
use call_insights::stt_replay::jobs::run_worker;
use common::calls::{ingest_ui_call, script_fakes};
use common::{Db, Store};
use std::process::Stdio;
use testkit::stt::FakeProvider;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

fn screenshots_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("INSIGHTS_UI_SCREENSHOTS") {
        return d.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_in_chromium() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium and playwright-core are missing: run scripts/browser-deps.sh (scripts/test.sh does)"
    );
    // Every STT provider as a loopback fake speaking its wire format (Deepgram drops the last word).
    let fakes = FakeProvider::start_all().await.unwrap();
    script_fakes(&fakes);
    let stt = SttConfig {
        providers: fakes
            .iter()
            .map(|f| {
                let mut c = f.config();
                c.poll_interval = std::time::Duration::from_millis(10);
                c
            })
            .collect(),
        language: Some("en".into()),
    };
    let env = common::spawn_with(Db::Postgres, Store::S3, move |c| {
        c.stt = stt;
        c.analysis_poll_ms = 50;
    })
    .await;
    let stop = CancellationToken::new();
    tokio::spawn(env.app.live.clone().run_reader(stop.clone()));
    tokio::spawn(run_worker(env.app.analysis_runner(), stop.clone()));
    // The browser reaches the service through a test-owned TCP proxy, so the live page's
    // connection can be cut and restored.
    let direct = env.serve_api().await;
    let proxy = common::proxy::Proxy::start(direct.trim_start_matches("http://")).await;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let s = ingest_ui_call(&env, "browser-call-1", "acme").await;
    ingest_ui_call(&env, "browser-call-2", "globex").await;
    let long = common::report("browser-long", 0, true, 200);
    env.publish_json(&long).await;
    env.drain(&mut env.consumer()).await;
    let long = env.session("browser-long").await.unwrap();
    // Their post-call analytics (the offline analyzer), so the dashboards and the review queue
    // have something to show.
    call_insights::analytics::worker::process_available(&env.app.analytics, &env.app.db, "ui", 100)
        .await
        .unwrap();
    let issues: Vec<String> = env
        .rows(&format!(
            "SELECT code FROM diagnosis_issues WHERE session_id = '{}'",
            s.id
        ))
        .await
        .iter()
        .filter_map(|r| r["code"].as_str().map(str::to_string))
        .collect();
    assert!(!issues.is_empty(), "the fixture has issues");
    let shots = screenshots_dir();

    let mut child = tokio::process::Command::new("node")
        .arg("ui.spec.mjs")
        .current_dir(&dir)
        .env("BASE", &base)
        .env("SESSION_ID", s.id.to_string())
        .env("LONG_SESSION_ID", long.id.to_string())
        .env("CALL_IDS", "browser-call-1,browser-call-2")
        .env("TURNS", "6")
        .env("ISSUES", issues.join(","))
        .env("LIVE_CALL_ID", "browser-live-1")
        .env("SHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Debian's nodejs)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ok = false;
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("browser: {line}");
            if line == "LIVE_READY" {
                // A call starts while the page watches: a partial report, consumed like any other.
                let mut r = common::report("browser-live-1", 0, false, 2);
                r["agent_id"] = serde_json::json!("booking-bot");
                env.publish_json(&r).await;
                env.drain(&mut env.consumer()).await;
                env.app.live.flush().await;
            }
            if line == "LIVE_CUT" {
                proxy.set(common::proxy::Mode::Down);
                tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
                // A call starts while the page cannot hear: it must see it after reconnecting.
                let r = common::report("browser-live-1-missed", 0, false, 2);
                env.publish_json(&r).await;
                env.drain(&mut env.consumer()).await;
                env.app.live.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
                proxy.set(common::proxy::Mode::Pass);
            }
            if line == "BROWSER_OK" {
                ok = true;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("the browser run finished within 3 minutes");
    let status = child.wait().await.unwrap();
    stop.cancel();
    assert!(
        status.success() && ok,
        "browser checks failed (see BROWSER_FAIL above); screenshots in {}",
        shots.display()
    );
    for page in [
        "sessions",
        "session",
        "session-dark",
        "stt-grid",
        "batch",
        "dashboards",
        "review",
        "batches",
        "reports",
        "live",
        "live-reconnecting",
        "live-reconnected",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}"
        );
    }
    assert_eq!(
        env.count("stt_reports").await,
        1,
        "the report filed from the page"
    );
    drop(fakes);
    env.cleanup().await;
}

/// Recordings: upload through the page, follow it to its session, read the recorded call's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_in_chromium() {
    use common::recorded_call::scripted_call;
    use common::recording_fakes::FakeTranscriber;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/browser-deps.sh (scripts/test.sh does)"
    );
    let call = scripted_call(true);
    let fake =
        FakeTranscriber::start(call_insights::stt::ProviderId::Deepgram, call.script()).await;
    let cfg = fake.config();
    let env = common::spawn_with(Db::Sqlite, Store::Fs, move |c| {
        c.stt.providers = vec![cfg];
        c.recording_poll_ms = 100;
    })
    .await;
    let stop = CancellationToken::new();
    tokio::spawn(std::sync::Arc::new(env.app.recording_worker()).run_until(stop.clone()));
    let base = env.serve_api().await;
    let wav = env.app.config.data_dir.join("browser-call.wav");
    call.stereo_wav(&wav);
    let shots = screenshots_dir();
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg("recordings.spec.mjs")
            .current_dir(&dir)
            .env("BASE", &base)
            .env("RECORDING_FILE", &wav)
            .env("TURNS", call.lines.len().to_string())
            .env("SHOTS", &shots)
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("the browser run finished within 3 minutes")
    .expect("node runs");
    stop.cancel();
    assert!(
        status.success(),
        "browser checks failed (see BROWSER_FAIL above); screenshots in {}",
        shots.display()
    );
    for page in [
        "recordings-upload",
        "recording-session",
        "recording-panel",
        "recordings",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}"
        );
    }
    drop(fake);
    env.cleanup().await;
}
