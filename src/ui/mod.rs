//! The web UI at `/`: server-rendered pages (minijinja templates compiled into the binary) over the
//! same domain functions as the API — the sessions list, the call as a picture (latency waterfall,
//! audio players for every rendition on one time axis, diagnosis, STT grid), dashboards, live
//! monitoring, the analytics review queue, batch jobs and STT reports — with small vendored JS
//! (htmx, wavesurfer.js, uPlot; `assets/vendor/VENDORED.md`), a signed session cookie and CSRF tokens.
//! No Node, no CDN: `cargo build` is all it needs.

pub mod assets;
pub mod auth;
mod insights;
mod jobs;
mod live;
mod recordings;
mod reports;
mod sessions;
pub mod waterfall;

use crate::api::AppState;
use crate::api::error::ApiError;
use auth::Ctx;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value, context};
use serde::Serialize;
use std::sync::OnceLock;

/// Every UI route, behind the session/CSRF layer (assets outside it).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(sessions::list))
        .route("/sessions/{id}", get(sessions::page))
        .route("/sessions/{id}/peaks/{segment_id}", get(sessions::peaks))
        .route("/sessions/{id}/analysis", post(sessions::run_analysis))
        .route("/sessions/{id}/reports", post(sessions::report_issue))
        .route("/dashboards", get(insights::dashboards))
        .route("/review", get(insights::review))
        .route("/review/{id}", post(insights::submit_review))
        .route("/live", get(live::page))
        .route("/live/token", post(live::token))
        .route("/batches", get(jobs::list).post(jobs::create))
        .route("/batches/{id}", get(jobs::show))
        .route("/batches/{id}/cancel", post(jobs::cancel))
        .route("/recordings", get(recordings::list))
        .route("/recordings/{id}", get(recordings::show))
        .route("/recordings/{id}/audio", get(recordings::audio))
        .route("/recordings/{id}/roles", post(recordings::roles))
        .route("/recordings/{id}/transcripts", post(recordings::transcribe))
        .route("/recordings/{id}/record", post(recordings::record))
        .route("/reports", get(reports::reports))
        .route("/reports/{id}/analyze", post(reports::analyze_report))
        .route("/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route("/sign-out", post(auth::sign_out))
        .layer(axum::middleware::from_fn_with_state(state, auth::layer));
    Router::new()
        .route("/ui/assets/{*file}", get(assets::serve))
        .merge(pages)
}

/// The UI's recording upload: outside the API's 1 MiB body limit and request timeout (merged where
/// the API's own upload is), behind the same session and CSRF layer (the token in a header).
pub fn upload_router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/recordings/upload", post(recordings::upload))
        .layer(axum::middleware::from_fn_with_state(state, auth::layer))
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "UI template does not compile");
            }
        }
        env.add_filter("ms", |v: Option<f64>| {
            v.map_or_else(|| "—".to_string(), waterfall::fmt_ms)
        });
        env.add_filter("clock", |v: Option<f64>| {
            v.map_or_else(|| "—".into(), clock)
        });
        env.add_filter("dt", |v: Option<String>| {
            v.map_or_else(
                || "—".to_string(),
                |s| s.replace('T', " ").chars().take(19).collect::<String>(),
            )
        });
        env.add_filter("num", |v: Option<f64>, digits: Option<usize>| {
            v.map_or_else(|| "—".into(), |v| format!("{v:.*}", digits.unwrap_or(1)))
        });
        env.add_filter("pct", |v: Option<f64>| {
            v.map_or_else(|| "—".into(), |v| format!("{:.0} %", v * 100.0))
        });
        env.add_function("asset", assets::url);
        env
    })
}

/// JSON safe to place inside `<script type="application/json">`: `<`, `>` and `&` are written as
/// `\u003c`-style escapes, so data (an agent id, a topic) can never close the script element.
pub fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `m:ss.d` of a call offset in milliseconds.
pub fn clock(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0);
    format!("{}:{:04.1}", (s / 60.0).floor() as i64, s % 60.0)
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("sessions.html", include_str!("templates/sessions.html")),
    ("session.html", include_str!("templates/session.html")),
    ("dashboards.html", include_str!("templates/dashboards.html")),
    ("review.html", include_str!("templates/review.html")),
    ("live.html", include_str!("templates/live.html")),
    ("batches.html", include_str!("templates/batches.html")),
    ("batch.html", include_str!("templates/batch.html")),
    ("reports.html", include_str!("templates/reports.html")),
    ("recordings.html", include_str!("templates/recordings.html")),
    ("recording.html", include_str!("templates/recording.html")),
];

/// Renders `name` with `data` and the context every page has (CSRF token, sign-in state, nav).
pub fn render(name: &str, ctx: &Ctx, nav: &str, data: impl Serialize) -> Result<Response, UiError> {
    let tpl = env().get_template(name).map_err(UiError::template)?;
    let html = tpl
        .render(context! {
            csrf => ctx.csrf,
            signed_in => ctx.signed_in,
            auth_required => ctx.auth_required,
            tenant => ctx.scope.tenant(),
            nav => nav,
            ..Value::from_serialize(&data)
        })
        .map_err(UiError::template)?;
    let mut r = Html(html).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// An error as a page: what went wrong, in words, with the status code.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let html = env()
        .get_template("error.html")
        .and_then(|t| {
            t.render(context! { status => status.as_u16(), title => title, message => message, nav => "" })
        })
        .unwrap_or_else(|_| format!("<h1>{}</h1>", status.as_u16()));
    (status, Html(html)).into_response()
}

/// A page's failure: a domain error (shown with its status) or a template bug (500, logged).
#[cfg(test)]
mod tests {
    #[test]
    fn script_json_cannot_close_its_script_element() {
        let v = serde_json::json!({"agent_id": "</script><script>alert(1)</script>&"});
        let s = super::script_json(&v);
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }
}

#[derive(Debug)]
pub enum UiError {
    Api(ApiError),
    Template(String),
}

impl UiError {
    fn template(e: minijinja::Error) -> Self {
        UiError::Template(format!("{e:#}"))
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl From<crate::error::Error> for UiError {
    fn from(e: crate::error::Error) -> Self {
        UiError::Api(e.into())
    }
}

impl From<sea_orm::DbErr> for UiError {
    fn from(e: sea_orm::DbErr) -> Self {
        UiError::Api(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Template(e) => {
                tracing::error!(error = %e, "UI page failed to render");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "This page failed",
                    "The page could not be rendered; the error is in the service log.",
                )
            }
            UiError::Api(e) => {
                let message = match &e {
                    ApiError::Internal(_) => {
                        "The service could not do this; the cause is in its log.".to_string()
                    }
                    other => other.to_string(),
                };
                let status = e.into_response().status();
                let title = match status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::BAD_REQUEST => "That did not work",
                    StatusCode::CONFLICT => "Not now",
                    StatusCode::SERVICE_UNAVAILABLE => "Not available here",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    _ => "Something went wrong",
                };
                error_page(status, title, &message)
            }
        }
    }
}
