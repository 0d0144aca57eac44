//! The QA engineer's API against a real database with ingested sessions: shapes, filters,
//! pagination, errors, tenant isolation on every endpoint, and signed audio URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use common::{Db, Store, TestEnv, contract_dir, report, spawn_with, tone_wav};
use serde_json::{Value, json};

const ACME: &str = "acme-key-0001";
const GLOBEX: &str = "globex-key-0002";
const OPS: &str = "ops-key-000003";

async fn env_with_sessions(db: Db, store: Store) -> (TestEnv, String) {
    let env = spawn_with(db, store, |c| {
        c.api_keys = format!("{ACME}=acme,{GLOBEX}=globex,{OPS}=*")
    })
    .await;
    // acme: the contract's final-basic (with its partial), 5 generated calls, one faulty call with audio.
    env.publish(&std::fs::read(contract_dir().join("examples/partial-seq0.json")).unwrap())
        .await;
    env.publish(&std::fs::read(contract_dir().join("examples/final-basic.json")).unwrap())
        .await;
    for i in 0..5 {
        let mut r = report(&format!("acme-call-{i}"), 0, true, 4);
        r["started_at"] = json!(format!("2026-11-0{}T09:00:00Z", i + 1));
        r["agent_id"] = json!(if i % 2 == 0 {
            "booking-bot"
        } else {
            "support-bot"
        });
        env.publish_json(&r).await;
    }
    let mut faulty = report("acme-faulty", 0, true, 4);
    faulty["started_at"] = json!("2026-11-10T09:00:00Z");
    faulty["events"] = json!([{"seq": 0, "type": "llm_error", "at_ms": 2000, "data": {"message": "boom", "recoverable": false}}]);
    faulty["audio_segments"] = json!([{"segment_id": "stt_input-0", "segment_type": "stt_input", "turn_index": 0, "offset_ms": 0, "audio": {"field": "audio:stt_input-0"}}]);
    env.publish_fields(&[
        ("payload", &serde_json::to_vec(&faulty).unwrap()),
        ("audio:stt_input-0", &tone_wav(1000, 0.4)),
    ])
    .await;
    // globex: two calls.
    for i in 0..2 {
        let mut r = report(&format!("globex-call-{i}"), 0, true, 2);
        r["tenant_id"] = json!("globex");
        r["audio_segments"] = json!([{"segment_id": "stt_input-0", "segment_type": "stt_input", "turn_index": 0, "audio": {"b64": base64_wav()}}]);
        env.publish_json(&r).await;
    }
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!(r.dead_lettered, 0);
    let base = env.serve_api().await;
    (env, base)
}

fn base64_wav() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(tone_wav(300, 0.2))
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

async fn session_id(env: &TestEnv, call_id: &str) -> String {
    env.session(call_id).await.unwrap().id.to_string()
}

on_both_stacks!(
    listing_filters_and_paginates_without_duplicates_or_gaps,
    detail_timeline_conversation_and_diagnosis_have_their_shapes,
    bad_parameters_are_400s_naming_the_parameter_and_unknown_ids_404s,
    a_tenant_key_never_sees_another_tenants_data_on_any_endpoint,
    audio_urls_fetch_the_stored_bytes,
    replicas_without_a_configured_key_share_one_signing_key,
);

