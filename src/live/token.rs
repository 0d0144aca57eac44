//! Short-lived stream tokens for browsers' `EventSource` (which cannot send headers): the tenant and
//! an expiry, HMAC-signed with the service's URL signing key. The API mints them for API keys, the
//! UI for its signed-in sessions.

use crate::signing_key::Signer;
use crate::tenancy::Scope;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// A token for `scope` valid for `ttl_ms` (`INSIGHTS_MONITOR_TOKEN_TTL_MS`, at least a second),
/// and when it expires.
pub fn mint(signer: &Signer, ttl_ms: u64, scope: &Scope) -> (String, DateTime<Utc>) {
    let ttl = ttl_ms.max(1000) as i64;
    let expires = Utc::now().timestamp_millis() + ttl;
    let tenant = scope
        .tenant()
        .map_or_else(|| "*".to_string(), str::to_string);
    let sig = signer.sign(&format!("monitor:{tenant}"), expires);
    (
        format!(
            "{expires}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(tenant.as_bytes())
        ),
        DateTime::from_timestamp_millis(expires).unwrap_or_else(Utc::now),
    )
}
