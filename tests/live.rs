//! Live monitoring against real Redis and PostgreSQL: two replicas sharing one stream and database,
//! each with its own events reader; SSE clients over HTTP, resumed on the other replica.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::app::App;
use common::{Db, Store, TestEnv, spawn_with};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running replica: its App, its HTTP base and its events reader.
struct Replica {
    app: Arc<App>,
    base: String,
    _stop: tokio_util::sync::DropGuard,
}

async fn replica(app: Arc<App>) -> Replica {
    let stop = CancellationToken::new();
    tokio::spawn(app.live.clone().run_reader(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = call_insights::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    // The reader starts at the stream's end: give it its first read before anything is published.
    tokio::time::sleep(Duration::from_millis(150)).await;
    Replica {
        app,
        base: format!("http://{addr}"),
        _stop: stop.drop_guard(),
    }
}

/// A second App on the same database and stream, as another process would be.
async fn second(env: &TestEnv) -> Arc<App> {
    let mut c = env.app.config.clone();
    c.consumer_name = Some(format!("{}-b", c.consumer_name.clone().unwrap_or_default()));
    Arc::new(App::build(c).await.unwrap())
}

#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An SSE client reading with `chunk()`, parsing events as they complete.
struct Client {
    resp: reqwest::Response,
    buf: String,
}

impl Client {
    async fn connect(
        base: &str,
        query: &str,
        last: Option<&str>,
        key: Option<&str>,
    ) -> Result<Client, u16> {
        let mut req = reqwest::Client::new().get(format!("{base}/api/v1/monitor/stream{query}"));
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Ok(Client {
            resp,
            buf: String::new(),
        })
    }

    /// The next event (comments and retry lines skipped), or None after `secs`.
    async fn next(&mut self, secs: u64) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some(Sse {
                        id,
                        event,
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until none arrives for `quiet` seconds.
    async fn drain(&mut self, quiet: u64) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next(quiet).await {
            out.push(e);
        }
        out
    }
}

fn partial(call_id: &str, seq: i64, turns: usize, tenant: &str) -> Value {
    let mut r = common::report(call_id, seq, false, turns);
    r["tenant_id"] = json!(tenant);
    r["agent_id"] = json!("bot");
    r
}

fn final_report(call_id: &str, seq: i64, turns: usize) -> Value {
    let mut r = common::report(call_id, seq, true, turns);
    r["agent_id"] = json!("bot");
    r["duration_seconds"] = json!(60.0);
    r
}

async fn ingest_with(env: &TestEnv, app: &App, report: &Value) {
    env.publish_json(report).await;
    let mut c = app.consumer();
    while c.process_next_batch().await.unwrap().read > 0 {}
    app.live.flush().await;
}

async fn events_in_stream(env: &TestEnv) -> Vec<(String, String)> {
    env.live_entries()
        .await
        .into_iter()
        .map(|(id, kind, _, _)| (id, kind))
        .collect()
}

async fn a_client_on_one_replica_sees_the_other_and_resumes_there_exactly(db: Db, store: Store) {
    let env = spawn_with(db, store, |c| {
        c.analytics.mode = Some(call_insights::analytics::Mode::Off)
    })
    .await;
    let a = replica(env.app.clone()).await;
    let b = replica(second(&env).await).await;
    let mut client = Client::connect(&a.base, "", None, None).await.unwrap();
    // Replica B consumes; the client on A sees it.
    ingest_with(&env, &b.app, &partial("call-live-1", 0, 2, "acme")).await;
    let first = client.drain(2).await;
    let kinds: Vec<&str> = first.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, vec!["call_started", "turn", "turn"], "{first:?}");
    assert_eq!(first[1].data["turn_index"], 0);
    assert_eq!(first[2].data["role"], "assistant");
    for e in &first {
        assert_eq!(e.data["call_id"], "call-live-1");
        assert_eq!(e.data["tenant_id"], "acme");
        assert!(e.data["session_id"].is_string() && e.data["at"].is_string());
    }
    let last = first.last().unwrap().id.clone().unwrap();
    drop(client);
    // More happens while the client is away.
    ingest_with(&env, &b.app, &final_report("call-live-1", 1, 4)).await;
    ingest_with(&env, &a.app, &partial("call-live-2", 0, 1, "acme")).await;
    let missed: Vec<(String, String)> = events_in_stream(&env)
        .await
        .into_iter()
        .filter(|(id, _)| {
            call_insights::live::hub::parse_id(id) > call_insights::live::hub::parse_id(&last)
        })
        .collect();
    assert!(missed.iter().any(|(_, k)| k == "call_ended"), "{missed:?}");
    // Reconnect to the other replica with Last-Event-ID: exactly the missed events, in order.
    let mut again = Client::connect(&b.base, "", Some(&last), None)
        .await
        .unwrap();
    let got = again.drain(2).await;
    let got_ids: Vec<(String, String)> = got
        .iter()
        .map(|e| (e.id.clone().unwrap(), e.event.clone()))
        .collect();
    assert_eq!(got_ids, missed);
    let ended = got.iter().find(|e| e.event == "call_ended").unwrap();
    assert_eq!(ended.data["duration_seconds"], 60.0);
    assert_eq!(ended.data["reason"], "final_report");
    // Redelivered and stale reports produce no event.
    let before = events_in_stream(&env).await.len();
    ingest_with(&env, &b.app, &final_report("call-live-1", 1, 4)).await;
    ingest_with(&env, &a.app, &partial("call-live-1", 0, 2, "acme")).await;
    assert_eq!(
        events_in_stream(&env).await.len(),
        before,
        "no event from a duplicate or a stale report"
    );
    assert!(again.next(1).await.is_none());
    // Filters: one call, one type.
    let mut only = Client::connect(&a.base, "?call_id=call-live-3&types=turn", None, None)
        .await
        .unwrap();
    ingest_with(&env, &a.app, &partial("call-live-4", 0, 1, "acme")).await;
    ingest_with(&env, &a.app, &partial("call-live-3", 0, 2, "acme")).await;
    let f = only.drain(2).await;
    assert!(
        f.len() == 2
            && f.iter()
                .all(|e| e.event == "turn" && e.data["call_id"] == "call-live-3"),
        "{f:?}"
    );
    env.cleanup().await;
}

async fn an_old_last_event_id_gets_a_reset(db: Db, store: Store) {
    let env = spawn_with(db, store, |_| {}).await;
    let a = replica(env.app.clone()).await;
    ingest_with(&env, &a.app, &partial("call-reset-1", 0, 1, "acme")).await;
    let mut c = Client::connect(&a.base, "", Some("1-0"), None)
        .await
        .unwrap();
    let e = c.next(3).await.unwrap();
    assert_eq!(e.event, "reset");
    assert_eq!(e.data["last_event_id"], "1-0");
    let (status, _) = (
        Client::connect(&a.base, "?types=bogus", None, None)
            .await
            .err(),
        (),
    );
    assert_eq!(status, Some(400));
    env.cleanup().await;
}

async fn tenants_see_only_their_events_and_tokens_expire(db: Db, store: Store) {
    let env = spawn_with(db, store, |c| {
        c.api_keys = "acme-key-123=acme,globex-key-1=globex,ops-key-9999=*".into();
        c.monitor_token_ttl_ms = 1000;
    })
    .await;
    let a = replica(env.app.clone()).await;
    let mut acme = Client::connect(&a.base, "", None, Some("acme-key-123"))
        .await
        .unwrap();
    assert_eq!(
        Client::connect(&a.base, "", None, None).await.err(),
        Some(401)
    );
    assert_eq!(
        Client::connect(&a.base, "?tenant_id=globex", None, Some("acme-key-123"))
            .await
            .err(),
        Some(404)
    );
    ingest_with(&env, &a.app, &partial("call-g-1", 0, 1, "globex")).await;
    ingest_with(&env, &a.app, &partial("call-a-1", 0, 1, "acme")).await;
    let got = acme.drain(2).await;
    assert!(
        !got.is_empty() && got.iter().all(|e| e.data["tenant_id"] == "acme"),
        "{got:?}"
    );
    // A browser's token: bound to the tenant, short-lived, refused once expired or tampered with.
    let t: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/monitor/token", a.base))
        .bearer_auth("acme-key-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    let mut via_token = Client::connect(&a.base, &format!("?token={token}"), None, None)
        .await
        .unwrap();
    ingest_with(&env, &a.app, &partial("call-g-2", 0, 1, "globex")).await;
    ingest_with(&env, &a.app, &partial("call-a-2", 0, 1, "acme")).await;
    let got = via_token.drain(2).await;
    assert!(
        !got.is_empty() && got.iter().all(|e| e.data["tenant_id"] == "acme"),
        "{got:?}"
    );
    let tampered = token.replacen("YWNtZQ", "Z2xvYmV4", 1);
    assert_eq!(
        Client::connect(&a.base, &format!("?token={tampered}"), None, None)
            .await
            .err(),
        Some(401)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        Client::connect(&a.base, &format!("?token={token}"), None, None)
            .await
            .err(),
        Some(401)
    );
    env.cleanup().await;
}

async fn a_client_that_never_reads_is_dropped_while_ingest_goes_on(db: Db, store: Store) {
    let env = spawn_with(db, store, |c| c.monitor_client_buffer = 4).await;
    let a = replica(env.app.clone()).await;
    let _stalled = a.app.live.client(Default::default(), None);
    let mut reader = Client::connect(&a.base, "?call_id=call-slow-2", None, None)
        .await
        .unwrap();
    ingest_with(&env, &a.app, &partial("call-slow-1", 0, 20, "acme")).await;
    ingest_with(&env, &a.app, &partial("call-slow-2", 0, 1, "acme")).await;
    let got = reader.drain(2).await;
    assert_eq!(got.len(), 2, "a reading client gets its events: {got:?}");
    let m = &a.app.live.metrics;
    assert!(m.clients_dropped.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(
        env.session("call-slow-2").await.is_some(),
        "ingest carried on"
    );
    let metrics = reqwest::get(format!("{}/metrics", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("call_insights_live_clients_dropped_total 1"),
        "{metrics}"
    );
    env.cleanup().await;
}

async fn active_calls_come_with_their_first_partial_and_leave_with_the_final_or_the_timeout(
    db: Db,
    store: Store,
) {
    let env = spawn_with(db, store, |c| c.active_call_timeout_ms = 1000).await;
    let a = replica(env.app.clone()).await;
    let active = || async {
        let v: Value = reqwest::get(format!("{}/api/v1/monitor/active-calls", a.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    ingest_with(&env, &a.app, &partial("call-act-1", 0, 3, "acme")).await;
    ingest_with(&env, &a.app, &partial("call-act-2", 0, 2, "acme")).await;
    let v = active().await;
    assert_eq!(v["active_count"], 2, "{v}");
    let c = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == "call-act-1")
        .unwrap()
        .clone();
    assert_eq!(c["turns"], 3);
    assert_eq!(c["last_e2e_latency_ms"], 901.0);
    ingest_with(&env, &a.app, &final_report("call-act-2", 1, 2)).await;
    assert_eq!(active().await["active_count"], 1, "the final ends it");
    let mut client = Client::connect(&a.base, "?types=call_ended", None, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = call_insights::live::active::sweep(
        &a.app.db,
        &a.app.live,
        &a.app.redis,
        Duration::from_millis(1000),
    )
    .await
    .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(
        call_insights::live::active::sweep(
            &a.app.db,
            &a.app.live,
            &a.app.redis,
            Duration::from_millis(1000)
        )
        .await
        .unwrap(),
        0,
        "once"
    );
    let e = client.next(3).await.unwrap();
    assert_eq!(
        (e.data["call_id"].as_str(), e.data["reason"].as_str()),
        (Some("call-act-1"), Some("timeout"))
    );
    assert_eq!(active().await["active_count"], 0);
    env.cleanup().await;
}

/// The outbox: a process that dies between its commit and the append (here: the ingestor commits and
/// its events are never handed to a publisher), and a Redis that refuses the append (a hub on a dead
/// port), both leave their events in `live_outbox` (one row per call); the sweep appends them to the
/// stream row by row, oldest first, each event once with its event id, and empties the outbox. The normal path leaves it empty.
async fn events_committed_but_not_appended_are_appended_by_the_outbox_sweep(db: Db, store: Store) {
    use call_insights::live::{hub::Hub, outbox};
    let env = spawn_with(db, store, |_| {}).await;
    ingest_with(&env, &env.app, &partial("call-ob-0", 0, 2, "acme")).await;
    assert_eq!(
        env.count("live_outbox").await,
        0,
        "appended events leave the outbox"
    );
    let before = events_in_stream(&env).await.len();
    assert_eq!(before, 3, "call_started and two turns");

    // Died after the commit.
    let decode = |v: &Value| {
        let raw = call_insights::ingest::RawEntry {
            id: "0-1".into(),
            fields: Some(vec![("payload".into(), serde_json::to_vec(v).unwrap())]),
            deliveries: 1,
        };
        call_insights::ingest::decode_entry(raw, 1 << 20).unwrap()
    };
    let crashed = env
        .app
        .ingestor()
        .ingest(&[decode(&partial("call-ob-1", 0, 2, "acme"))])
        .await
        .unwrap()
        .live_events;
    // Redis refused the append.
    let dead = Hub::new(
        call_insights::broker::Broker::open("redis://127.0.0.1:1/", None).unwrap(),
        call_insights::live::events_stream(env.stream()),
        16,
        env.app.db.clone(),
    );
    let refused = env
        .app
        .ingestor()
        .ingest(&[decode(&partial("call-ob-2", 0, 1, "beta"))])
        .await
        .unwrap()
        .live_events;
    dead.publish(&refused).await;
    assert_eq!(
        dead.metrics
            .publish_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let left: Vec<String> = crashed
        .iter()
        .chain(&refused)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(left.len(), 5);
    assert_eq!(env.count("live_outbox").await, 2, "one row per call");
    assert_eq!(
        events_in_stream(&env).await.len(),
        before,
        "nothing appended yet"
    );

    // Rows younger than the grace are left to their process.
    let old = chrono::Utc::now() - chrono::Duration::seconds(60);
    assert_eq!(
        outbox::sweep(&env.app.db, &env.app.live, old, 500)
            .await
            .unwrap(),
        0
    );
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        outbox::sweep(&env.app.db, &env.app.live, now, 1)
            .await
            .unwrap(),
        3,
        "the oldest row: call-ob-1's three events"
    );
    assert_eq!(
        outbox::sweep(&env.app.db, &env.app.live, now, 500)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        outbox::sweep(&env.app.db, &env.app.live, now, 500)
            .await
            .unwrap(),
        0
    );
    assert_eq!(env.count("live_outbox").await, 0);

    let swept: Vec<(String, String, String)> = env.live_entries().await[before..]
        .iter()
        .map(|(_, kind, tenant, body)| {
            assert_eq!(body["type"].as_str(), Some(kind.as_str()));
            (
                body["event_id"].as_str().unwrap().to_string(),
                body["call_id"].as_str().unwrap().to_string(),
                tenant.clone(),
            )
        })
        .collect();
    assert_eq!(
        swept
            .iter()
            .map(|(id, _, _)| id.clone())
            .collect::<Vec<_>>(),
        left,
        "each left event once, oldest first"
    );
    assert_eq!(
        swept
            .iter()
            .map(|(_, c, t)| (c.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        [
            ("call-ob-1", "acme"),
            ("call-ob-1", "acme"),
            ("call-ob-1", "acme"),
            ("call-ob-2", "beta"),
            ("call-ob-2", "beta")
        ]
    );
    env.cleanup().await;
}

on_both_stacks!(
    a_client_on_one_replica_sees_the_other_and_resumes_there_exactly,
    an_old_last_event_id_gets_a_reset,
    tenants_see_only_their_events_and_tokens_expire,
    a_client_that_never_reads_is_dropped_while_ingest_goes_on,
    active_calls_come_with_their_first_partial_and_leave_with_the_final_or_the_timeout,
    events_committed_but_not_appended_are_appended_by_the_outbox_sweep,
);

/// Two real service processes consuming one stream: a client on A sees what either consumed, and
/// resumes on B with `Last-Event-ID` with exactly the events it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_service_processes_serve_one_resumable_stream() {
    let env = spawn_with(Db::Postgres, Store::S3, |_| {}).await;
    let a = env.start_service(&[
        ("INSIGHTS_CONSUMER_NAME", "replica-a"),
        ("INSIGHTS_ANALYTICS", "off"),
    ]);
    let b = env.start_service(&[
        ("INSIGHTS_CONSUMER_NAME", "replica-b"),
        ("INSIGHTS_ANALYTICS", "off"),
    ]);
    let (base_a, base_b) = (
        format!("http://{}", a.http_addr),
        format!("http://{}", b.http_addr),
    );
    let mut client = Client::connect(&base_a, "", None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..6 {
        env.publish_json(&partial(&format!("call-proc-{i}"), 0, 2, "acme"))
            .await;
    }
    let mut first = Vec::new();
    while first
        .iter()
        .filter(|e: &&Sse| e.event == "call_started")
        .count()
        < 6
    {
        first.push(client.next(20).await.expect("events from both consumers"));
    }
    let last = first.last().unwrap().id.clone().unwrap();
    drop(client);
    for i in 0..6 {
        env.publish_json(&final_report(&format!("call-proc-{i}"), 1, 3))
            .await;
    }
    common::eventually(20, "both processes consumed everything", || async {
        env.unfinished().await == 0
    })
    .await;
    let mut again = Client::connect(&base_b, "", Some(&last), None)
        .await
        .unwrap();
    let got = again.drain(3).await;
    let expected: Vec<(String, String)> = events_in_stream(&env)
        .await
        .into_iter()
        .filter(|(id, _)| {
            call_insights::live::hub::parse_id(id) > call_insights::live::hub::parse_id(&last)
        })
        .collect();
    let got_ids: Vec<(String, String)> = got
        .iter()
        .map(|e| (e.id.clone().unwrap(), e.event.clone()))
        .collect();
    assert_eq!(got_ids, expected);
    assert_eq!(got.iter().filter(|e| e.event == "call_ended").count(), 6);
    env.cleanup().await;
}

/// Two replicas writing reports of the same calls at the same moment (a call's first partial on one,
/// its next partial and its final on either): each call gets exactly one `call_started` and one
/// `call_ended`. Deciding "first report" from a read before the transaction gave a call two
/// `call_started` (one from each replica) whenever the other replica committed in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_writing_one_calls_reports_at_once_derive_each_event_once() {
    use std::collections::HashMap;
    let env = spawn_with(Db::Postgres, Store::S3, |c| {
        c.analytics.mode = Some(call_insights::analytics::Mode::Off)
    })
    .await;
    let (a, b) = (env.app.ingestor(), second(&env).await.ingestor());
    fn decode(v: &Value) -> call_insights::ingest::DecodedEntry {
        let raw = call_insights::ingest::RawEntry {
            id: "0-1".into(),
            fields: Some(vec![("payload".into(), serde_json::to_vec(v).unwrap())]),
            deliveries: 1,
        };
        call_insights::ingest::decode_entry(raw, 1 << 20).unwrap()
    }
    const CALLS: usize = 40;
    const ROUNDS: usize = 8;
    let mut per_call: HashMap<(String, &'static str), usize> = HashMap::new();
    for round in 0..ROUNDS {
        let calls: Vec<String> = (0..CALLS).map(|i| format!("race-{round}-{i}")).collect();
        // One task per report kind, each a batch per call, all started together; the final goes to
        // the replica that did not write the first partial in odd rounds.
        let work = [
            (a.clone(), 0, false),
            (b.clone(), 1, false),
            (if round % 2 == 0 { a.clone() } else { b.clone() }, 2, true),
        ];
        let tasks: Vec<_> = work
            .into_iter()
            .map(|(ingestor, seq, fin)| {
                let calls = calls.clone();
                tokio::spawn(async move {
                    let mut events = Vec::new();
                    for call in &calls {
                        let report = if fin {
                            final_report(call, seq, 3)
                        } else {
                            partial(call, seq, 1 + seq as usize, "acme")
                        };
                        let summary = ingestor.ingest(&[decode(&report)]).await.unwrap();
                        events.extend(
                            summary
                                .live_events
                                .into_iter()
                                .map(|e| (e.call_id.clone(), e.kind)),
                        );
                    }
                    events
                })
            })
            .collect();
        for t in tasks {
            for (call, kind) in t.await.unwrap() {
                *per_call.entry((call, kind)).or_default() += 1;
            }
        }
    }
    let mut twice: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..CALLS {
            let call = format!("race-{round}-{i}");
            for kind in ["call_started", "call_ended"] {
                let n = per_call.get(&(call.clone(), kind)).copied().unwrap_or(0);
                if n != 1 {
                    twice.push(format!("{call}: {n} × {kind}"));
                }
            }
        }
    }
    assert!(
        twice.is_empty(),
        "{} of {} calls' events not exactly once: {twice:?}",
        twice.len(),
        ROUNDS * CALLS
    );
    let finals = env
        .count("call_sessions WHERE is_final AND report_seq = 2")
        .await;
    assert_eq!(
        finals as usize,
        ROUNDS * CALLS,
        "every call ends at its final"
    );
    env.cleanup().await;
}