async fn listing_filters_and_paginates_without_duplicates_or_gaps(db: Db, store: Store) {
    let (env, base) = env_with_sessions(db, store).await;
    let (status, all) = get(&format!("{base}/api/v1/sessions?limit=200"), Some(OPS)).await;
    assert_eq!(status, 200);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 9);
    assert!(all["next_cursor"].is_null());
    let started: Vec<&str> = items
        .iter()
        .map(|i| i["started_at"].as_str().unwrap())
        .collect();
    let mut sorted = started.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(started, sorted, "newest first");
    // Pages of 2: every session exactly once.
    let mut seen = Vec::new();
    let mut url = format!("{base}/api/v1/sessions?limit=2");
    for _ in 0..10 {
        let (s, page) = get(&url, Some(OPS)).await;
        assert_eq!(s, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/api/v1/sessions?limit=2&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected);
    let count = |q: &str| {
        let url = format!("{base}/api/v1/sessions?{q}");
        async move {
            get(&url, Some(OPS)).await.1["items"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(count("tenant_id=globex").await, 2);
    assert_eq!(count("call_id=acme-call-3").await, 1);
    assert_eq!(count("agent_id=support-bot").await, 2);
    assert_eq!(count("has_issues=true").await, 1);
    assert_eq!(count("severity=critical").await, 1);
    assert_eq!(count("severity=info").await, 0);
    assert_eq!(
        count("started_after=2026-11-02T00:00:00Z&started_before=2026-11-04T00:00:00Z").await,
        2
    );
    env.cleanup().await;
}

async fn detail_timeline_conversation_and_diagnosis_have_their_shapes(db: Db, store: Store) {
    let (env, base) = env_with_sessions(db, store).await;
    let id = session_id(&env, "call-0900001-0e4018bf").await;
    let (s, d) = get(&format!("{base}/api/v1/sessions/{id}"), Some(ACME)).await;
    assert_eq!(s, 200);
    assert_eq!(d["call_id"], "call-0900001-0e4018bf");
    assert_eq!(d["pipeline"]["stt"]["provider"], "deepgram");
    assert_eq!(d["pipeline"]["vad"]["threshold"], 0.5);
    assert_eq!(d["outcome"]["close_reason"], "user_hangup");
    let e2e = &d["latency"]["e2e_latency_ms"];
    assert_eq!(e2e["count"], 4);
    assert!(
        (e2e["mean"].as_f64().unwrap() - 906.45).abs() < 1e-6,
        "{e2e}"
    );
    assert!(
        (e2e["p50"].as_f64().unwrap() - (847.7 + 959.2) / 2.0).abs() < 1e-6,
        "{e2e}"
    );
    assert_eq!(d["latency"]["llm_ttft_ms"]["count"], 4);
    let (_, by_call) = get(
        &format!("{base}/api/v1/sessions/by-call/call-0900001-0e4018bf"),
        Some(ACME),
    )
    .await;
    assert_eq!(by_call["id"], id.as_str());

    let (s, t) = get(&format!("{base}/api/v1/sessions/{id}/timeline"), Some(ACME)).await;
    assert_eq!(s, 200);
    let items = t["items"].as_array().unwrap();
    assert_eq!(items.len(), 8 + 20);
    let ats: Vec<i64> = items.iter().map(|i| i["at_ms"].as_i64().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "time order: {ats:?}");
    assert_eq!(items[0]["kind"], "turn");
    assert_eq!(items[0]["at"], "2038-10-24T00:12:00.800Z");
    assert!(
        items
            .iter()
            .any(|i| i["kind"] == "event" && i["type"] == "user_transcript")
    );

    let (_, c) = get(
        &format!("{base}/api/v1/sessions/{id}/conversation"),
        Some(ACME),
    )
    .await;
    let turns = c["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 8);
    assert_eq!(turns[1]["latency"]["llm_ttft_ms"], 296.1);
    assert_eq!(turns[1]["tool_calls"][0]["name"], "lookup_account");
    assert_eq!(turns[0]["latency"]["transcription_delay_ms"], 110.7);

    let faulty = session_id(&env, "acme-faulty").await;
    let (_, dg) = get(
        &format!("{base}/api/v1/sessions/{faulty}/diagnosis"),
        Some(ACME),
    )
    .await;
    assert_eq!(dg["has_issues"], true);
    assert_eq!(dg["issues"][0]["code"], "pipeline_error");
    assert_eq!(dg["issues"][0]["severity"], "critical");
    assert_eq!(dg["issues"][0]["evidence"]["message"], "boom");
    env.cleanup().await;
}

async fn bad_parameters_are_400s_naming_the_parameter_and_unknown_ids_404s(db: Db, store: Store) {
    let (env, base) = env_with_sessions(db, store).await;
    for (q, param) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=zzz", "cursor"),
        ("severity=fatal", "query"),
        ("started_after=yesterday", "query"),
        ("has_issues=maybe", "query"),
    ] {
        let (s, body) = get(&format!("{base}/api/v1/sessions?{q}"), Some(OPS)).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["details"]["parameter"], param, "{q}: {body}");
    }
    let (s, body) = get(&format!("{base}/api/v1/sessions/not-a-uuid"), Some(OPS)).await;
    assert_eq!(
        (s, body["details"]["parameter"].as_str()),
        (400, Some("session_id"))
    );
    let unknown = uuid::Uuid::new_v4();
    for path in [
        "",
        "/timeline",
        "/conversation",
        "/diagnosis",
        "/audio/stt_input-0",
    ] {
        let (s, body) = get(
            &format!("{base}/api/v1/sessions/{unknown}{path}"),
            Some(OPS),
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (s, _) = get(&format!("{base}/api/v1/sessions/by-call/nope"), Some(OPS)).await;
    assert_eq!(s, 404);
    // NUL bytes (which PostgreSQL text cannot hold, so nothing stored has them) match nothing; never a 500.
    let (s, body) = get(&format!("{base}/api/v1/sessions?agent_id=a%00b"), Some(OPS)).await;
    assert_eq!((s, body["items"].as_array().map(Vec::len)), (200, Some(0)));
    let (s, _) = get(&format!("{base}/api/v1/sessions/by-call/a%00b"), Some(OPS)).await;
    assert_eq!(s, 404);
    let id = session_id(&env, "acme-call-0").await;
    let (s, _) = get(
        &format!("{base}/api/v1/sessions/{id}/audio/no-such-segment"),
        Some(OPS),
    )
    .await;
    assert_eq!(s, 404);
    env.cleanup().await;
}

async fn a_tenant_key_never_sees_another_tenants_data_on_any_endpoint(db: Db, store: Store) {
    let (env, base) = env_with_sessions(db, store).await;
    let (s, body) = get(&format!("{base}/api/v1/sessions"), None).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("unauthorized")));
    let (s, _) = get(&format!("{base}/api/v1/sessions"), Some("wrong-key-123")).await;
    assert_eq!(s, 401);
    let (_, acme) = get(&format!("{base}/api/v1/sessions?limit=200"), Some(ACME)).await;
    assert!(
        acme["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["tenant_id"] == "acme")
    );
    assert_eq!(acme["items"].as_array().unwrap().len(), 7);
    // Asking for the other tenant explicitly gives nothing, not their data.
    let (_, asked) = get(
        &format!("{base}/api/v1/sessions?tenant_id=globex"),
        Some(ACME),
    )
    .await;
    assert_eq!(asked["items"].as_array().unwrap().len(), 0);
    let globex = session_id(&env, "globex-call-0").await;
    for path in [
        "",
        "/timeline",
        "/conversation",
        "/diagnosis",
        "/audio/stt_input-0",
    ] {
        let (s, body) = get(
            &format!("{base}/api/v1/sessions/{globex}{path}"),
            Some(ACME),
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (404, Some("not_found")),
            "{path} must look missing to acme"
        );
        let (s, _) = get(
            &format!("{base}/api/v1/sessions/{globex}{path}"),
            Some(GLOBEX),
        )
        .await;
        assert_eq!(s, 200, "{path} for its own tenant");
    }
    let (s, _) = get(
        &format!("{base}/api/v1/sessions/by-call/globex-call-0"),
        Some(ACME),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = get(
        &format!("{base}/api/v1/sessions/by-call/globex-call-0"),
        Some(OPS),
    )
    .await;
    assert_eq!(s, 200);
    env.cleanup().await;
}

async fn audio_urls_fetch_the_stored_bytes(db: Db, store: Store) {
    let (env, base) = env_with_sessions(db, store).await;
    let id = session_id(&env, "acme-faulty").await;
    let (s, a) = get(
        &format!("{base}/api/v1/sessions/{id}/audio/stt_input-0"),
        Some(ACME),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["content_type"], "audio/wav");
    let url = a["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Audio is never gzipped (players need Accept-Ranges to seek), even when the client accepts it.
    let resp = http
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(
        resp.headers()
            .get("accept-ranges")
            .map(|v| v.to_str().unwrap()),
        Some("bytes")
    );
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), tone_wav(1000, 0.4).as_slice());
    let ranged = http
        .get(&url)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), b"RIFF");
    let redirect = http
        .get(format!(
            "{base}/api/v1/sessions/{id}/audio/stt_input-0?redirect=true"
        ))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert!(
        redirect.headers()["location"]
            .to_str()
            .unwrap()
            .contains("stt_input-0")
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_audio_url_works_before_expiry_and_fails_after_or_when_tampered() {
    let (env, base) = env_with_sessions(Db::Sqlite, Store::Fs).await;
    let id = session_id(&env, "acme-faulty").await;
    let (_, a) = get(
        &format!("{base}/api/v1/sessions/{id}/audio/stt_input-0"),
        Some(ACME),
    )
    .await;
    let url = a["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{base}/api/v1/audio-files/")),
        "{url}"
    );
    assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
    let tampered = url.replace("sig=", "sig=00");
    let r = reqwest::get(&tampered).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "forbidden");
    let other_key = url.replace("stt_input-0.", "stt_input-1.");
    assert_eq!(reqwest::get(&other_key).await.unwrap().status(), 403);
    // The same key signed with an expiry in the past.
    let key = env.segments("acme-faulty").await[0].s3_key.clone().unwrap();
    let past = chrono::Utc::now().timestamp() - 1;
    let expired = format!(
        "{base}/api/v1/audio-files/{key}?expires={past}&sig={}",
        env.app.signer.sign(&key, past)
    );
    let r = reqwest::get(&expired).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "URL expired");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_s3_urls_carry_the_public_endpoint() {
    let env = spawn_with(Db::Sqlite, Store::S3, |c| {
        c.s3_public_endpoint_url = Some("http://localhost:3900".into())
    })
    .await;
    let mut r = report("call-public", 0, true, 2);
    r["audio_segments"] =
        json!([{"segment_id": "s", "segment_type": "stt_input", "audio": {"b64": base64_wav()}}]);
    env.publish_json(&r).await;
    env.drain(&mut env.consumer()).await;
    let base = env.serve_api().await;
    let id = session_id(&env, "call-public").await;
    let (_, a) = get(&format!("{base}/api/v1/sessions/{id}/audio/s"), None).await;
    let url = a["url"].as_str().unwrap();
    assert!(url.starts_with("http://localhost:3900/"), "{url}");
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), tone_wav(300, 0.2).len());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_request_ids_compress_and_are_measured() {
    let (env, base) = env_with_sessions(Db::Sqlite, Store::Fs).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/api/v1/sessions?limit=200"))
        .bearer_auth(OPS)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let r = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let m = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains(r#"call_insights_http_request_duration_seconds_count{route="/api/v1/sessions",status="200"} 1"#), "{m}");
    assert!(
        m.contains("call_insights_consumer_pending{partition=\"0\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("call_insights_consumer_lag{partition=\"0\"} 0"),
        "{m}"
    );
    let docs = http.get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let spec: Value = http
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/api/v1/sessions/{session_id}/timeline"].is_object());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_is_current_after_every_report_and_gzip_matches_plain() {
    let env = spawn_with(Db::Postgres, Store::Fs, |_| {}).await;
    let mut consumer = env.consumer();
    env.publish_json(&report("call-live", 0, false, 2)).await;
    env.drain(&mut consumer).await;
    let base = env.serve_api().await;
    let id = session_id(&env, "call-live").await;
    let url = format!("{base}/api/v1/sessions/{id}/timeline");
    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let (_, first) = get(&url, None).await;
    assert_eq!(count(&first), 4);
    let (_, again) = get(&url, None).await;
    assert_eq!(again, first);
    env.publish_json(&report("call-live", 1, true, 6)).await;
    env.drain(&mut consumer).await;
    let (_, newer) = get(&url, None).await;
    assert_eq!(count(&newer), 12, "a newer report shows at once");
    let gz = reqwest::Client::new()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let bytes = gz.bytes().await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(bytes.as_ref()),
        &mut plain,
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&plain).unwrap(), newer);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_update_subscription_timelines_follow_new_reports_from_memory() {
    let env = spawn_with(Db::Postgres, Store::Fs, |c| {
        c.api_keys = format!("{ACME}=acme,{GLOBEX}=globex")
    })
    .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(env.app.follow_updates(shutdown.clone()));
    common::eventually(10, "subscribed", || async {
        env.app.session_versions.is_live()
    })
    .await;
    let mut consumer = env.consumer();
    env.publish_json(&report("call-followed", 0, false, 2))
        .await;
    env.drain(&mut consumer).await;
    let base = env.serve_api().await;
    let id = session_id(&env, "call-followed").await;
    let url = format!("{base}/api/v1/sessions/{id}/timeline");
    let items = |v: &Value| v["items"].as_array().map_or(0, Vec::len);
    let (_, first) = get(&url, Some(ACME)).await;
    assert_eq!(items(&first), 4);
    assert!(
        env.app.session_versions.get(id.parse().unwrap()).is_some(),
        "the version is now held in memory"
    );
    let (s, _) = get(&url, Some(GLOBEX)).await;
    assert_eq!(s, 404, "a cached version does not bypass tenancy");
    env.publish_json(&report("call-followed", 1, true, 6)).await;
    env.drain(&mut consumer).await;
    common::eventually(10, "the newer report is served", || {
        let url = url.clone();
        async move { items(&get(&url, Some(ACME)).await.1) == 12 }
    })
    .await;
    shutdown.cancel();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let env = spawn_with(Db::Sqlite, Store::Fs, |c| {
        c.cors_origins = Some("https://qa.example".into())
    })
    .await;
    let base = env.serve_api().await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}/api/v1/sessions"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let ok = preflight("https://qa.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://qa.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    env.cleanup().await;
}

