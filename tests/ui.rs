//! The web UI over HTTP against real PostgreSQL/SQLite, Redis and Garage: pages render what is
//! stored, every form needs its CSRF token, sign-in binds a cookie to its key's tenant, and the
//! stable test hooks (`data-turn-index`, `data-rendition`, `data-issue-code`, `data-waterfall`) are
//! there. The browser drives the same pages in `ui_browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use common::calls::ingest_ui_call;
use common::{Db, Store, TestEnv};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `ci_session=…` pair of a response's Set-Cookie.
fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ci_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// The CSRF token a page carries.
fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    html[at..].split('"').next().unwrap().to_string()
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

async fn get(base: &str, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client().get(format!("{base}{path}"));
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    r.send().await.unwrap()
}

async fn open_ui(db: Db, store: Store) {
    let env = common::spawn(db, store).await;
    let base = env.serve_api().await;
    let s = ingest_ui_call(&env, "ui-call-1", "acme").await;
    ingest_ui_call(&env, "ui-call-2", "globex").await;

    // The list: both calls, badges by severity, a cookie that scripts cannot read.
    let r = get(&base, "/", None).await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r).expect("a session cookie");
    let set = r
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("ui-call-1") && html.contains("ui-call-2"),
        "{html}"
    );
    assert!(html.contains("■ 1 critical"), "issue badges: {html}");
    // Filters are the URL's: another tenant's call is not listed.
    let html = get(&base, "/?tenant_id=acme&has_issues=yes", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("ui-call-1") && !html.contains("ui-call-2"));
    // A bad filter value is a clear error, not a 500.
    let r = get(&base, "/?from=yesterday", Some(&cookie)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("from must be a date"));

    // The session page: every turn, every issue, the waterfall, a player per rendition.
    let r = get(
        &base,
        &format!("/sessions/{}?turn=2&t=4.0&rendition=post_rnnoise", s.id),
        Some(&cookie),
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    for i in 0..6 {
        assert!(
            html.contains(&format!(r#"id="turn-{i}" data-turn-index="{i}""#)),
            "turn {i}"
        );
    }
    assert_eq!(count(&html, "<li class=\"turn "), 6);
    assert!(
        html.contains(r#"data-issue-code="high_e2e_latency""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-moment-turn="2""#)
            && html.contains(r#"data-moment-rendition="post_rnnoise""#)
    );
    assert_eq!(count(&html, "<svg data-waterfall"), 3, "one per agent turn");
    assert!(
        html.contains(r#"data-part="unaccounted""#)
            || html.contains(r#"data-part="llm" data-ms="1800.0""#)
    );
    for r in ["pre_rnnoise", "post_rnnoise", "stt_input"] {
        assert!(
            html.contains(&format!(r#"<audio data-rendition="{r}""#)),
            "player {r}"
        );
    }
    let diag: serde_json::Value = client()
        .get(format!("{base}/api/v1/sessions/{}/diagnosis", s.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for i in diag["issues"].as_array().unwrap() {
        let code = i["code"].as_str().unwrap();
        assert!(
            html.contains(&format!(r#"data-issue-code="{code}""#)),
            "issue {code} shown"
        );
    }

    // The players' URLs play: the post-suppression recording answers a range request.
    let url = html
        .split(r#"<audio data-rendition="post_rnnoise""#)
        .nth(1)
        .and_then(|rest| rest.split(r#"src=""#).nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    let a = client()
        .get(&url)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 206, "{url}");

    // Peaks come from the server.
    let p: serde_json::Value = get(
        &base,
        &format!("/sessions/{}/peaks/post", s.id),
        Some(&cookie),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        (p["duration_ms"].as_f64().unwrap() - 12_000.0).abs() < 1.0,
        "{p}"
    );
    assert!(
        p["peaks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_f64().unwrap() > 0.2)
    );
    assert_eq!(
        get(
            &base,
            &format!("/sessions/{}/peaks/nope", s.id),
            Some(&cookie)
        )
        .await
        .status(),
        404
    );

    // A form without its token is refused and changes nothing; with it, the report is filed.
    let form = [
        ("turn_index", "2"),
        ("expected_output", "my account number is four five six"),
        ("issue_type", "misrecognition"),
    ];
    let r = client()
        .post(format!("{base}/sessions/{}/reports", s.id))
        .header(COOKIE, &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(env.count("stt_reports").await, 0);
    let csrf = csrf_of(&html);
    let mut with = form.to_vec();
    with.push(("csrf", &csrf));
    let r = client()
        .post(format!("{base}/sessions/{}/reports", s.id))
        .header(COOKIE, &cookie)
        .form(&with)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(env.count("stt_reports").await, 1);
    // Another visitor's token does not work with this cookie.
    let other = session_cookie(&get(&base, "/", None).await).unwrap();
    let r = client()
        .post(format!("{base}/sessions/{}/reports", s.id))
        .header(COOKIE, &other)
        .form(&with)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let html = get(
        &base,
        &format!("/reports?session_id={}", s.id),
        Some(&cookie),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        html.contains("misrecognition") && html.contains("data-report-clip"),
        "{html}"
    );

    // A user turn that is not one: a readable error page with the API's words.
    with[0] = ("turn_index", "1");
    let r = client()
        .post(format!("{base}/sessions/{}/reports", s.id))
        .header(COOKIE, &cookie)
        .form(&with)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("reports are about user turns")
    );

    // Every other page renders.
    for path in [
        "/dashboards",
        "/dashboards?days=30",
        "/live",
        "/review",
        "/batches",
        "/reports",
    ] {
        let r = get(&base, path, Some(&cookie)).await;
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("</html>"), "{path}");
    }
    assert_eq!(
        get(&base, "/sessions/not-a-uuid", Some(&cookie))
            .await
            .status(),
        400
    );
    assert_eq!(
        get(
            &base,
            &format!("/sessions/{}", uuid::Uuid::new_v4()),
            Some(&cookie)
        )
        .await
        .status(),
        404
    );
    // A batch from the list's filter needs an STT provider: none here, and the page says so.
    let r = client()
        .post(format!("{base}/batches"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str()), ("tenant_id", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no STT provider is configured")
    );

    // Assets: cached for a year under a content hash.
    let r = get(&base, "/ui/assets/app.js", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    env.cleanup().await;
}

#[tokio::test]
async fn open_ui_postgres_s3() {
    open_ui(Db::Postgres, Store::S3).await;
}

#[tokio::test]
async fn open_ui_sqlite_fs() {
    open_ui(Db::Sqlite, Store::Fs).await;
}

async fn keyed(env: &TestEnv) -> String {
    env.serve_api().await
}

#[tokio::test]
async fn sign_in_binds_the_cookie_to_the_keys_tenant() {
    let env = common::spawn_with(Db::Postgres, Store::Fs, |c| {
        c.api_keys = "acme-key-123=acme,ops-key-9999=*".into();
    })
    .await;
    let base = keyed(&env).await;
    let a = ingest_ui_call(&env, "ui-acme", "acme").await;
    let g = ingest_ui_call(&env, "ui-globex", "globex").await;

    // Not signed in: every page sends you to sign in, remembering where you were going.
    let r = get(&base, &format!("/sessions/{}?turn=2", a.id), None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        format!("/sign-in?next=%2Fsessions%2F{}%3Fturn%3D2", a.id)
    );
    let anon = session_cookie(&r).unwrap();
    let page = get(&base, "/sign-in", Some(&anon))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);

    // A wrong key: 401 and the form again. No token: 403.
    let r = client()
        .post(format!("{base}/sign-in"))
        .header(COOKIE, &anon)
        .form(&[("csrf", csrf.as_str()), ("api_key", "wrong-key-000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not one this service knows")
    );
    let r = client()
        .post(format!("{base}/sign-in"))
        .header(COOKIE, &anon)
        .form(&[("api_key", "acme-key-123")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The tenant key: back to where it was going, with a new cookie that sees only acme.
    let next = format!("/sessions/{}?turn=2", a.id);
    let r = client()
        .post(format!("{base}/sign-in"))
        .header(COOKIE, &anon)
        .form(&[
            ("csrf", csrf.as_str()),
            ("api_key", "acme-key-123"),
            ("next", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], next.as_str());
    let acme = session_cookie(&r).unwrap();
    assert_ne!(acme, anon, "a new session on sign-in");
    let html = get(&base, "/", Some(&acme)).await.text().await.unwrap();
    assert!(html.contains("ui-acme") && !html.contains("ui-globex"));
    assert_eq!(
        get(&base, &format!("/sessions/{}", a.id), Some(&acme))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&base, &format!("/sessions/{}", g.id), Some(&acme))
            .await
            .status(),
        404,
        "another tenant's call is not found"
    );
    assert_eq!(
        get(
            &base,
            &format!("/sessions/{}/peaks/post", g.id),
            Some(&acme)
        )
        .await
        .status(),
        404
    );
    // Asking for another tenant in the filter does not widen the scope.
    let html = get(&base, "/?tenant_id=globex", Some(&acme))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("ui-globex"));
    // A tampered cookie is no sign-in.
    let tampered = acme.replacen("v1.", "v1.Kg.", 1);
    assert_eq!(get(&base, "/", Some(&tampered)).await.status(), 303);

    // The operator key sees both.
    let r = client()
        .post(format!("{base}/sign-in"))
        .header(COOKIE, &anon)
        .form(&[("csrf", csrf.as_str()), ("api_key", "ops-key-9999")])
        .send()
        .await
        .unwrap();
    let ops = session_cookie(&r).unwrap();
    let html = get(&base, "/", Some(&ops)).await.text().await.unwrap();
    assert!(html.contains("ui-acme") && html.contains("ui-globex"));

    // Sign out needs the token too, then the cookie is an anonymous one again.
    let html = get(&base, "/", Some(&acme)).await.text().await.unwrap();
    let token = csrf_of(&html);
    let r = client()
        .post(format!("{base}/sign-out"))
        .header(COOKIE, &acme)
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(format!("{base}/sign-out"))
        .header(COOKIE, &acme)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let after = session_cookie(&r).unwrap();
    assert_eq!(get(&base, "/", Some(&after)).await.status(), 303);

    // The live page's stream token is bound to the tenant too.
    let html = get(&base, "/live", Some(&acme)).await.text().await.unwrap();
    let token = html
        .split(r#"data-token=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = client()
        .get(format!("{base}/api/v1/monitor/active-calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!(
            "{base}/api/v1/monitor/stream?token={token}&tenant_id=globex"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an acme token cannot read globex");
    env.cleanup().await;
}

#[tokio::test]
async fn a_200_turn_session_page_renders_every_turn() {
    let env = common::spawn(Db::Postgres, Store::Fs).await;
    let base = env.serve_api().await;
    let r = common::report("long-call", 0, true, 200);
    env.publish_json(&r).await;
    env.drain(&mut env.consumer()).await;
    let s = env.session("long-call").await.unwrap();
    let started = std::time::Instant::now();
    let r = get(&base, &format!("/sessions/{}", s.id), None).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    // Printed, not asserted: the benchmark (`cargo bench --bench ui`) measures it properly.
    eprintln!(
        "200-turn session page: {} bytes in {:?}",
        html.len(),
        started.elapsed()
    );
    assert_eq!(count(&html, "<li class=\"turn "), 200);
    assert!(html.contains(r#"data-turn-index="199""#));
    env.cleanup().await;
}
