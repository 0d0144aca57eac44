//! API keys and tenancy: `INSIGHTS_API_KEYS` holds `key=tenant` pairs (`*` = every tenant). A tenant
//! key sees only its tenant's sessions; another tenant's session answers 404 like a missing one. With
//! no keys configured the API is open (a warning is logged at start-up). Keys compare in constant time.

use super::{AppState, error::ApiError};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use subtle::ConstantTimeEq;

pub use crate::tenancy::Scope;

/// Who asked, for an audit row: an API key's fingerprint, `open` when no keys are configured.
pub fn requester(keys: &ApiKeys, headers: &axum::http::HeaderMap) -> String {
    if keys.is_open() {
        return "open".into();
    }
    presented_key(headers).map_or_else(
        || "unknown".into(),
        |k| format!("key:{}", fingerprint(k.as_bytes())),
    )
}

/// Parsed `INSIGHTS_API_KEYS`.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<(Vec<u8>, Scope)>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// `key=tenant,key2=*` (whitespace around items ignored).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, tenant) = item.split_once('=').ok_or_else(|| {
                format!(
                    "INSIGHTS_API_KEYS: item {:?} is not key=tenant",
                    redact(item)
                )
            })?;
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.len() < 8 {
                return Err(format!(
                    "INSIGHTS_API_KEYS: the key for tenant {tenant:?} is shorter than 8 characters"
                ));
            }
            if tenant.is_empty() {
                return Err("INSIGHTS_API_KEYS: empty tenant".into());
            }
            let scope = if tenant == "*" {
                Scope::All
            } else {
                Scope::Tenant(tenant.to_string())
            };
            keys.push((key.as_bytes().to_vec(), scope));
        }
        Ok(ApiKeys(keys))
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// The scope of a request's `Authorization: Bearer` key (every tenant when no keys are set).
    pub fn scope_of_headers(&self, headers: &axum::http::HeaderMap) -> Result<Scope, ApiError> {
        if self.is_open() {
            return Ok(Scope::All);
        }
        let presented = presented_key(headers).ok_or(ApiError::Unauthorized)?;
        self.scope_of(presented.as_bytes())
            .ok_or(ApiError::Unauthorized)
    }

    /// The scope of `presented`, comparing against every key in constant time.
    pub fn scope_of(&self, presented: &[u8]) -> Option<Scope> {
        let mut found = None;
        for (key, scope) in &self.0 {
            if bool::from(key.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(scope.clone());
            }
        }
        found
    }
}

impl ApiKeys {
    /// The scope of the configured key whose [`fingerprint`] is `fp` (a UI session names its key so).
    pub fn scope_of_fingerprint(&self, fp: &str) -> Option<Scope> {
        let mut found = None;
        for (key, scope) in &self.0 {
            if bool::from(fingerprint(key).as_bytes().ct_eq(fp.as_bytes())) && found.is_none() {
                found = Some(scope.clone());
            }
        }
        found
    }
}

/// The key of a request's `Authorization: Bearer <key>` header, trimmed.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A digest naming a key without revealing it: the first 8 bytes of its SHA-256, hex.
pub fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn redact(item: &str) -> String {
    item.chars().take(3).chain("…".chars()).collect()
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state.0.api_keys.scope_of_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_scope() {
        let k = ApiKeys::parse(" acme-key-123=acme , ops-key-9999=* ").unwrap();
        assert_eq!(
            k.scope_of(b"acme-key-123"),
            Some(Scope::Tenant("acme".into()))
        );
        assert_eq!(k.scope_of(b"ops-key-9999"), Some(Scope::All));
        assert_eq!(k.scope_of(b"acme-key-12"), None);
        assert!(ApiKeys::parse("short=acme").is_err());
        assert!(ApiKeys::parse("no-equals-sign").is_err());
        assert!(ApiKeys::parse("").unwrap().is_open());
    }
}
