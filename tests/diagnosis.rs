//! Diagnosis through the real pipeline: stored with the session in the ingest transaction, replaced
//! by newer reports, idempotent, quiet on clean calls with real audio, configurable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::produce::{self, ProduceOptions};
use common::{Db, Store, contract_dir, report, spawn, spawn_with};
use serde_json::json;

on_both_stacks!(
    a_faulty_call_is_stored_with_its_diagnosis,
    a_newer_report_replaces_the_issues,
    clean_simulated_calls_with_audio_get_no_warning_or_critical,
    the_same_snapshot_gives_the_same_issue_rows_from_memory_and_from_the_database,
);

fn faulty(call_id: &str, seq: i64, is_final: bool) -> serde_json::Value {
    let mut r = report(call_id, seq, is_final, 4);
    r["turns"][1]["e2e_latency_ms"] = json!(2300.0);
    r["turns"][1]["llm_ttft_ms"] = json!(1800.0);
    r["events"] = json!([
        {"seq": 0, "type": "user_stopped_speaking", "at_ms": 41000, "data": {"speech_duration_ms": 1500}},
        {"seq": 1, "type": "llm_error", "at_ms": 42000, "data": {"message": "upstream timeout", "recoverable": false}},
    ]);
    r
}

async fn a_faulty_call_is_stored_with_its_diagnosis(db: Db, store: Store) {
    let env = spawn(db, store).await;
    env.publish_json(&faulty("call-faulty", 0, true)).await;
    env.drain(&mut env.consumer()).await;
    let s = env.session("call-faulty").await.unwrap();
    assert!(s.has_issues);
    let summary = s.issue_summary.unwrap();
    assert!(summary.starts_with("2 critical, 2 warnings: dropped utterance at 00:41; pipeline error at 00:42; high end-to-end latency"), "{summary}");
    let rows = env.rows("SELECT ordinal, code, severity, at_ms, evidence FROM diagnosis_issues ORDER BY ordinal").await;
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        [
            "dropped_utterance",
            "pipeline_error",
            "high_e2e_latency",
            "slow_llm_ttft"
        ],
        "{rows:?}"
    );
    assert_eq!(rows[0]["severity"], "critical");
    assert_eq!(rows[0]["at_ms"], 41000);
    let evidence: serde_json::Value = match &rows[2]["evidence"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    assert_eq!(evidence["dominant"], "llm_ttft");
    assert_eq!(evidence["threshold_ms"], 1500.0);
    env.cleanup().await;
}

async fn a_newer_report_replaces_the_issues(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let mut consumer = env.consumer();
    env.publish_json(&faulty("call-fixed", 0, false)).await;
    env.drain(&mut consumer).await;
    // On a partial report the utterance at 41 s is still inside its 5 s window: not judged yet.
    let codes: Vec<String> = env
        .rows("SELECT code FROM diagnosis_issues ORDER BY ordinal")
        .await
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        codes,
        ["pipeline_error", "high_e2e_latency", "slow_llm_ttft"]
    );
    let mut fixed = report("call-fixed", 1, true, 4);
    fixed["turns"][1]["e2e_latency_ms"] = json!(900.0);
    fixed["events"] = json!([
        {"seq": 0, "type": "user_stopped_speaking", "at_ms": 41000, "data": {"speech_duration_ms": 1500}},
        {"seq": 1, "type": "llm_error", "at_ms": 42000, "data": {"message": "upstream timeout", "recoverable": true}},
        {"seq": 2, "type": "user_transcript", "at_ms": 41200, "data": {"final": true, "transcript": "hello"}},
    ]);
    env.publish_json(&fixed).await;
    env.drain(&mut consumer).await;
    let s = env.session("call-fixed").await.unwrap();
    let codes: Vec<String> = env
        .rows("SELECT code FROM diagnosis_issues ORDER BY ordinal")
        .await
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["recovered_pipeline_error"], "{codes:?}");
    assert!(!s.has_issues, "{:?}", s.issue_summary);
    assert_eq!(
        s.issue_summary.as_deref(),
        Some("1 info: recovered pipeline error at 00:42")
    );
    env.cleanup().await;
}

