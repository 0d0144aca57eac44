//! Full-call analysis, batch jobs and STT reports end to end: the real API over a real database and
//! store (PostgreSQL + Garage, SQLite + folder), STT providers faked on loopback in their exact wire
//! formats.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::stt::{ProviderId, SttConfig};
use call_insights::stt_replay::jobs::run_worker;
use common::calls::*;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::stt::FakeProvider;
use tokio_util::sync::CancellationToken;

on_both_stacks!(
    full_call_analysis_is_run_stored_and_listed,
    batches_show_progress_and_cancel_stops_provider_calls,
    reports_are_archived_downloaded_and_analysed
);

const ACME: &str = "acme-key-1234";
const OTHER: &str = "other-key-1234";

fn stt_config(fakes: &[FakeProvider], concurrency: usize) -> SttConfig {
    SttConfig {
        providers: fakes
            .iter()
            .map(|f| {
                let mut c = f.config();
                c.concurrency = concurrency;
                c.poll_interval = Duration::from_millis(10);
                c
            })
            .collect(),
        language: Some("en".into()),
    }
}

async fn spawn_analysing(
    db: Db,
    store: Store,
    fakes: &[FakeProvider],
    concurrency: usize,
) -> TestEnv {
    let stt = stt_config(fakes, concurrency);
    spawn_with(db, store, move |c| {
        c.stt = stt;
        c.api_keys = format!("{ACME}=acme,{OTHER}=other");
        c.analysis_poll_ms = 50;
    })
    .await
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        }
        .bearer_auth(key);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, ACME, None).await
    }
    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call("POST", path, ACME, body).await
    }
}

async fn api(env: &TestEnv) -> Api {
    Api {
        base: env.serve_api().await,
        http: reqwest::Client::new(),
    }
}

fn provider<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == name)
        .unwrap_or_else(|| panic!("{name} in {summary}"))
}

