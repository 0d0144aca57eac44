//! UI sign-in and CSRF (the sign-in page, sign-in and sign-out handlers are here too): every visitor holds a signed `ci_session` cookie (HttpOnly, SameSite=Strict,
//! `Secure` behind an https `INSIGHTS_PUBLIC_BASE_URL`). Signed in, it names its API key by
//! fingerprint and its tenant; a key removed from `INSIGHTS_API_KEYS` ends its sessions. Every
//! unsafe request carries the session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
//! With no API keys configured the UI is open and the cookie only carries the CSRF nonce.

use super::{UiError, render};
use crate::api::AppState;
use crate::api::auth::{Scope, fingerprint};
use crate::app::App;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Form, Query};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::Deserialize;

pub const COOKIE: &str = "ci_session";
/// Largest form body the UI accepts.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What a page request may see and the token its forms carry (an extension set by [`layer`]).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scope: Scope,
    pub csrf: String,
    /// Signed in with an API key (false in the open embedded default).
    pub signed_in: bool,
    /// API keys are configured, so the UI asks for one.
    pub auth_required: bool,
}

/// A parsed, verified session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// `-` anonymous, `*` every tenant, else the tenant base64url-encoded.
    scope_word: String,
    /// The key's fingerprint, `-` when anonymous.
    key: String,
    expires: i64,
    nonce: String,
}

