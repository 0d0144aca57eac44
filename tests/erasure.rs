//! Erasure and retention against real PostgreSQL/SQLite, Redis and Garage/files: after
//! `DELETE /api/v1/sessions/{id}` nothing of the call remains in any table, object store, stream or
//! cache; the erasure is idempotent, tenant-scoped and audited without content. The retention sweep
//! erases old sessions (keeping reports' archived clips), then the archived clips past theirs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use call_insights::analytics::worker;
use common::calls::ingest_ui_call;
use common::{Db, Store, TestEnv};
use serde_json::{Value, json};

const ACME: &str = "acme-key-123";
const GLOBEX: &str = "globex-key-12";

async fn setup(
    db: Db,
    store: Store,
    tweak: impl FnOnce(&mut call_insights::config::Config),
) -> (TestEnv, String) {
    let env = common::spawn_with(db, store, |c| {
        c.api_keys = format!("{ACME}=acme,{GLOBEX}=globex");
        c.webhooks.allow_private = true;
        tweak(c);
    })
    .await;
    let base = env.serve_api().await;
    (env, base)
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every table with a `session_id` or `call_id` column, and how many rows name the call.
async fn rows_naming(env: &TestEnv, session: uuid::Uuid, call_id: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let tables = match env.db_kind {
        Db::Postgres => env.rows("SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = 'public' AND column_name IN ('session_id', 'call_id', 'id')").await,
        Db::Sqlite => {
            let mut v = Vec::new();
            for t in env.rows("SELECT name AS t FROM sqlite_master WHERE type = 'table'").await {
                let name = t["t"].as_str().unwrap().to_string();
                for c in env.rows(&format!("SELECT name AS c FROM pragma_table_info('{name}')")).await {
                    v.push(json!({"t": name, "c": c["c"]}));
                }
            }
            v
        }
    };
    for r in tables {
        let (t, c) = (r["t"].as_str().unwrap(), r["c"].as_str().unwrap());
        let value = match c {
            "call_id" => call_id.to_string(),
            "session_id" => session.to_string(),
            // A session's own row.
            "id" if t == "call_sessions" => session.to_string(),
            _ => continue,
        };
        if t == "erasure_audit" {
            continue;
        }
        let sql = match env.db_kind {
            Db::Postgres => {
                format!("SELECT COUNT(*) AS n FROM \"{t}\" WHERE CAST(\"{c}\" AS TEXT) = '{value}'")
            }
            Db::Sqlite => format!(
                "SELECT COUNT(*) AS n FROM \"{t}\" WHERE lower(hex(\"{c}\")) = lower(replace('{value}', '-', '')) OR \"{c}\" = '{value}'"
            ),
        };
        let n = env.rows(&sql).await[0]["n"].as_i64().unwrap_or(0);
        if n > 0 {
            out.push((format!("{t}.{c}"), n));
        }
    }
    out
}

async fn nothing_of_the_call_remains(db: Db, store: Store) {
    let (env, base) = setup(db, store, |_| {}).await;
    let live_reader = tokio_util::sync::CancellationToken::new();
    let s = ingest_ui_call(&env, "erase-me", "acme").await;
    let keep = ingest_ui_call(&env, "keep-me", "acme").await;
    // A webhook endpoint (its delivery rows name the session), the analytics, a report with clips.
    let (status, _) = call(&base, reqwest::Method::POST, "/api/v1/webhooks", ACME,
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["call.analyzed", "call.issue_detected"]}))).await;
    assert_eq!(status, 201);
    worker::process_available(&env.app.analytics, &env.app.db, "w", 100)
        .await
        .unwrap();
    let (status, report) = call(&base, reqwest::Method::POST, "/api/v1/reports", ACME,
        Some(json!({"session_id": s.id, "turn_index": 2, "expected_output": "four five six seven", "issue_type": "misrecognition"}))).await;
    assert_eq!(status, 201, "{report}");
    // The timeline cached in memory.
    let (status, _) = call(
        &base,
        reqwest::Method::GET,
        &format!("/api/v1/sessions/{}/timeline", s.id),
        ACME,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let before = rows_naming(&env, s.id, "erase-me").await;
    for t in [
        "call_sessions.id",
        "conversation_turns.session_id",
        "audio_segments.session_id",
        "call_analytics.session_id",
        "stt_reports.session_id",
        "webhook_deliveries.session_id",
    ] {
        assert!(
            before.iter().any(|(n, _)| n == t),
            "{t} has the call before: {before:?}"
        );
    }
    let objects: Vec<String> = env
        .segments("erase-me")
        .await
        .into_iter()
        .filter_map(|g| g.s3_key)
        .collect();
    assert_eq!(objects.len(), 4);
    let (source, archive) = (
        report["source_s3_key"].as_str().unwrap().to_string(),
        report["archive_s3_key"].as_str().unwrap().to_string(),
    );
    // The call's live events are in the events stream.
    let events_stream = call_insights::live::events_stream(&env.app.config.stream);
    env.app.live.flush().await;
    let mut conn = env.conn().await;
    let dump: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&events_stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let sid = s.id.to_string();
    let naming = |d: &[(String, Vec<(String, String)>)]| {
        d.iter()
            .filter(|(_, f)| f.iter().any(|(_, v)| v.contains(&sid)))
            .count()
    };
    assert!(naming(&dump) > 0, "live events name the call");

    // Another tenant cannot erase it, and learns nothing.
    let (status, _) = call(
        &base,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{}", s.id),
        GLOBEX,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(env.session("erase-me").await.is_some());

    let (status, receipt) = call(
        &base,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{}", s.id),
        ACME,
        None,
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["already_erased"], false);
    assert_eq!(receipt["removed"]["audio_objects"], 4, "{receipt}");
    assert_eq!(receipt["removed"]["report_clips"], 2, "{receipt}");
    assert!(
        receipt["removed"]["live_events"].as_u64().unwrap() > 0,
        "{receipt}"
    );

    // Nothing remains: rows, objects (both stores), deliveries, live events, the cached timeline.
    assert_eq!(
        rows_naming(&env, s.id, "erase-me").await,
        Vec::<(String, i64)>::new()
    );
    for k in &objects {
        assert!(
            env.app.store.get(None, k).await.unwrap().is_none(),
            "object {k} gone"
        );
    }
    assert!(env.app.store.get(None, &source).await.unwrap().is_none());
    assert!(
        env.app
            .archive
            .store
            .get(None, &archive)
            .await
            .unwrap()
            .is_none()
    );
    let dump: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&events_stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(naming(&dump), 0, "no live event names the call");
    let (status, _) = call(
        &base,
        reqwest::Method::GET,
        &format!("/api/v1/sessions/{}/timeline", s.id),
        ACME,
        None,
    )
    .await;
    assert_eq!(status, 404, "the cached timeline is gone too");
    // The other call is untouched.
    assert!(env.session("keep-me").await.is_some());
    assert_eq!(env.segments("keep-me").await.len(), 4);
    let (status, _) = call(
        &base,
        reqwest::Method::GET,
        &format!("/api/v1/sessions/{}/timeline", keep.id),
        ACME,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Audited without content; repeating it (by id or call id) answers the same receipt.
    let audit = env.rows("SELECT * FROM erasure_audit").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let text = serde_json::to_string(&audit).unwrap();
    for said in ["book a table", "four five six", "Agent answer"] {
        assert!(!text.contains(said), "the audit holds no content: {text}");
    }
    assert!(
        text.contains("key:"),
        "who asked (the key's fingerprint): {text}"
    );
    assert!(!text.contains(ACME), "never the key itself");
    for path in [
        format!("/api/v1/sessions/{}", s.id),
        "/api/v1/sessions/by-call/erase-me".to_string(),
    ] {
        let (status, again) = call(&base, reqwest::Method::DELETE, &path, ACME, None).await;
        assert_eq!(
            (status, &again["already_erased"]),
            (200, &json!(true)),
            "{path}: {again}"
        );
        assert_eq!(again["erasure_id"], receipt["erasure_id"]);
        let (status, _) = call(&base, reqwest::Method::DELETE, &path, GLOBEX, None).await;
        assert_eq!(
            status, 404,
            "another tenant does not see the receipt either"
        );
    }
    let (status, _) = call(
        &base,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{}", uuid::Uuid::new_v4()),
        ACME,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // By call id for a live call.
    let (status, r) = call(
        &base,
        reqwest::Method::DELETE,
        "/api/v1/sessions/by-call/keep-me",
        ACME,
        None,
    )
    .await;
    assert_eq!(
        (status, r["session_id"].as_str()),
        (200, Some(keep.id.to_string().as_str()))
    );
    assert!(env.session("keep-me").await.is_none());
    live_reader.cancel();
    env.cleanup().await;
}

#[tokio::test]
async fn erasure_postgres_s3() {
    nothing_of_the_call_remains(Db::Postgres, Store::S3).await;
}

#[tokio::test]
async fn erasure_sqlite_fs() {
    nothing_of_the_call_remains(Db::Sqlite, Store::Fs).await;
}

#[tokio::test]
async fn retention_erases_old_calls_and_then_their_archived_clips() {
    let (env, base) = setup(Db::Postgres, Store::S3, |c| {
        c.retention_days = Some(20);
        c.archive_retention_days = Some(90);
        c.retention_batch = 1;
    })
    .await;
    // `ingest_ui_call` starts its calls on 2026-11-01; a fresh one starts now.
    let old = ingest_ui_call(&env, "old-call", "acme").await;
    let mut fresh = common::report("fresh-call", 0, true, 2);
    fresh["started_at"] = json!(chrono::Utc::now().to_rfc3339());
    env.publish_json(&fresh).await;
    env.drain(&mut env.consumer()).await;
    let (status, report) = call(&base, reqwest::Method::POST, "/api/v1/reports", ACME,
        Some(json!({"session_id": old.id, "turn_index": 0, "expected_output": "a table for two", "issue_type": "other"}))).await;
    assert_eq!(status, 201);
    let objects: Vec<String> = env
        .segments("old-call")
        .await
        .into_iter()
        .filter_map(|g| g.s3_key)
        .collect();
    let old_started = old.started_at;
    assert!(
        chrono::Utc::now() - old_started > chrono::Duration::days(20),
        "the fixture is old enough"
    );

    let (sessions, clips) = call_insights::erasure::sweep_once(&env.app.eraser())
        .await
        .unwrap();
    assert_eq!((sessions, clips), (1, 0));
    assert!(env.session("old-call").await.is_none());
    assert!(env.session("fresh-call").await.is_some());
    for k in &objects {
        assert!(env.app.store.get(None, k).await.unwrap().is_none());
    }
    // The report stays with its archived clip; its short-term copy went with the session.
    let r = &env
        .rows(&format!(
            "SELECT source_s3_key, archive_s3_key FROM stt_reports WHERE id = '{}'",
            report["id"].as_str().unwrap()
        ))
        .await[0];
    assert!(
        r["source_s3_key"].is_null() && r["archive_s3_key"].is_string(),
        "{r}"
    );
    let archive = report["archive_s3_key"].as_str().unwrap();
    assert!(
        env.app
            .archive
            .store
            .get(None, archive)
            .await
            .unwrap()
            .is_some()
    );

    // 91 days later (the report's clock moved back), the archived clip and the report go too.
    use sea_orm::ConnectionTrait;
    env.app
        .db
        .execute_unprepared(&format!(
            "UPDATE stt_reports SET created_at = created_at - INTERVAL '91 days' WHERE id = '{}'",
            report["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    let (sessions, clips) = call_insights::erasure::sweep_once(&env.app.eraser())
        .await
        .unwrap();
    assert_eq!((sessions, clips), (0, 1));
    assert!(
        env.app
            .archive
            .store
            .get(None, archive)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(env.count("stt_reports").await, 0);
    let audit = env
        .rows("SELECT reason, requested_by FROM erasure_audit ORDER BY erased_at")
        .await;
    assert_eq!(
        audit,
        vec![
            json!({"reason": "retention", "requested_by": "retention"}),
            json!({"reason": "archive_retention", "requested_by": "retention"})
        ]
    );
    // Nothing is due any more.
    assert_eq!(
        call_insights::erasure::sweep_once(&env.app.eraser())
            .await
            .unwrap(),
        (0, 0)
    );
    env.cleanup().await;
}