/// Per-key token buckets: a key over its limit gets 429 with Retry-After; another key does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let env = common::spawn_with(common::Db::Sqlite, common::Store::Fs, |c| {
        c.api_keys = "acme-key-123=acme,globex-key-1=globex".into();
        c.rate_limit_per_second = Some(0.5);
        c.rate_limit_burst = Some(2);
    })
    .await;
    let base = env.serve_api().await;
    let http = reqwest::Client::new();
    let get = |key: &'static str| {
        http.get(format!("{base}/api/v1/sessions"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get("acme-key-123").await.unwrap().status(), 200);
    assert_eq!(get("acme-key-123").await.unwrap().status(), 200);
    let limited = get("acme-key-123").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(
        get("globex-key-1").await.unwrap().status(),
        200,
        "its own bucket"
    );
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health checks are never limited");
    env.cleanup().await;
}

/// With `INSIGHTS_URL_SIGNING_KEY` unset, every replica uses one key generated once into the
/// database: what one replica signs (audio URLs, UI sessions, live tokens) verifies on another with a
/// data directory of its own. The variable still overrides; a key file of an earlier version is
/// adopted so its signatures stay valid.
async fn replicas_without_a_configured_key_share_one_signing_key(db: Db, store: Store) {
    use call_insights::signing_key::{self, Source};
    use sea_orm::ConnectionTrait;
    let env = spawn_with(db, store, |c| c.url_signing_key = None).await;
    let replica = |key: Option<&str>| {
        let mut c = env.app.config.clone();
        c.data_dir = std::env::temp_dir()
            .join("call-insights-tests")
            .join(uuid::Uuid::new_v4().simple().to_string());
        c.consumer_name = Some(format!("{}-b", c.consumer_name.clone().unwrap_or_default()));
        c.url_signing_key = key.map(str::to_owned);
        async move { call_insights::app::App::build(c).await.unwrap() }
    };
    let b = replica(None).await;
    let exp = chrono::Utc::now().timestamp() + 60;
    let now = exp - 60;
    let sig = env.app.signer.sign("monitor:acme", exp);
    assert_eq!(b.signer.verify("monitor:acme", exp, &sig, now), Ok(()));
    let back = b.signer.sign("acme/call-1/full_post_rnnoise.wav", exp);
    assert_eq!(
        env.app
            .signer
            .verify("acme/call-1/full_post_rnnoise.wav", exp, &back, now),
        Ok(())
    );
    assert!(
        !b.config.data_dir.join(signing_key::LEGACY_FILE).exists(),
        "no per-replica key file"
    );
    // The variable overrides the shared key.
    let own = replica(Some("an-operator-chosen-secret")).await;
    assert_eq!(
        own.signer.verify("monitor:acme", exp, &sig, now),
        Err("invalid signature")
    );
    // A key file left by an earlier version becomes the shared key (a fresh database here).
    let db = &env.app.db;
    db.execute_unprepared("DELETE FROM service_secrets")
        .await
        .unwrap();
    let dir = std::env::temp_dir()
        .join("call-insights-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(signing_key::LEGACY_FILE), "the-old-key\n").unwrap();
    let (key, source) = signing_key::load(None, db, &dir).await.unwrap();
    assert_eq!(
        (key.as_slice(), source),
        (&b"the-old-key"[..], Source::AdoptedFile)
    );
    let (key, source) = signing_key::load(None, db, &env.app.config.data_dir)
        .await
        .unwrap();
    assert_eq!(
        (key.as_slice(), source),
        (&b"the-old-key"[..], Source::Database)
    );
    env.cleanup().await;
}