impl Session {
    fn anonymous(app: &App, now: i64) -> Self {
        Session {
            scope_word: "-".into(),
            key: "-".into(),
            expires: now + ttl_secs(app),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// A signed-in session for `key` (which must be configured) with its scope.
    pub fn signed_in(app: &App, key: &[u8], scope: &Scope) -> Self {
        Session {
            scope_word: match scope {
                Scope::All => "*".into(),
                Scope::Tenant(t) => URL_SAFE_NO_PAD.encode(t.as_bytes()),
            },
            key: fingerprint(key),
            expires: Utc::now().timestamp() + ttl_secs(app),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// A fresh anonymous session (what signing out leaves).
    pub fn signed_out(app: &App) -> Self {
        Session::anonymous(app, Utc::now().timestamp())
    }

    fn signed_text(&self) -> String {
        format!("ui:{}:{}:{}", self.scope_word, self.key, self.nonce)
    }

    fn verify(app: &App, value: &str, now: i64) -> Option<Self> {
        let mut it = value.split('.');
        let (v, scope_word, key, exp, nonce, sig) = (
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
            it.next()?,
        );
        if v != "v1" || it.next().is_some() {
            return None;
        }
        let s = Session {
            scope_word: scope_word.into(),
            key: key.into(),
            expires: exp.parse().ok()?,
            nonce: nonce.into(),
        };
        app.signer
            .verify(&s.signed_text(), s.expires, sig, now)
            .ok()?;
        Some(s)
    }

    /// The scope this session grants now: every tenant when the UI is open; a signed-in session's
    /// tenant while its key is still configured with that scope; otherwise none.
    fn scope(&self, app: &App) -> Option<Scope> {
        if app.api_keys.is_open() {
            return Some(Scope::All);
        }
        if self.key == "-" {
            return None;
        }
        let claimed = if self.scope_word == "*" {
            Scope::All
        } else {
            let t = URL_SAFE_NO_PAD.decode(&self.scope_word).ok()?;
            Scope::Tenant(String::from_utf8(t).ok()?)
        };
        (app.api_keys.scope_of_fingerprint(&self.key)? == claimed).then_some(claimed)
    }

    fn csrf(&self, app: &App) -> String {
        app.signer
            .sign(&format!("csrf:{}", self.nonce), self.expires)
    }

    fn csrf_ok(&self, app: &App, token: &str, now: i64) -> bool {
        app.signer
            .verify(&format!("csrf:{}", self.nonce), self.expires, token, now)
            .is_ok()
    }

    /// The `Set-Cookie` value.
    pub fn cookie(&self, app: &App) -> HeaderValue {
        let value = format!(
            "v1.{}.{}.{}.{}.{}",
            self.scope_word,
            self.key,
            self.expires,
            self.nonce,
            app.signer.sign(&self.signed_text(), self.expires)
        );
        let secure = app
            .config
            .public_base_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        let cookie = format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            ttl_secs(app),
            if secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn ttl_secs(app: &App) -> i64 {
    i64::try_from(app.config.ui_session_hours.clamp(1, 24 * 90)).unwrap_or(12) * 3600
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The form field `csrf` of an urlencoded body.
fn form_token(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v)
}

/// A local path to return to after signing in (never another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

/// The UI's middleware: verifies (or issues) the session cookie, checks CSRF on unsafe methods,
/// sends visitors without a valid sign-in to `/sign-in`, and hands pages a [`Ctx`].
pub async fn layer(State(AppState(app)): State<AppState>, req: Request, next: Next) -> Response {
    let now = Utc::now().timestamp();
    let parsed = cookie_value(req.headers()).and_then(|v| Session::verify(&app, v, now));
    let fresh = parsed.is_none();
    let session = parsed.unwrap_or_else(|| Session::anonymous(&app, now));
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (parts, body) = req.into_parts();
        // A token in the header leaves the body unread (a recording upload streams through); a
        // form's token is in its body, which is small.
        let (token, body) = match header_token {
            Some(t) => (Some(t), body),
            None => {
                let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
                    return super::error_page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Form too large",
                        &format!("The UI accepts forms up to {} KiB.", MAX_FORM_BYTES / 1024),
                    );
                };
                (form_token(&bytes), Body::from(bytes))
            }
        };
        if fresh || !token.is_some_and(|t| session.csrf_ok(&app, &t, now)) {
            tracing::warn!(path = %parts.uri.path(), "UI form refused: missing or stale CSRF token");
            return super::error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form's security token is missing, expired, or the form came from another site. Reload the page and try again.",
            );
        }
        req = Request::from_parts(parts, body);
    }
    let scope = session.scope(&app);
    let path = req.uri().path();
    let mut response = match scope {
        None if path != "/sign-in" => {
            let here = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let to = format!(
                "/sign-in?next={}",
                crate::text::percent_encode(&here, |_, b| crate::text::unreserved(b))
            );
            Redirect::to(&to).into_response()
        }
        scope => {
            req.extensions_mut().insert(Ctx {
                scope: scope.clone().unwrap_or(Scope::Tenant(String::new())),
                csrf: session.csrf(&app),
                signed_in: scope.is_some() && !app.api_keys.is_open(),
                auth_required: !app.api_keys.is_open(),
            });
            next.run(req).await
        }
    };
    if fresh && !response.headers().contains_key(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session.cookie(&app));
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    pub next: Option<String>,
}

pub async fn sign_in_page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<SignInQuery>,
) -> Result<Response, UiError> {
    if state.0.api_keys.is_open() {
        return Ok(Redirect::to(&safe_next(q.next.as_deref())).into_response());
    }
    render(
        "sign_in.html",
        &ctx,
        "",
        serde_json::json!({"next": safe_next(q.next.as_deref()), "error": null}),
    )
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub next: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<SignInForm>,
) -> Result<Response, UiError> {
    let app = &state.0;
    let next = safe_next(Some(&f.next));
    let key = f.api_key.trim();
    match app.api_keys.scope_of(key.as_bytes()) {
        Some(scope) => {
            let session = Session::signed_in(app, key.as_bytes(), &scope);
            tracing::info!(tenant = scope.tenant().unwrap_or("*"), "UI sign-in");
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, session.cookie(app));
            Ok(r)
        }
        None => {
            tracing::warn!("UI sign-in refused: unknown API key");
            let mut r = render(
                "sign_in.html",
                &ctx,
                "",
                serde_json::json!({"next": next, "error": "That API key is not one this service knows."}),
            )?;
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
    }
}

pub async fn sign_out(State(state): State<AppState>) -> Response {
    let mut r = Redirect::to("/sign-in").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        Session::signed_out(&state.0).cookie(&state.0),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/sessions/x?turn=2")), "/sessions/x?turn=2");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_csrf_field_is_read_from_a_form() {
        assert_eq!(form_token(b"a=1&csrf=abc%20d").as_deref(), Some("abc d"));
        assert_eq!(form_token(b"a=1"), None);
    }
}
