//! Short-lived stream tokens for browsers' `EventSource` (which cannot send headers): the tenant and
//! an expiry, HMAC-signed with the service's URL signing key. The API mints them for API keys, the
//! UI for its signed-in sessions.

use crate::api::auth::Scope;
use crate::app::App;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// A token for `scope` valid for `INSIGHTS_MONITOR_TOKEN_TTL_MS`, and when it expires.
pub fn mint(app: &App, scope: &Scope) -> (String, DateTime<Utc>) {
    let ttl = app.config.monitor_token_ttl_ms.max(1000) as i64;
    let expires = Utc::now().timestamp_millis() + ttl;
    let tenant = scope
        .tenant()
        .map_or_else(|| "*".to_string(), str::to_string);
    let sig = app.url_signer.sign(&format!("monitor:{tenant}"), expires);
    (
        format!(
            "{expires}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(tenant.as_bytes())
        ),
        DateTime::from_timestamp_millis(expires).unwrap_or_else(Utc::now),
    )
}