async fn full_call_analysis_is_run_stored_and_listed(db: Db, store: Store) {
    let fakes = FakeProvider::start_all().await.unwrap();
    script_fakes(&fakes);
    // ElevenLabs fails every rendition of turn 2.
    fakes[3].set_fail_when(|a| (said(a) == Some(TURNS[1].3)).then_some(503));
    let env = spawn_analysing(db, store, &fakes, 4).await;
    let session = ingest_call(&env, "analysis-call", "acme").await;
    let other = ingest_call(&env, "analysis-other", "acme").await;
    let api = api(&env).await;
    let path = format!("/api/v1/analysis/{}", session.id);

    // Nothing yet: 404 with a hint.
    let (status, body) = api.get(&path).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["details"]["hint"],
        format!("POST {path} runs the analysis")
    );

    let (status, body) = api.post(&format!("{path}?wait=true"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["call_id"], "analysis-call");
    let first_ran_at = body["ran_at"].as_str().unwrap().to_string();
    assert_eq!(body["providers"].as_array().unwrap().len(), 6);
    let grid = &body["result"]["grid"];
    let turns = grid["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    for t in turns {
        let kinds: Vec<&str> = t["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rendition"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["pre_rnnoise", "post_rnnoise", "stt_input"]);
    }
    let cell = &turns[0]["renditions"][2]["results"][0];
    assert_eq!(cell["provider"], "groq");
    assert_eq!(cell["transcription"]["transcript"], TURNS[0].3);
    assert_eq!(cell["wer_vs_original"]["wer"], 0.0);
    assert!(cell["transcription"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(turns[0]["renditions"][2]["clipping"]["peak_dbfs"].is_number());
    assert_eq!(turns[2]["renditions"][2]["status"], "missing");

    // Summaries: per provider over the 7 available renditions, per rendition, noise suppression.
    let summary = &body["result"]["summary"];
    assert_eq!(summary["reference"], "original_transcript");
    let groq = provider(summary, "groq");
    assert_eq!(
        (groq["calls"].as_u64(), groq["errors"].as_u64()),
        (Some(7), Some(0))
    );
    assert_eq!(groq["corpus_wer"], 0.0);
    assert_eq!(groq["latency_ms"]["count"], 7);
    assert!(groq["latency_ms"]["p95"].is_number());
    let deepgram = provider(summary, "deepgram");
    // One word short per cell: a deletion in turn 0's 4 cells; in turn 2's 3 cells "four five"
    // normalises to 45 against 456, a substitution.
    assert_eq!(deepgram["counts"]["deletions"], 4);
    assert_eq!(deepgram["counts"]["substitutions"], 3);
    assert!(deepgram["corpus_wer"].as_f64().unwrap() > 0.1);
    let eleven = provider(summary, "elevenlabs");
    assert_eq!(
        (eleven["ok"].as_u64(), eleven["errors"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(eleven["errors_by_kind"]["server"], 3);
    let renditions = summary["renditions"].as_array().unwrap();
    assert_eq!(renditions[0]["rendition"], "pre_rnnoise");
    assert_eq!(
        (
            renditions[0]["turns_available"].as_u64(),
            renditions[1]["turns_available"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(renditions[1]["turns_missing"], 1);
    let ns = &summary["noise_suppression"];
    assert_eq!(ns["verdict"], "no_difference", "{ns}");
    // Turns 0 and 2 on both renditions × 6 providers, minus ElevenLabs on turn 2.
    assert_eq!(ns["paired_cells"], 11);

    // Stored: GET answers without calling a provider.
    let calls_before: usize = fakes.iter().map(|f| f.requests().len()).sum();
    let (status, again) = api.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(again["result"], body["result"]);
    assert_eq!(
        fakes.iter().map(|f| f.requests().len()).sum::<usize>(),
        calls_before
    );

    // The summary alone, for dashboards.
    let (status, small) = api.get(&format!("{path}?view=summary")).await;
    assert_eq!(status, 200);
    assert!(small["result"].get("grid").is_none(), "{small}");
    assert_eq!(small["result"]["summary"], body["result"]["summary"]);
    assert_eq!(api.get(&format!("{path}?view=everything")).await.0, 400);
    // Every slot is back once the analysis is done.
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("call_insights_stt_slots_free{provider=\"groq\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("call_insights_stt_waiting{provider=\"gladia\",priority=\"batch\"} 0")
    );
    // Another tenant's key does not see it.
    let (status, _) = api.call("GET", &path, OTHER, None).await;
    assert_eq!(status, 404);

    // A re-run with other providers replaces it and says when and with what it ran.
    let (status, rerun) = api
        .post(&format!("{path}?wait=true&providers=groq,gladia"), None)
        .await;
    assert_eq!(status, 200, "{rerun}");
    let names: Vec<&str> = rerun["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["groq", "gladia"]);
    assert_eq!(rerun["requested_providers"], json!(["groq", "gladia"]));
    assert!(rerun["ran_at"].as_str().unwrap() > first_ran_at.as_str());
    assert_eq!(
        rerun["result"]["summary"]["providers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Bad requests in the common shape.
    let (status, body) = api.post(&format!("{path}?providers=whisperx"), None).await;
    assert_eq!(
        (status, body["details"]["parameter"].as_str()),
        (400, Some("providers")),
        "{body}"
    );
    let (status, _) = api.post("/api/v1/analysis/not-a-uuid", None).await;
    assert_eq!(status, 400);

    // Without waiting: 202 and the running state, then it completes.
    let other_path = format!("/api/v1/analysis/{}", other.id);
    let (status, body) = api.post(&other_path, None).await;
    assert!(status == 202 || status == 200, "{status} {body}");
    eventually(30, "the second analysis completes", || async {
        api.get(&other_path).await.1["status"] == "completed"
    })
    .await;

    // The list: newest first, filterable, without results.
    let (status, list) = api.get("/api/v1/analysis?status=completed&limit=1").await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["session_id"], other.id.to_string());
    assert!(items[0].get("result").is_none());
    let cursor = list["next_cursor"].as_str().unwrap();
    let (_, page2) = api
        .get(&format!(
            "/api/v1/analysis?status=completed&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(page2["items"][0]["session_id"], session.id.to_string());
    assert!(page2["next_cursor"].is_null());
    let (_, none) = api.call("GET", "/api/v1/analysis", OTHER, None).await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    env.cleanup().await;
}

/// Sessions with one short user turn each (STT input only): cheap to analyse many of.
async fn ingest_small_calls(env: &TestEnv, n: usize) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let call = format!("batch-call-{i}");
        let mut r = report(&call, 0, true, 2);
        r["turns"][0]["content"] = json!(TURNS[0].3);
        r["audio_segments"] = json!([
            {"segment_id": "stt-0", "segment_type": "stt_input", "turn_index": 0, "offset_ms": 0, "audio": {"field": "audio:stt-0"}},
        ]);
        env.publish_fields(&[
            ("payload", &serde_json::to_vec(&r).unwrap()),
            (
                "audio:stt-0",
                &call_insights::audio::encode_wav_i16(&tone(1200, 0.2), 16000),
            ),
        ])
        .await;
        env.drain(&mut env.consumer()).await;
        ids.push(env.session(&call).await.unwrap().id);
    }
    ids
}

async fn batches_show_progress_and_cancel_stops_provider_calls(db: Db, store: Store) {
    let fakes = vec![
        FakeProvider::start(ProviderId::Groq).await.unwrap(),
        FakeProvider::start(ProviderId::Deepgram).await.unwrap(),
    ];
    for f in &fakes {
        f.set_transcript(TURNS[0].3);
        f.set_latency(Duration::from_millis(250));
    }
    let env = spawn_analysing(db, store, &fakes, 1).await;
    let ids = ingest_small_calls(&env, 6).await;
    let api = api(&env).await;

    // More than 50 sessions, unknown sessions, both or neither selector: 400.
    let many: Vec<String> = (0..51).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (status, body) = api
        .post("/api/v1/analysis/batch", Some(json!({"session_ids": many})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 50 sessions per batch, got 51"),
        "{body}"
    );
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = api
        .post(
            "/api/v1/analysis/batch",
            Some(json!({"session_ids": [unknown]})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("sessions {unknown} not found"));
    let (status, _) = api.post("/api/v1/analysis/batch", Some(json!({}))).await;
    assert_eq!(status, 400);
    let (status, body) = api
        .post(
            "/api/v1/analysis/batch",
            Some(json!({"filter": {"tenant_id": "nobody"}})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Another tenant cannot batch acme's sessions; a provider not configured is a conflict.
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/analysis/batch",
            OTHER,
            Some(json!({"session_ids": [ids[0]]})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = api
        .post(
            "/api/v1/analysis/batch",
            Some(json!({"session_ids": [ids[0]], "providers": ["gladia"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // A batch made from a filter; one worker, one session at a time, one call per provider.
    let stop = CancellationToken::new();
    let mut runner = env.app.analysis_runner();
    runner.worker.concurrency = 1;
    let worker = tokio::spawn(run_worker(runner, stop.clone()));
    let (status, job) = api
        .post(
            "/api/v1/analysis/batch",
            Some(json!({"filter": {"tenant_id": "acme"}, "providers": ["groq", "deepgram"]})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["total"].as_u64(), job["kind"].as_str()),
        (Some(6), Some("batch"))
    );
    let job_path = format!("/api/v1/analysis/batch/{}", job["job_id"].as_str().unwrap());
    eventually(30, "two sessions analysed", || async {
        api.get(&job_path).await.1["done"].as_u64().unwrap() >= 2
    })
    .await;
    let (_, progress) = api.get(&job_path).await;
    assert_eq!(progress["status"], "running");
    assert_eq!(progress["items"].as_array().unwrap().len(), 6);
    let sum = ["done", "failed", "running", "queued", "cancelled"]
        .iter()
        .map(|k| progress[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(sum, 6, "{progress}");
    assert!(
        progress["items"][0]["call_id"]
            .as_str()
            .unwrap()
            .starts_with("batch-call-")
    );
    // The other tenant sees no such job.
    assert_eq!(api.call("GET", &job_path, OTHER, None).await.0, 404);

    let (status, cancelled) = api.post(&format!("{job_path}/cancel"), None).await;
    let cancelled_at = Instant::now();
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["running"], 0);
    assert_eq!(cancelled["queued"], 0);
    assert!(cancelled["cancelled"].as_u64().unwrap() >= 1, "{cancelled}");
    // Requests already on the wire when the cancel returned may still be read by the fake (their
    // `received` can trail the cancel by the scheduler's delay under load): let them land, then
    // check that nothing more arrives. A batch still running would send one call per provider
    // every 250 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let settled: Vec<usize> = fakes.iter().map(|f| f.requests().len()).collect();
    let late_starts: Vec<usize> = fakes
        .iter()
        .map(|f| {
            f.requests()
                .iter()
                .filter(|r| r.received > cancelled_at + Duration::from_millis(200))
                .count()
        })
        .collect();
    assert_eq!(
        late_starts,
        vec![0, 0],
        "provider calls started well after the cancel"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later: Vec<usize> = fakes.iter().map(|f| f.requests().len()).collect();
    assert_eq!(later, settled, "provider calls after the cancel");
    let (_, after) = api.get(&job_path).await;
    assert_eq!(
        after["done"], cancelled["done"],
        "nothing finished after the cancel"
    );
    // Cancelling again is fine; the analyses that completed are stored.
    assert_eq!(api.post(&format!("{job_path}/cancel"), None).await.0, 200);
    let done_session = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "completed")
        .unwrap();
    let (status, a) = api
        .get(&format!(
            "/api/v1/analysis/{}",
            done_session["session_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((status, a["status"].as_str()), (200, Some("completed")));

    // A small batch of explicit ids runs to the end; a finished job cannot be cancelled.
    let (status, job) = api
        .post(
            "/api/v1/analysis/batch",
            Some(json!({"session_ids": [ids[0], ids[1], ids[0]], "providers": ["groq"]})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["total"], 2, "duplicates count once");
    let job_path = format!("/api/v1/analysis/batch/{}", job["job_id"].as_str().unwrap());
    eventually(30, "the batch completes", || async {
        api.get(&job_path).await.1["status"] == "completed"
    })
    .await;
    let (_, done) = api.get(&job_path).await;
    assert_eq!(
        (done["done"].as_u64(), done["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let (status, body) = api.post(&format!("{job_path}/cancel"), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));

    // Jobs listed newest first with their counts, without items; per tenant.
    let (status, jobs) = api.get("/api/v1/analysis/batch?kind=batch").await;
    assert_eq!(status, 200, "{jobs}");
    let listed = jobs["items"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{jobs}");
    assert_eq!(
        (listed[0]["status"].as_str(), listed[0]["done"].as_u64()),
        (Some("completed"), Some(2))
    );
    assert_eq!(listed[1]["status"], "cancelled");
    assert_eq!(listed[1]["cancelled"], after["cancelled"]);
    assert!(listed[0].get("items").is_none());
    let (_, page) = api.get("/api/v1/analysis/batch?kind=batch&limit=1").await;
    let (_, page2) = api
        .get(&format!(
            "/api/v1/analysis/batch?kind=batch&limit=1&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page2["items"][0]["job_id"], listed[1]["job_id"]);
    let (_, cancelled_only) = api.get("/api/v1/analysis/batch?status=cancelled").await;
    assert_eq!(cancelled_only["items"].as_array().unwrap().len(), 1);
    let (_, theirs) = api.call("GET", "/api/v1/analysis/batch", OTHER, None).await;
    assert!(theirs["items"].as_array().unwrap().is_empty());
    stop.cancel();
    worker.await.unwrap();
    env.cleanup().await;
}

/// A Groq fake answering the small calls' transcript after 400 ms: slow enough to stop a service
/// mid-run.
async fn slow_groq() -> FakeProvider {
    let groq = FakeProvider::start(ProviderId::Groq).await.unwrap();
    groq.set_transcript(TURNS[0].3);
    groq.set_latency(Duration::from_millis(400));
    groq
}

/// The service's environment for `groq`, one session at a time, polling often, plus `more`.
fn groq_service_env(groq: &FakeProvider, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "INSIGHTS_GROQ_API_KEY".to_string(),
            groq.api_key().to_string(),
        ),
        ("INSIGHTS_GROQ_BASE_URL".to_string(), groq.base_url()),
        ("INSIGHTS_ANALYSIS_CONCURRENCY".to_string(), "1".to_string()),
        ("INSIGHTS_ANALYSIS_POLL_MS".to_string(), "100".to_string()),
    ];
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Enqueues a batch of `ids` on a running service; its job id.
async fn start_batch(service: &ServiceProcess, ids: &[uuid::Uuid]) -> String {
    let job: Value = reqwest::Client::new()
        .post(service.url("/api/v1/analysis/batch"))
        .json(&json!({"session_ids": ids}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    job["job_id"].as_str().expect("job created").to_string()
}

/// A service killed mid-batch: a second process takes over the abandoned item once its lease runs
/// out and finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resumes_after_a_crash_mid_run() {
    let groq = slow_groq().await;
    let env = spawn(Db::Postgres, Store::S3).await;
    let ids = ingest_small_calls(&env, 4).await;
    let extra = groq_service_env(
        &groq,
        &[
            ("INSIGHTS_GROQ_CONCURRENCY", "1"),
            ("INSIGHTS_ANALYSIS_LEASE_MS", "1500"),
        ],
    );
    let mut first = env.start_service(&as_refs(&extra));
    let job_id = start_batch(&first, &ids).await;
    let progress = |base: String| {
        let job_id = job_id.clone();
        async move { get_json(&format!("{base}/api/v1/analysis/batch/{job_id}")).await }
    };
    let base1 = first.url("");
    eventually(30, "one session done and the next running", || async {
        let p = progress(base1.clone()).await;
        p["done"].as_u64() >= Some(1) && p["running"].as_u64() == Some(1)
    })
    .await;
    first.signal("KILL");
    first.wait_exit().await;

    let second = env.start_service(&as_refs(&extra));
    let base2 = second.url("");
    eventually(60, "the job completes on the second process", || async {
        progress(base2.clone()).await["status"] == "completed"
    })
    .await;
    let p = progress(base2.clone()).await;
    assert_eq!(
        (p["done"].as_u64(), p["failed"].as_u64()),
        (Some(4), Some(0)),
        "{p}"
    );
    assert!(
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["attempts"] == 2),
        "the item in flight at the crash ran again: {p}"
    );
    assert_eq!(second.log_lines("reclaiming an abandoned analysis item"), 1);
    env.cleanup().await;
}

async fn reports_are_archived_downloaded_and_analysed(db: Db, store: Store) {
    let fakes = FakeProvider::start_all().await.unwrap();
    // Every provider hears "four five six" except Deepgram, which hears the live STT's mistake.
    for f in &fakes {
        let id = f.id();
        f.set_script(move |_| {
            if id == ProviderId::Deepgram {
                "My account number is for five sex."
            } else {
                TURNS[1].3
            }
            .to_string()
        });
    }
    let env = spawn_analysing(db, store, &fakes, 4).await;
    let session = ingest_call(&env, "report-call", "acme").await;
    let api = api(&env).await;

    // Bad reports: an agent turn, a missing turn, an unknown issue type, no session.
    let base = json!({"call_id": "report-call", "turn_index": 2, "expected_output": "my account number is four five six", "issue_type": "misrecognition"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let (status, body) = api
        .post("/api/v1/reports", Some(with("turn_index", json!(1))))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("assistant"),
        "{body}"
    );
    assert_eq!(
        api.post("/api/v1/reports", Some(with("turn_index", json!(99))))
            .await
            .0,
        404
    );
    let (status, body) = api
        .post(
            "/api/v1/reports",
            Some(with("session_id", json!(session.id))),
        )
        .await;
    assert_eq!(status, 400, "session_id and call_id together: {body}");
    let (status, body) = api
        .post(
            "/api/v1/reports",
            Some(with("issue_type", json!("bad_vibes"))),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        api.post(
            "/api/v1/reports",
            Some(with("call_id", json!("no-such-call")))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.call("POST", "/api/v1/reports", OTHER, Some(base.clone()))
            .await
            .0,
        404
    );

    let (status, report) = api
        .post(
            "/api/v1/reports",
            Some(with("notes", json!("digits misheard"))),
        )
        .await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["session_id"], session.id.to_string());
    assert_eq!(
        report["stt_output"], TURNS[1].3,
        "defaults to the turn's transcript"
    );
    assert_eq!(report["issue_type"], "misrecognition");
    assert_eq!(report["audio_status"], "stored");
    assert_eq!(report["clip_rendition"], "stt_input");
    assert!((report["clip_duration_ms"].as_f64().unwrap() - 1700.0).abs() < 1.0);
    let source = report["source_s3_key"].as_str().unwrap().to_string();
    let archive = report["archive_s3_key"].as_str().unwrap().to_string();
    // The archive copy exists in the archive (another bucket on S3, a folder otherwise).
    let archived = env
        .app
        .archive
        .store
        .get(None, &archive)
        .await
        .unwrap()
        .expect("archived");
    if store == Store::S3 {
        assert_eq!(report["archive_bucket"], "call-insights-archive-test");
        assert!(
            env.app.store.get(None, &archive).await.unwrap().is_none(),
            "not in the short-term bucket"
        );
    }
    let id = report["id"].as_str().unwrap().to_string();

    // Download: the short-term copy, then (once it is gone) the archive's.
    let audio_url = format!("{}/api/v1/reports/{id}/audio", api.base);
    let res = api
        .http
        .get(&audio_url)
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/wav");
    assert_eq!(res.headers()["x-audio-source"], "short_term");
    let bytes = res.bytes().await.unwrap();
    assert_eq!(&bytes[..], &archived[..]);
    assert_eq!(
        call_insights::audio::decode_wav(&bytes)
            .unwrap()
            .sample_rate,
        16000
    );
    env.app.store.delete(&source).await.unwrap();
    let res = api
        .http
        .get(&audio_url)
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-audio-source"], "archive");
    assert_eq!(&res.bytes().await.unwrap()[..], &archived[..]);
    assert_eq!(
        api.http
            .get(&audio_url)
            .bearer_auth(OTHER)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Analysis: 404 with a hint before, then every provider scored against expected_output.
    let (status, body) = api.get(&format!("/api/v1/reports/{id}/analysis")).await;
    assert_eq!(status, 404);
    assert!(
        body["details"]["hint"]
            .as_str()
            .unwrap()
            .contains("analyze")
    );
    let (status, analysis) = api
        .post(&format!("/api/v1/reports/{id}/analyze"), None)
        .await;
    assert_eq!(status, 200, "{analysis}");
    assert_eq!(analysis["status"], "completed");
    let result = &analysis["result"]["clip"];
    assert_eq!(
        result["expected_output"],
        "my account number is four five six"
    );
    assert_eq!(result["rendition"]["rendition"], "stt_input");
    let cells = result["rendition"]["results"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    // The turn's three renditions from the call's audio, scored against expected_output too.
    let turn = &analysis["result"]["turn"];
    assert_eq!(turn["turn_index"], 2, "{turn}");
    let renditions = turn["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 3);
    let mut turn_cells: Vec<&Value> = Vec::new();
    for r in renditions {
        assert_eq!(r["status"], "available", "{r}");
        turn_cells.extend(r["results"].as_array().unwrap());
    }
    assert_eq!(turn_cells.len(), 18);
    for c in cells.iter().chain(turn_cells) {
        let wer = c["wer_vs_expected"]["wer"].as_f64().unwrap();
        if c["provider"] == "deepgram" {
            // Normalised: "my account number is 456" vs "my account number is for 5 sex": 3 errors
            // over 5 words; as written, 3 of the 7 words differ.
            assert!((wer - 0.6).abs() < 1e-9, "{c}");
            let raw = c["wer_vs_expected"]["raw_wer"].as_f64().unwrap();
            assert!((raw - 3.0 / 7.0).abs() < 1e-9, "{c}");
        } else {
            assert_eq!(wer, 0.0, "{c}");
        }
    }
    let (status, cached) = api.get(&format!("/api/v1/reports/{id}/analysis")).await;
    assert_eq!(status, 200);
    assert_eq!(cached["result"], analysis["result"]);

    // Listed, filterable.
    let (_, list) = api.get("/api/v1/reports?issue_type=misrecognition").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["analysis_status"], "completed");
    let (_, none) = api.get("/api/v1/reports?issue_type=hallucination").await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let (_, one) = api.get(&format!("/api/v1/reports/{id}")).await;
    assert_eq!(one["notes"], "digits misheard");

    // A turn without STT input is clipped from a recording instead.
    let (status, bare) = api
        .post(
            "/api/v1/reports",
            Some(json!({"session_id": session.id, "turn_index": 4,
        "expected_output": "can you call me back tomorrow", "issue_type": "truncated"})),
        )
        .await;
    assert_eq!(status, 201, "{bare}");
    assert_eq!(
        bare["clip_rendition"], "pre_rnnoise",
        "turn 4 only exists in the pre-suppression recording"
    );
    env.cleanup().await;
}

/// `call-insights analyze --batch` as an operator runs it: ids or a filter, providers from the
/// environment, the job printed as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analyze_command_runs_a_batch_to_the_end() {
    let groq = FakeProvider::start(ProviderId::Groq).await.unwrap();
    groq.set_transcript(TURNS[0].3);
    let env = spawn(Db::Sqlite, Store::Fs).await;
    let ids = ingest_small_calls(&env, 3).await;
    let run = |batch: String, extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_call-insights"));
        cmd.env_clear()
            .envs(env.service_env())
            .env("INSIGHTS_GROQ_API_KEY", groq.api_key())
            .env("INSIGHTS_GROQ_BASE_URL", groq.base_url())
            .env("INSIGHTS_ANALYSIS_POLL_MS", "50")
            .args(["analyze", "--batch", &batch])
            .args(extra);
        cmd.output()
    };
    let out = run(format!("{},{}", ids[0], ids[1]), &[]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (job["status"].as_str(), job["done"].as_u64()),
        (Some("completed"), Some(2)),
        "{job}"
    );
    assert!(stderr.contains("completed: 2 done, 0 failed"), "{stderr}");
    // The analyses are stored like the API's.
    let stored = env.rows("SELECT status FROM session_analyses").await;
    assert_eq!(stored.len(), 2);

    // A filter, newest first, limited.
    let out = run(
        "tenant_id=acme".into(),
        &["--limit", "1", "--providers", "groq"],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["total"], 1);
    assert_eq!(job["filter"]["tenant_id"], "acme");

    // Clear refusals: an unknown filter field, an unconfigured provider.
    let out = run("colour=blue".into(), &[]).await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("colour"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(ids[0].to_string(), &["--providers", "deepgram"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INSIGHTS_DEEPGRAM_API_KEY"));
    env.cleanup().await;
}

/// Two workers on one PostgreSQL database (as two replicas would be) share a batch through
/// `FOR UPDATE SKIP LOCKED`: every item runs exactly once, both take some. Meanwhile a single
/// analysis runs too, and the provider — which answers 429 beyond 2 requests in flight — never
/// sees more than the process-wide bound of 2, whichever job the calls come from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_batch_and_the_provider_bound_holds_across_jobs() {
    let groq = FakeProvider::start(ProviderId::Groq).await.unwrap();
    groq.set_transcript(TURNS[0].3);
    groq.set_latency(Duration::from_millis(60));
    groq.set_concurrency_limit(2);
    let env = spawn_analysing(Db::Postgres, Store::S3, std::slice::from_ref(&groq), 2).await;
    let ids = ingest_small_calls(&env, 8).await;
    let full = ingest_call(&env, "single-call", "acme").await;
    let api = api(&env).await;
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let mut runner = env.app.analysis_runner();
        runner.worker.worker_id = name.to_string();
        runner.worker.concurrency = 2;
        workers.push(tokio::spawn(run_worker(runner, stop.clone())));
    }
    let (status, job) = api
        .post("/api/v1/analysis/batch", Some(json!({"session_ids": ids})))
        .await;
    assert_eq!(status, 202, "{job}");
    let (status, single) = api
        .post(&format!("/api/v1/analysis/{}?wait=true", full.id), None)
        .await;
    assert_eq!(
        (status, single["status"].as_str()),
        (200, Some("completed"))
    );
    let job_path = format!("/api/v1/analysis/batch/{}", job["job_id"].as_str().unwrap());
    eventually(60, "the batch completes", || async {
        api.get(&job_path).await.1["status"] == "completed"
    })
    .await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let items = env
        .rows("SELECT claimed_by, attempts, status FROM analysis_job_items WHERE job_id IN (SELECT id FROM analysis_jobs WHERE kind = 'batch')")
        .await;
    assert_eq!(items.len(), 8);
    for i in &items {
        assert_eq!(
            (i["attempts"].as_i64(), i["status"].as_str()),
            (Some(1), Some("completed")),
            "{i}"
        );
    }
    let by = |w: &str| items.iter().filter(|i| i["claimed_by"] == w).count();
    assert!(by("replica-a") >= 1 && by("replica-b") >= 1, "{items:?}");
    assert_eq!(by("replica-a") + by("replica-b"), 8);
    let refused = groq.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(
        refused, 0,
        "the provider saw more than 2 requests in flight"
    );
    env.cleanup().await;
}

/// SIGTERM mid-batch: the run in flight is aborted and its item handed back (`queued`, its attempt
/// not counted); the next start finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_items_back_and_a_restart_finishes_them() {
    let groq = slow_groq().await;
    let env = spawn(Db::Sqlite, Store::Fs).await;
    let ids = ingest_small_calls(&env, 3).await;
    let extra = groq_service_env(&groq, &[]);
    let mut first = env.start_service(&as_refs(&extra));
    let job_path = format!("/api/v1/analysis/batch/{}", start_batch(&first, &ids).await);
    let get = |url: String| async move { get_json(&url).await };
    let url1 = first.url(&job_path);
    eventually(30, "an item running", || async {
        get(url1.clone()).await["running"] == 1
    })
    .await;
    first.signal("TERM");
    assert!(first.wait_exit().await.success());
    let items = env
        .rows("SELECT status, attempts, claimed_by FROM analysis_job_items")
        .await;
    assert!(
        items
            .iter()
            .all(|i| i["status"] == "queued" || i["status"] == "completed"),
        "{items:?}"
    );
    assert!(items.iter().any(|i| i["status"] == "queued"), "{items:?}");
    assert!(
        items
            .iter()
            .filter(|i| i["status"] == "queued")
            .all(|i| i["attempts"] == 0 && i["claimed_by"].is_null()),
        "{items:?}"
    );
    let second = env.start_service(&as_refs(&extra));
    let url2 = second.url(&job_path);
    eventually(30, "the job completes after the restart", || async {
        get(url2.clone()).await["status"] == "completed"
    })
    .await;
    let p = get(url2).await;
    assert_eq!(
        (p["done"].as_u64(), p["failed"].as_u64()),
        (Some(3), Some(0)),
        "{p}"
    );
    env.cleanup().await;
}

/// A batch job over `ids`, created as the API does, claimed by nobody yet.
async fn create_batch_job(env: &TestEnv, ids: &[uuid::Uuid]) {
    use call_insights::stt_replay::jobs::{JobKind, NewJob, create_job};
    create_job(
        &env.app.db,
        &NewJob {
            kind: JobKind::Batch,
            tenant: None,
            sessions: ids.to_vec(),
            providers: None,
            language: None,
            filter: None,
        },
        None,
    )
    .await
    .unwrap();
}

/// An item that keeps being started without finishing is failed with its last error instead of
/// being claimed a fourth time; the others are claimed in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_started_three_times_is_failed_not_claimed_again() {
    use call_insights::stt_replay::jobs::claim;
    use sea_orm::ConnectionTrait;
    let env = spawn(Db::Sqlite, Store::Fs).await;
    let ids = ingest_small_calls(&env, 2).await;
    // The only job of this database.
    create_batch_job(&env, &ids).await;
    env.app
        .db
        .execute_unprepared(
            "UPDATE analysis_job_items SET attempts = 3, error = 'database: connection reset' WHERE position = 0",
        )
        .await
        .unwrap();
    let claimed = claim(&env.app.db, "w", Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].1.session_id, ids[1]);
    assert_eq!(claimed[0].1.attempts, 1);
    let failed = env
        .rows("SELECT status, error FROM analysis_job_items WHERE position = 0")
        .await;
    assert_eq!(failed[0]["status"], "failed");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("started 3 times without finishing")
            && error.contains("last error: database: connection reset"),
        "{error}"
    );
    // Nothing else to claim.
    assert!(
        claim(&env.app.db, "w", Duration::from_secs(30), 5)
            .await
            .unwrap()
            .is_empty()
    );
    env.cleanup().await;
}

/// The window the frozen-worker test below can only hit by luck, made certain: a worker claims an
/// item and stalls before its run begins; another worker takes the item over and finishes it; the
/// first then starts its run with its stale claim. It must write nothing: the finished analysis is
/// not turned back to `running`, the item keeps the second worker's outcome, and the lost claim is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_begun_after_its_item_was_taken_over_writes_nothing() {
    use call_insights::stt_replay::jobs::{WorkerSettings, claim, run_item};
    use sea_orm::ConnectionTrait;
    use std::sync::atomic::Ordering;
    let env = spawn(Db::Postgres, Store::Fs).await;
    let ids = ingest_small_calls(&env, 1).await;
    create_batch_job(&env, &ids).await;
    let stale = claim(&env.app.db, "stalled", Duration::from_millis(50), 1)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let taken = claim(&env.app.db, "other", Duration::from_secs(30), 1)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the expired claim is taken over");
    // What the other worker left when it finished the item.
    env.app
        .db
        .execute_unprepared(&format!(
            "INSERT INTO session_analyses (session_id, tenant_id, call_id, status, job_id, started_at, ran_at, updated_at) \
             SELECT id, tenant_id, call_id, 'completed', '{}', now(), now(), now() FROM call_sessions WHERE id = '{}'",
            taken[0].0.id, ids[0]
        ))
        .await
        .unwrap();
    async fn rows(env: &TestEnv) -> (Vec<Value>, Vec<Value>) {
        (
            env.rows("SELECT status, job_id, started_at, ran_at, updated_at FROM session_analyses")
                .await,
            env.rows(
                "SELECT status, claimed_by, attempts, lease_until, error FROM analysis_job_items",
            )
            .await,
        )
    }
    let before = rows(&env).await;
    let lost = env.app.analysis.claims_lost.load(Ordering::Relaxed);
    let (job, it) = stale.into_iter().next().unwrap();
    run_item(
        env.app.analysis_runner(),
        job,
        it,
        WorkerSettings {
            worker_id: "stalled".into(),
            concurrency: 1,
            lease: Duration::from_millis(50),
            poll: Duration::from_millis(50),
        },
        CancellationToken::new(),
        None,
    )
    .await;
    assert_eq!(rows(&env).await, before, "the stale run changed nothing");
    assert_eq!(before.0[0]["status"], "completed");
    assert_eq!(before.1[0]["claimed_by"], "other");
    assert_eq!(
        env.app.analysis.claims_lost.load(Ordering::Relaxed),
        lost + 1
    );
    env.cleanup().await;
}

/// A worker frozen (SIGSTOP) past its lease mid-run: a second process takes the item over and
/// finishes the job; the first, resumed (SIGCONT), stores nothing (its result is fenced out by the
/// claim) and says so in its metrics, and the job's items and results stay as the second left them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_analysis_worker_resumed_changes_nothing() {
    let groq = slow_groq().await;
    groq.set_latency(Duration::from_millis(1200));
    let env = spawn(Db::Postgres, Store::S3).await;
    let ids = ingest_small_calls(&env, 3).await;
    let extra = groq_service_env(&groq, &[("INSIGHTS_ANALYSIS_LEASE_MS", "1000")]);
    let first = env.start_service(&as_refs(&extra));
    let job_id = start_batch(&first, &ids).await;
    let progress = |base: String| {
        let job_id = job_id.clone();
        async move { get_json(&format!("{base}/api/v1/analysis/batch/{job_id}")).await }
    };
    let base1 = first.url("");
    // Frozen while it holds a running item: on a loaded machine the freeze can land between the end
    // of one item and the claim of the next, so look at the rows and try again when it did.
    let holding = format!(
        "SELECT session_id FROM analysis_job_items WHERE status = 'running' AND claimed_by LIKE '%-{}'",
        first.child.id()
    );
    for attempt in 1.. {
        eventually(30, "an item running on the first process", || async {
            progress(base1.clone()).await["running"].as_u64() == Some(1)
        })
        .await;
        first.signal("STOP");
        if !env.rows(&holding).await.is_empty() {
            break;
        }
        assert!(attempt < 5, "the first process never froze holding an item");
        first.signal("CONT");
    }
    let second = env.start_service(&as_refs(&extra));
    let base2 = second.url("");
    eventually(60, "the job completes on the second process", || async {
        progress(base2.clone()).await["status"] == "completed"
    })
    .await;
    let results =
        "SELECT session_id, status, ran_at, result FROM session_analyses ORDER BY session_id";
    let before = (progress(base2.clone()).await, env.rows(results).await);
    first.signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !first
        .metrics()
        .await
        .contains("call_insights_analysis_claims_lost_total 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the resumed worker did not report its claim lost; its log ends:\n{}",
            first.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = (progress(base2.clone()).await, env.rows(results).await);
    assert_eq!(after, before, "the resumed worker changed nothing");
    let p = &after.0;
    assert_eq!(
        (p["done"].as_u64(), p["failed"].as_u64()),
        (Some(3), Some(0)),
        "{p}"
    );
    assert_eq!(first.log_lines("taken over by another worker"), 1);
    let published: common::queue::Published = (0..3)
        .map(|i| (format!("batch-call-{i}"), (0, 2)))
        .collect();
    common::queue::check_total_queue(&env, &published).await;
    drop((first, second));
    env.cleanup().await;
}