async fn clean_simulated_calls_with_audio_get_no_warning_or_critical(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let opts = ProduceOptions {
        calls: 4,
        partials: 1,
        audio: true,
        gzip: false,
        concurrency: 2,
        seed: 11,
        call_prefix: "clean".into(),
        ..Default::default()
    };
    produce::publish(&mut env.conn().await, env.stream(), &opts, None)
        .await
        .unwrap();
    env.publish(&std::fs::read(contract_dir().join("examples/final-basic.json")).unwrap())
        .await;
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!(r.stored + r.stale, 9, "{r:?}");
    let serious = env
        .rows("SELECT code, title FROM diagnosis_issues WHERE severity <> 'info'")
        .await;
    assert!(serious.is_empty(), "{serious:?}");
    let levels = env.rows("SELECT segment_id, speech_levels FROM audio_segments WHERE segment_type = 'full_pre_rnnoise'").await;
    assert_eq!(levels.len(), 4);
    assert!(
        levels.iter().all(|l| !l["speech_levels"].is_null()),
        "{levels:?}"
    );
    assert_eq!(
        env.rows("SELECT id FROM call_sessions WHERE has_issues")
            .await
            .len(),
        0
    );
    env.cleanup().await;
}

/// Ingest diagnoses a new call from memory; `rediagnose` reads the stored snapshot back. Both must give
/// the same rows: the same snapshot gives the same issues (ids included) and flags.
async fn the_same_snapshot_gives_the_same_issue_rows_from_memory_and_from_the_database(
    db: Db,
    store: Store,
) {
    let env = spawn(db, store).await;
    let mut r = faulty("call-idem", 0, true);
    r["turns"][0]["stt_confidence"] = json!(0.4);
    r["events"].as_array_mut().unwrap().push(
        json!({"seq": 2, "type": "near_miss", "at_ms": 3000, "data": {"max_probability": 0.4}}),
    );
    env.publish_json(&r).await;
    env.drain(&mut env.consumer()).await;
    let issues = "SELECT id, session_id, ordinal, code, severity, title, detail, turn_index, at_ms, evidence FROM diagnosis_issues ORDER BY ordinal";
    let flags = "SELECT has_issues, has_near_miss, issue_summary FROM call_sessions";
    let (before, before_flags) = (env.rows(issues).await, env.rows(flags).await);
    assert!(before.len() >= 5, "{before:?}");
    let id = env.session("call-idem").await.unwrap().id;
    call_insights::diagnosis::rediagnose(&env.app.db, &[id], &env.app.thresholds)
        .await
        .unwrap();
    assert_eq!(env.rows(issues).await, before);
    assert_eq!(env.rows(flags).await, before_flags);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnosis_thresholds_come_from_the_config_file_and_a_bad_file_fails_start_up() {
    let dir = std::env::temp_dir().join(format!("diag-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "high_e2e_latency_ms = 3000\nslow_llm_ttft_ms = 2000\n",
    )
    .unwrap();
    let env = spawn_with(Db::Sqlite, Store::Fs, |c| {
        c.diagnosis_config = Some(good.display().to_string())
    })
    .await;
    env.publish_json(&faulty("call-relaxed", 0, true)).await;
    env.drain(&mut env.consumer()).await;
    let codes: Vec<String> = env
        .rows("SELECT code FROM diagnosis_issues")
        .await
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !codes
            .iter()
            .any(|c| c == "high_e2e_latency" || c == "slow_llm_ttft"),
        "{codes:?}"
    );
    env.cleanup().await;

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "high_e2e_latency_msec = 3000\n").unwrap();
    let mut config = call_insights::config::Config::defaults();
    config.diagnosis_config = Some(bad.display().to_string());
    config.data_dir = dir.clone();
    let err = call_insights::app::App::build(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("high_e2e_latency_msec") && err.contains("bad.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
