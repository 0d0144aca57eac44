//! Post-call analytics end to end against real PostgreSQL/SQLite, Redis and Garage: ingest queues a
//! final call, the worker analyses it (offline, or through a loopback fake of an OpenAI-compatible
//! server), results, rollups, webhooks (a real receiver on loopback), backfill and reviews.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::analytics::worker::{self, ItemResult};
use call_insights::analytics::{Mode, store};
use common::{Db, Store, TestEnv, spawn_with};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::llm::{FakeLlm, LlmFault, user_text};

struct Env {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
}

async fn setup(
    db: Db,
    store: Store,
    llm: Option<&FakeLlm>,
    tweak: impl FnOnce(&mut call_insights::config::Config),
) -> Env {
    let settings = llm.map(|f| f.settings());
    let env = spawn_with(db, store, |c| {
        if let Some(s) = settings {
            c.analytics.mode = Some(Mode::Llm);
            c.analytics.llm = s;
        }
        c.webhooks.allow_private = true;
        c.webhooks.schedule = vec![Duration::from_millis(30), Duration::from_millis(60)];
        c.webhooks.poll = Duration::from_millis(20);
        tweak(c);
    })
    .await;
    Env {
        base: env.serve_api().await,
        env,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn ingest(&self, report: &Value) -> uuid::Uuid {
        self.env.publish_json(report).await;
        let mut c = self.env.consumer();
        self.env.drain(&mut c).await;
        self.env
            .session(report["call_id"].as_str().unwrap())
            .await
            .expect("session stored")
            .id
    }

    async fn analyse(&self) -> Vec<ItemResult> {
        worker::process_available(
            &self.env.app.analytics,
            &self.env.app.db,
            "test-worker",
            100,
        )
        .await
        .expect("analytics runs")
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn analytics_of(&self, session: uuid::Uuid) -> Value {
        let (status, v) = self
            .get(&format!("/api/v1/sessions/{session}/analytics"))
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn deliver(&self) -> usize {
        self.env.app.webhooks.deliver_due(50).await.unwrap()
    }
}

/// A final report of `turns` (role, words), started `hours_ago` hours ago.
fn call(call_id: &str, seq: i64, agent: &str, hours_ago: i64, turns: &[(&str, &str)]) -> Value {
    let started = chrono::Utc::now() - chrono::Duration::hours(hours_ago);
    let turns: Vec<Value> = turns
        .iter()
        .enumerate()
        .map(|(i, (role, text))| {
            let mut t = json!({"index": i, "role": role, "content": text, "start_ms": i * 3000, "end_ms": i * 3000 + 2000});
            if *role == "assistant" {
                t["e2e_latency_ms"] = json!(700.0 + 100.0 * i as f64);
            }
            t
        })
        .collect();
    json!({
        "schema_version": 1, "report_type": "final", "seq": seq, "call_id": call_id, "tenant_id": "acme",
        "agent_id": agent, "started_at": started.to_rfc3339(), "ended_at": (started + chrono::Duration::seconds(60)).to_rfc3339(),
        "duration_seconds": 60.0, "turns": turns, "events": [],
    })
}

const BOOKING: [(&str, &str); 4] = [
    (
        "user",
        "Hi, I'd like to move my appointment to Thursday afternoon.",
    ),
    (
        "assistant",
        "Sure, I have moved your appointment to Thursday at three pm.",
    ),
    ("user", "Great, thank you so much, that works perfectly."),
    ("assistant", "You're welcome. Anything else?"),
];

async fn a_final_call_is_analysed_offline_end_to_end(db: Db, store: Store) {
    let e = setup(db, store, None, |_| {}).await;
    let sid = e
        .ingest(&call("call-off-1", 1, "booking-bot", 1, &BOOKING))
        .await;
    assert_eq!(
        e.env.count("analytics_queue").await,
        1,
        "queued in the ingest transaction"
    );
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    let a = e.analytics_of(sid).await;
    assert_eq!(a["status"], "completed");
    assert_eq!(a["analyzer"], "offline");
    assert_eq!(a["schema_version"], 1);
    assert_eq!(a["intent"], "booking");
    assert_eq!(a["sentiment"], "positive");
    assert!(a["sentiment_score"].as_f64().unwrap() > 0.3, "{a}");
    assert_eq!(a["resolution"], "resolved");
    assert_eq!(a["escalated"], false);
    assert!(a["summary"].as_str().unwrap().chars().count() <= 240);
    assert!(a["prompt_version"].as_str().unwrap().starts_with("p1-"));
    assert_eq!(a["analyzed_report_seq"], 1);
    let (_, o) = e.get("/api/v1/analytics/overview?days=7").await;
    assert_eq!(
        (o["total_calls"].as_i64(), o["analyzed_calls"].as_i64()),
        (Some(1), Some(1)),
        "{o}"
    );
    assert_eq!(o["intents"]["booking"], 1);
    // Nothing left in the queue to do.
    assert_eq!(e.analyse().await, vec![]);
    e.env.cleanup().await;
}

const PII_CALL: [(&str, &str); 4] = [
    (
        "user",
        "Hi, I want to buy the premium plan. My email is john at example dot com and my number is four one five five five five zero one three four.",
    ),
    ("assistant", "Thanks. What card would you like to use?"),
    (
        "user",
        "My card number is 4111 1111 1111 1111, social 123-45-6789, IBAN GB82 WEST 1234 5698 7654 32.",
    ),
    ("assistant", "Got it, the upgrade is done."),
];

async fn an_llm_call_is_analysed_without_personal_data_leaving(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    let sid = e
        .ingest(&call("call-llm-1", 1, "sales-bot", 1, &PII_CALL))
        .await;
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    let a = e.analytics_of(sid).await;
    assert_eq!(a["analyzer"], "llm");
    assert_eq!(a["model"], "gpt-4o-mini");
    assert_eq!(a["intent"], "sales");
    // The fake echoed the placeholders it was sent; they were restored from the local map.
    assert_eq!(a["entities"]["email"], "john@example.com");
    assert_eq!(a["entities"]["phone"], "+14155550134");
    assert!(a["input_tokens"].as_i64().unwrap() > 0 && a["output_tokens"].as_i64().unwrap() > 0);
    assert!(
        a["cost_usd"].as_f64().unwrap() > 0.0,
        "priced from the table"
    );
    assert_eq!(a["hot_lead"], true);
    let sent: String = llm.requests().iter().map(|r| r.to_string()).collect();
    for secret in [
        "4111",
        "john",
        "example",
        "123-45",
        "6789",
        "GB82",
        "4155",
        "five five",
    ] {
        assert!(
            !sent.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} reached the LLM: {sent}"
        );
    }
    let text = user_text(&llm.requests()[0]);
    for p in ["[EMAIL_1]", "[PHONE_1]", "[CARD_1]", "[SSN_1]", "[IBAN_1]"] {
        assert!(text.contains(p), "{p} missing from {text}");
    }
    assert!(text.contains("user: ") && text.contains("agent: "));
    let body = &llm.requests()[0];
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert!(body["temperature"].as_f64().unwrap() <= 0.2);
    // The stored transcript stays as received.
    let (_, conv) = e.get(&format!("/api/v1/sessions/{sid}/conversation")).await;
    assert!(conv.to_string().contains("4111 1111 1111 1111"));
    e.env.cleanup().await;
}

async fn a_malformed_answer_is_repaired_once(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    llm.push_fault(LlmFault::MalformedJson);
    let sid = e
        .ingest(&call("call-repair-1", 1, "bot", 1, &BOOKING))
        .await;
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    let a = e.analytics_of(sid).await;
    assert_eq!(a["status"], "completed");
    assert_eq!(a["attempts"], 2);
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    let repair = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(repair[2]["role"], "assistant");
    assert!(
        repair[3]["content"].as_str().unwrap().contains("not JSON"),
        "{:?}",
        repair[3]
    );
    e.env.cleanup().await;
}

async fn an_answer_still_invalid_after_repair_fails_with_the_raw_answer(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    llm.push_fault(LlmFault::OutOfRange);
    llm.push_fault(LlmFault::OutOfRange);
    let sid = e.ingest(&call("call-bad-1", 1, "bot", 1, &BOOKING)).await;
    assert_eq!(e.analyse().await, vec![ItemResult::Failed]);
    let a = e.analytics_of(sid).await;
    assert_eq!(a["status"], "failed");
    let err = a["error"].as_str().unwrap();
    assert!(
        err.contains("$.lead_score: 250 is outside 0..100") && err.contains("after one repair"),
        "{err}"
    );
    assert!(
        a["raw_answer"]
            .as_str()
            .unwrap()
            .contains("\"lead_score\":250")
    );
    assert!(
        llm.requests()[1]
            .to_string()
            .contains("lead_score: 250 is outside"),
        "the repair quotes the errors"
    );
    e.env.cleanup().await;
}

async fn llm_transport_failures_are_retried_and_refusals_fail(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |c| {
        c.analytics.llm.timeout = Duration::from_millis(400);
        c.analytics.llm.retry.max_retries = 5;
    })
    .await;
    llm.push_fault(LlmFault::Status(429, Some(0)));
    llm.push_fault(LlmFault::Status(503, None));
    llm.push_fault(LlmFault::Reset);
    llm.push_fault(LlmFault::Slow(Duration::from_millis(1500)));
    llm.push_fault(LlmFault::Length);
    let sid = e.ingest(&call("call-retry-1", 1, "bot", 1, &BOOKING)).await;
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    let a = e.analytics_of(sid).await;
    assert_eq!(
        a["attempts"], 6,
        "429, 503, reset, timeout, length, then the answer: {a}"
    );
    let reqs = llm.requests();
    assert_eq!(reqs[4]["max_tokens"], 1200);
    assert_eq!(
        reqs[5]["max_tokens"], 4000,
        "asked again with more room after finish_reason=length"
    );
    llm.push_fault(LlmFault::Refusal("I can't help with that.".into()));
    let sid2 = e
        .ingest(&call("call-refuse-1", 1, "bot", 1, &BOOKING))
        .await;
    assert_eq!(e.analyse().await, vec![ItemResult::Failed]);
    let a = e.analytics_of(sid2).await;
    assert_eq!(a["error"], "the model refused: I can't help with that.");
    e.env.cleanup().await;
}

async fn a_crashed_or_frozen_worker_loses_nothing_and_changes_nothing(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |c| c.analytics.lease_ms = 300).await;
    let sid = e.ingest(&call("call-crash-1", 1, "bot", 1, &BOOKING)).await;
    let a = &e.env.app.analytics;
    let db = &e.env.app.db;
    // Worker A claims the item and "dies" (never finishes).
    let frozen = worker::claim(db, "worker-a", 10, a.lease()).await.unwrap();
    assert_eq!(frozen.len(), 1);
    assert!(
        worker::claim(db, "worker-b", 10, a.lease())
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // After the lease, worker B takes it over and stores the result.
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    let before = e.analytics_of(sid).await;
    // A wakes up and tries to store its own (stale) result: fenced out, nothing changes.
    let call_input =
        call_insights::analytics::CallInput::load(db, e.env.session("call-crash-1").await.unwrap())
            .await
            .unwrap();
    let profile = a.profiles.for_agent(Some("bot"));
    let outcome = store::Outcome {
        status: entity::call_analytics::Status::Failed,
        analyzer: "llm",
        analysis: None,
        error: Some("late".into()),
        raw_answer: None,
        usage: None,
        cost_usd: None,
        model: None,
        attempts: 1,
        latency_ms: 1.0,
        disagreements: vec![],
    };
    let stored = store::store(db, &a.keys, &frozen[0], &call_input, profile, outcome, None)
        .await
        .unwrap();
    assert!(!stored, "the frozen worker's completion is fenced");
    assert_eq!(e.analytics_of(sid).await, before);
    assert_eq!(e.env.count("webhook_deliveries").await, 0);
    e.env.cleanup().await;
}

async fn a_newer_final_is_reanalysed_only_when_the_conversation_changed(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    let sid = e.ingest(&call("call-newer-1", 1, "bot", 1, &BOOKING)).await;
    e.analyse().await;
    assert_eq!(llm.completions(), 1);
    // Same conversation, newer seq: no LLM call, the row follows the seq.
    e.ingest(&call("call-newer-1", 2, "bot", 1, &BOOKING)).await;
    assert_eq!(e.analyse().await, vec![ItemResult::Unchanged]);
    assert_eq!(llm.completions(), 1);
    assert_eq!(e.analytics_of(sid).await["analyzed_report_seq"], 2);
    // A redelivered old final queues nothing.
    e.ingest(&call("call-newer-1", 1, "bot", 1, &BOOKING)).await;
    assert_eq!(e.analyse().await, vec![]);
    // A changed conversation is analysed again.
    let mut turns = BOOKING.to_vec();
    turns.push((
        "user",
        "Actually I was charged twice for it, this is terrible.",
    ));
    e.ingest(&call("call-newer-1", 3, "bot", 1, &turns)).await;
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    assert_eq!(llm.completions(), 2);
    let a = e.analytics_of(sid).await;
    assert_eq!(
        (a["analyzed_report_seq"].as_i64(), a["sentiment"].as_str()),
        (Some(3), Some("negative"))
    );
    e.env.cleanup().await;
}

async fn calls_with_fewer_than_two_spoken_turns_are_skipped(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    let sid = e
        .ingest(&call(
            "call-short-1",
            1,
            "bot",
            1,
            &[("user", "Hello?"), ("assistant", "...")],
        ))
        .await;
    assert_eq!(e.analyse().await, vec![ItemResult::Skipped]);
    let a = e.analytics_of(sid).await;
    assert_eq!(a["status"], "skipped");
    assert!(a["error"].as_str().unwrap().contains("at least 2"), "{a}");
    assert_eq!(llm.requests().len(), 0, "no LLM call");
    e.env.cleanup().await;
}

async fn a_transfer_is_kept_when_the_llm_denies_the_escalation(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    let mut r = call("call-transfer-1", 1, "bot", 1, &BOOKING);
    r["events"] =
        json!([{"seq": 0, "type": "transfer", "at_ms": 9000, "data": {"target": "billing desk"}}]);
    let sid = e.ingest(&r).await;
    e.analyse().await;
    let a = e.analytics_of(sid).await;
    assert_eq!(a["escalated"], true);
    assert_eq!(a["resolution"], "escalated");
    assert_eq!(a["escalation_reason"], "transferred to billing desk");
    let d = a["disagreements"].as_array().unwrap();
    assert!(
        d.iter()
            .any(|x| x["field"] == "escalated" && x["analyzer"] == false),
        "{d:?}"
    );
    e.env.cleanup().await;
}

async fn profiles_shape_the_schema_and_custom_fields(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ci-profile-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("analytics.toml");
    std::fs::write(
        &path,
        r#"
        [agents.sales-bot]
        intents = ["pricing", "demo", "other"]
        hot_lead = { min_lead_score = 50, intents = ["demo"] }
        [[agents.sales-bot.fields]]
        name = "plan"
        type = "enum"
        values = ["basic", "premium"]
        description = "The plan the caller asked about"
    "#,
    )
    .unwrap();
    let e = setup(db, store, Some(&llm), |c| {
        c.analytics.config_path = Some(path.display().to_string())
    })
    .await;
    llm.set_script(|req| {
        let mut v = testkit::llm::default_answer(req);
        if req["response_format"]["json_schema"]["schema"]["properties"]["custom"]["properties"]["plan"].is_object() {
            v["intent"] = json!("demo");
            v["lead_score"] = json!(60);
            v["custom"] = json!({"plan": "premium"});
        }
        v
    });
    let s1 = e
        .ingest(&call("call-prof-1", 1, "sales-bot", 1, &PII_CALL))
        .await;
    let s2 = e
        .ingest(&call("call-prof-2", 1, "booking-bot", 1, &BOOKING))
        .await;
    e.analyse().await;
    let (a, b) = (e.analytics_of(s1).await, e.analytics_of(s2).await);
    assert_eq!(
        (
            a["intent"].as_str(),
            a["custom"]["plan"].as_str(),
            a["hot_lead"].as_bool()
        ),
        (Some("demo"), Some("premium"), Some(true)),
        "{a}"
    );
    assert_eq!(b["intent"], "booking");
    assert_ne!(a["prompt_version"], b["prompt_version"]);
    let sales_req = llm
        .requests()
        .into_iter()
        .find(|r| r.to_string().contains("pricing"))
        .unwrap();
    assert_eq!(
        sales_req["response_format"]["json_schema"]["schema"]["properties"]["intent"]["enum"],
        json!(["pricing", "demo", "other"])
    );
    std::fs::remove_dir_all(dir).ok();
    e.env.cleanup().await;
}

use common::hooks::receiver;

async fn webhooks_are_signed_retried_and_disabled_by_410(db: Db, store: Store) {
    let e = setup(db, store, None, |_| {}).await;
    let (url, got) = receiver(vec![500, 503]).await;
    let (status, hook) = e
        .post(
            "/api/v1/webhooks",
            &json!({"url": url, "events": ["call.analyzed", "lead.hot"], "tenant_id": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let (_, listed) = e.get("/api/v1/webhooks").await;
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );
    e.ingest(&call("call-hook-1", 1, "bot", 1, &BOOKING)).await;
    e.analyse().await;
    for _ in 0..3 {
        e.deliver().await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "500, 503, then delivered");
    assert!(
        received.iter().all(|r| r.0 == received[0].0),
        "webhook-id stable across retries"
    );
    for (id, ts, sig, body) in &received {
        assert!(call_insights::webhooks::verify(
            &secret,
            id,
            ts.parse().unwrap(),
            body,
            sig,
            Duration::from_secs(300)
        ));
    }
    let body: Value = serde_json::from_str(&received[2].3).unwrap();
    assert_eq!(body["type"], "call.analyzed");
    assert_eq!(body["data"]["call_id"], "call-hook-1");
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["tenant_id"], "acme");
    let (_, deliveries) = e
        .get(&format!(
            "/api/v1/webhooks/{}/deliveries",
            hook["id"].as_str().unwrap()
        ))
        .await;
    let d = &deliveries["items"][0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64()),
        (Some("delivered"), Some(3)),
        "{d}"
    );
    assert_eq!(d["attempt_log"][0]["status_code"], 500);

    // A receiver that answers 410 disables its endpoint.
    let (gone_url, _) = receiver(vec![410]).await;
    let (_, gone) = e
        .post(
            "/api/v1/webhooks",
            &json!({"url": gone_url, "events": ["call.analyzed"], "tenant_id": "acme"}),
        )
        .await;
    e.ingest(&call("call-hook-2", 1, "bot", 1, &BOOKING)).await;
    e.analyse().await;
    e.deliver().await;
    let (_, g) = e
        .get(&format!(
            "/api/v1/webhooks/{}",
            gone["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(g["enabled"], false);
    assert!(g["disabled_reason"].as_str().unwrap().contains("410"));
    e.env.cleanup().await;
}

/// A delivery whose attempt outlives its lease (a worker frozen with the POST in flight) is taken
/// over by another worker; the late attempt's answer is fenced out: one attempt recorded, the
/// delivery `delivered` once, the lost claim counted.
async fn a_late_webhook_attempt_after_a_takeover_is_not_recorded(db: Db, store: Store) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let e = setup(db, store, None, |_| {}).await;
    // The receiver holds its first request until released; later ones it answers at once.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (release, hits) = (release.clone(), hits.clone());
            move || {
                let (release, hits) = (release.clone(), hits.clone());
                async move {
                    if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                        release.notified().await;
                    }
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let (status, hook) = e
        .post(
            "/api/v1/webhooks",
            &json!({"url": url, "events": ["call.analyzed"], "tenant_id": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    e.ingest(&call("call-hook-late", 1, "bot", 1, &BOOKING))
        .await;
    e.analyse().await;
    let first = tokio::spawn({
        let w = e.env.app.webhooks.clone();
        async move { w.deliver_due(50).await }
    });
    common::eventually(10, "the first attempt in flight", || async {
        hits.load(Ordering::SeqCst) == 1
    })
    .await;
    // Its lease runs out, as for a worker frozen past it.
    use sea_orm::{EntityTrait, sea_query::Expr};
    entity::webhook_deliveries::Entity::update_many()
        .col_expr(
            entity::webhook_deliveries::Column::LeaseUntil,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .exec(&e.env.app.db)
        .await
        .unwrap();
    assert_eq!(e.deliver().await, 1, "the second worker takes it over");
    release.notify_one();
    first.await.unwrap().unwrap();
    let (_, deliveries) = e
        .get(&format!(
            "/api/v1/webhooks/{}/deliveries",
            hook["id"].as_str().unwrap()
        ))
        .await;
    let d = &deliveries["items"][0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64()),
        (Some("delivered"), Some(1)),
        "{d}"
    );
    assert_eq!(d["attempt_log"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "two POSTs, one webhook-id");
    assert_eq!(
        e.env
            .app
            .webhooks
            .metrics
            .claims_lost
            .load(Ordering::Relaxed),
        1
    );
    e.env.cleanup().await;
}

async fn webhook_targets_on_private_addresses_are_refused(db: Db, store: Store) {
    let e = setup(db, store, None, |c| c.webhooks.allow_private = false).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
        "http://10.0.0.8/x",
        "http://[::ffff:192.168.0.1]/x",
    ] {
        let (status, v) = e
            .post(
                "/api/v1/webhooks",
                &json!({"url": url, "events": ["call.analyzed"], "tenant_id": "acme"}),
            )
            .await;
        assert_eq!(status, 403, "{url}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("webhook targets must be public"),
            "{v}"
        );
    }
    let (status, _) = e.post("/api/v1/webhooks", &json!({"url": "ftp://example.com/x", "events": ["call.analyzed"], "tenant_id": "acme"})).await;
    assert_eq!(status, 400);
    let (status, _) = e
        .post(
            "/api/v1/webhooks",
            &json!({"url": "https://example.com/x", "events": ["call.analyzed"]}),
        )
        .await;
    assert_eq!(status, 403, "an operator key names the tenant");
    // Registered while private targets were allowed, then refused at connect time.
    let (url, got) = receiver(vec![]).await;
    let open = call_insights::webhooks::Settings {
        allow_private: true,
        ..Default::default()
    };
    call_insights::webhooks::create_endpoint(
        &e.env.app.db,
        &e.env.app.analytics.keys,
        &open,
        call_insights::webhooks::NewEndpoint {
            tenant_id: "acme".into(),
            url: url.replace("127.0.0.1", "localhost"),
            events: vec!["call.analyzed".into()],
            description: None,
        },
    )
    .await
    .unwrap();
    e.ingest(&call("call-ssrf-1", 1, "bot", 1, &BOOKING)).await;
    e.analyse().await;
    e.deliver().await;
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing reached the loopback receiver"
    );
    let rows = e
        .env
        .rows("SELECT last_error FROM webhook_deliveries")
        .await;
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("loopback"),
        "{rows:?}"
    );
    e.env.cleanup().await;
}

async fn backfill_reanalyses_with_progress_and_cancel(db: Db, store: Store) {
    let e = setup(db, store, None, |_| {}).await;
    for i in 0..4 {
        e.ingest(&call(&format!("call-bf-{i}"), 1, "bot", 2, &BOOKING))
            .await;
    }
    e.analyse().await;
    let (status, job) = e
        .post("/api/v1/analytics/backfill", &json!({"only_missing": true}))
        .await;
    assert_eq!(
        (status, job["total"].as_i64()),
        (202, Some(0)),
        "nothing missing: {job}"
    );
    let (status, job) = e
        .post(
            "/api/v1/analytics/backfill",
            &json!({"only_missing": false, "agent_id": "bot"}),
        )
        .await;
    assert_eq!(
        (status, job["total"].as_i64(), job["status"].as_str()),
        (202, Some(4), Some("running")),
        "{job}"
    );
    let id = job["id"].as_str().unwrap().to_string();
    // A re-run is forced even though nothing changed.
    assert_eq!(
        e.analyse()
            .await
            .iter()
            .filter(|r| **r == ItemResult::Completed)
            .count(),
        4
    );
    let (_, done) = e.get(&format!("/api/v1/analytics/backfill/{id}")).await;
    assert_eq!(
        (
            done["status"].as_str(),
            done["completed"].as_i64(),
            done["progress"].as_f64()
        ),
        (Some("completed"), Some(4), Some(1.0)),
        "{done}"
    );
    let (status, _) = e
        .post(
            &format!("/api/v1/analytics/backfill/{id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let (_, job2) = e
        .post(
            "/api/v1/analytics/backfill",
            &json!({"only_missing": false}),
        )
        .await;
    let id2 = job2["id"].as_str().unwrap();
    let (_, below) = e
        .post(
            "/api/v1/analytics/backfill",
            &json!({"only_missing": false, "schema_version_below": 1}),
        )
        .await;
    assert_eq!(below["total"], 0, "every row is schema 1: {below}");
    let (status, c) = e
        .post(
            &format!("/api/v1/analytics/backfill/{id2}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, c["status"].as_str(), c["cancelled"].as_i64()),
        (200, Some("cancelled"), Some(4)),
        "{c}"
    );
    assert_eq!(e.analyse().await, vec![]);
    // One call re-run through its own endpoint.
    let sid = e.env.session("call-bf-0").await.unwrap().id;
    let (status, one) = e
        .post(&format!("/api/v1/sessions/{sid}/analytics"), &json!({}))
        .await;
    assert_eq!((status, one["total"].as_i64()), (202, Some(1)));
    assert_eq!(e.analyse().await, vec![ItemResult::Completed]);
    e.env.cleanup().await;
}

async fn dashboards_answer_from_rollups_that_match_the_rows(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let e = setup(db, store, Some(&llm), |_| {}).await;
    // Scripted answers per call: lead score and intent read from the transcript.
    llm.set_script(|req| {
        let mut v = testkit::llm::default_answer(req);
        let text = user_text(req);
        let lead = text
            .split("lead=")
            .nth(1)
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse::<i64>().ok())
            .unwrap_or(10);
        v["lead_score"] = json!(lead);
        v["intent"] = json!(if lead >= 80 { "sales" } else { "support" });
        v["topics"] = json!(if lead >= 80 {
            vec!["pricing"]
        } else {
            vec!["account", "login"]
        });
        v["satisfaction"] = json!(if lead >= 80 { 5 } else { 3 });
        v
    });
    let mk = |lead: i64| {
        [
            ("user", format!("question lead={lead} about things")),
            ("assistant", "answer".to_string()),
        ]
    };
    for (i, (agent, lead, hours_ago)) in [
        ("a1", 95, 1),
        ("a1", 85, 2),
        ("a2", 40, 3),
        ("a2", 20, 30),
        ("a1", 99, 24 * 10),
    ]
    .iter()
    .enumerate()
    {
        let t = mk(*lead);
        let turns: Vec<(&str, &str)> = t.iter().map(|(r, s)| (*r, s.as_str())).collect();
        e.ingest(&call(
            &format!("call-dash-{i}"),
            1,
            agent,
            *hours_ago,
            &turns,
        ))
        .await;
    }
    e.analyse().await;
    let (_, o) = e.get("/api/v1/analytics/overview?days=7").await;
    assert_eq!(o["total_calls"], 4, "{o}");
    assert_eq!(o["analyzed_calls"], 4);
    assert_eq!(o["hot_leads"], 2);
    assert_eq!(o["intents"], json!({"sales": 2, "support": 2}));
    assert_eq!(o["avg_duration_seconds"], 60.0);
    let (_, top) = e.get("/api/v1/analytics/top-leads?hours=24&limit=2").await;
    let leads: Vec<i64> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["lead_score"].as_i64().unwrap())
        .collect();
    assert_eq!(leads, vec![95, 85]);
    let (_, top_a2) = e
        .get("/api/v1/analytics/top-leads?hours=24&agent_id=a2")
        .await;
    assert_eq!(top_a2["items"].as_array().unwrap().len(), 1);
    let (_, intents) = e.get("/api/v1/analytics/intents?days=7").await;
    let sales = intents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["intent"] == "sales")
        .unwrap()
        .clone();
    assert_eq!(
        (sales["calls"].as_i64(), sales["avg_satisfaction"].as_f64()),
        (Some(2), Some(5.0))
    );
    assert_eq!(sales["top_topics"], json!(["pricing"]));
    let (_, trend) = e.get("/api/v1/analytics/sentiment-trend?days=30").await;
    let agents: Vec<&str> = trend["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, vec!["a1", "a2"]);
    let (_, q) = e.get("/api/v1/analytics/quality?days=7&agent_id=a1").await;
    let p95 = q["items"][0]["p95_e2e_latency_ms"].as_f64().unwrap();
    assert!(
        (p95 / 800.0 - 1.0).abs() < 0.05,
        "one agent turn at 800 ms: {p95}"
    );
    // Re-analysis moves the rollups (old contribution taken back): totals do not double.
    let (_, _) = e
        .post(
            "/api/v1/analytics/backfill",
            &json!({"only_missing": false}),
        )
        .await;
    e.analyse().await;
    let (_, again) = e.get("/api/v1/analytics/overview?days=7").await;
    assert_eq!(again, o, "rollups equal after re-analysis");
    let (_, month) = e.get("/api/v1/analytics/overview?days=30").await;
    assert_eq!(month["total_calls"], 5);
    let (_, both) = e.get("/api/v1/analytics/overview?days=7&hours=3").await;
    assert_eq!(both["total_calls"], 2, "hours wins over days: {both}");
    let (status, _) = e.get("/api/v1/analytics/overview?days=0").await;
    assert_eq!(status, 400);
    e.env.cleanup().await;
}

async fn personal_fields_are_encrypted_at_rest(db: Db, store: Store) {
    let llm = FakeLlm::start().await.unwrap();
    let key = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let e = setup(db, store, Some(&llm), |c| {
        c.analytics.encryption_key = Some(key.into())
    })
    .await;
    let sid = e.ingest(&call("call-enc-1", 1, "bot", 1, &PII_CALL)).await;
    e.analyse().await;
    let rows = e
        .env
        .rows("SELECT summary, entities FROM call_analytics")
        .await;
    let raw = rows[0].to_string();
    assert!(
        raw.contains("enc:k1:") && !raw.contains("john@example.com"),
        "{raw}"
    );
    let a = e.analytics_of(sid).await;
    assert_eq!(a["entities"]["email"], "john@example.com");
    assert!(a["summary"].as_str().unwrap().contains("sales"));
    let (_, top) = e.get("/api/v1/analytics/top-leads").await;
    assert_eq!(top["items"][0]["entities"]["email"], "john@example.com");
    e.env.cleanup().await;
}

async fn reviews_feed_accuracy_per_prompt_version(db: Db, store: Store) {
    let e = setup(db, store, None, |c| c.analytics.review_per_day = 2).await;
    for i in 0..3 {
        e.ingest(&call(&format!("call-rev-{i}"), 1, "bot", 1, &BOOKING))
            .await;
    }
    e.analyse().await;
    let (_, q) = e.get("/api/v1/analytics/review-queue").await;
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{q}");
    let (_, q2) = e.get("/api/v1/analytics/review-queue").await;
    assert_eq!(q, q2, "stable within a day");
    let sid = items[0]["session_id"].as_str().unwrap();
    let score = items[0]["sentiment_score"].as_f64().unwrap();
    let (status, r) = e.post(&format!("/api/v1/sessions/{sid}/analytics/review"), &json!({
        "reviewer": "qa@example.com", "verdicts": {"intent": {"correct": true}, "sentiment": {"correct": true}, "sentiment_score": {"correct": false, "value": score - 0.5}}
    })).await;
    assert_eq!(status, 201, "{r}");
    let (status, bad) = e
        .post(
            &format!("/api/v1/sessions/{sid}/analytics/review"),
            &json!({"verdicts": {"colour": {"correct": true}}}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let (_, q3) = e.get("/api/v1/analytics/review-queue").await;
    assert_eq!(
        q3["items"].as_array().unwrap().len(),
        1,
        "the quota of the day shrinks"
    );
    let (_, acc) = e.get("/api/v1/analytics/accuracy?days=30").await;
    let g = &acc["groups"][0];
    assert_eq!(g["analyzer"], "offline");
    assert_eq!(g["fields"]["intent"]["agreement"], 1.0);
    assert_eq!(g["fields"]["sentiment_score"]["agreement"], 0.0);
    assert_eq!(g["sentiment_mae"], 0.5);
    e.env.cleanup().await;
}

on_both_stacks!(
    a_final_call_is_analysed_offline_end_to_end,
    an_llm_call_is_analysed_without_personal_data_leaving,
    a_malformed_answer_is_repaired_once,
    an_answer_still_invalid_after_repair_fails_with_the_raw_answer,
    llm_transport_failures_are_retried_and_refusals_fail,
    a_crashed_or_frozen_worker_loses_nothing_and_changes_nothing,
    a_newer_final_is_reanalysed_only_when_the_conversation_changed,
    calls_with_fewer_than_two_spoken_turns_are_skipped,
    a_transfer_is_kept_when_the_llm_denies_the_escalation,
    profiles_shape_the_schema_and_custom_fields,
    webhooks_are_signed_retried_and_disabled_by_410,
    a_late_webhook_attempt_after_a_takeover_is_not_recorded,
    webhook_targets_on_private_addresses_are_refused,
    backfill_reanalyses_with_progress_and_cancel,
    dashboards_answer_from_rollups_that_match_the_rows,
    personal_fields_are_encrypted_at_rest,
    reviews_feed_accuracy_per_prompt_version,
);

/// The real binary SIGKILLed while the LLM answers a call; a second process (another consumer name)
/// takes the item over after its lease and stores it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_mid_analytics_loses_nothing() {
    let llm = FakeLlm::start().await.unwrap();
    llm.set_latency(Duration::from_secs(30));
    let e = setup(Db::Postgres, Store::S3, None, |c| {
        c.analytics.mode = Some(Mode::Off)
    })
    .await;
    let (base, key) = (llm.base_url(), llm.api_key().to_string());
    let extra = |name: &str| -> Vec<(String, String)> {
        vec![
            ("INSIGHTS_ANALYTICS".into(), "llm".into()),
            ("INSIGHTS_LLM_BASE_URL".into(), base.clone()),
            ("INSIGHTS_LLM_API_KEY".into(), key.clone()),
            ("INSIGHTS_ANALYTICS_LEASE_MS".into(), "1000".into()),
            ("INSIGHTS_ANALYTICS_POLL_MS".into(), "50".into()),
            ("INSIGHTS_CONSUMER_NAME".into(), name.into()),
        ]
    };
    let first_env = extra("replica-a");
    let first_refs: Vec<(&str, &str)> = first_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut first = e.env.start_service(&first_refs);
    e.env
        .publish_json(&call("call-kill-1", 1, "bot", 1, &BOOKING))
        .await;
    common::eventually(30, "the LLM request in flight", || async {
        !llm.requests().is_empty()
    })
    .await;
    first.signal("KILL");
    first.wait_exit().await;
    assert_eq!(e.env.count("call_analytics").await, 0);
    llm.set_latency(Duration::ZERO);
    let second_env = extra("replica-b");
    let second_refs: Vec<(&str, &str)> = second_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _second = e.env.start_service(&second_refs);
    common::eventually(30, "the call analysed by the second process", || async {
        e.env.count("call_analytics").await == 1
    })
    .await;
    let rows = e
        .env
        .rows("SELECT status, attempts FROM analytics_queue")
        .await;
    assert_eq!(rows[0]["status"], "done", "{rows:?}");
    assert_eq!(
        rows[0]["attempts"], 2,
        "started twice, stored once: {rows:?}"
    );
    let sid = e.env.session("call-kill-1").await.unwrap().id;
    assert_eq!(e.analytics_of(sid).await["status"], "completed");
    e.env.cleanup().await;
}
