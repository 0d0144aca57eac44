//! Signed webhooks (Standard Webhooks): endpoints per tenant, the delivery outbox written in the
//! transaction that stores the result causing an event, and the signing scheme. Deliveries are
//! at-least-once across crashes, retried with back-off and jitter, and never block analytics.

pub mod deliver;
pub mod ssrf;

use crate::crypto::Keys;
use crate::error::Error;
use crate::tenancy::Scope;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use entity::{webhook_deliveries as wd, webhook_endpoints as we};
use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use uuid::Uuid;

/// Event types an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 4] = [
    "call.analyzed",
    "lead.hot",
    "call.escalated",
    "call.issue_detected",
];

/// Delivery settings (`INSIGHTS_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Allow loopback/private targets (tests, on-premise receivers).
    pub allow_private: bool,
    /// When not empty, the only hosts webhooks may target (an egress allowlist).
    pub allowed_hosts: Vec<String>,
    /// Per attempt.
    pub timeout: Duration,
    /// Wait after each failed attempt; past the last, the delivery fails.
    pub schedule: Vec<Duration>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_private: false,
            allowed_hosts: Vec::new(),
            timeout: Duration::from_secs(15),
            schedule: parse_schedule("5s,5m,30m,2h,5h,10h,14h,20h,24h").unwrap_or_default(),
            concurrency: 8,
            poll: Duration::from_millis(500),
        }
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "ms"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

pub fn parse_schedule(s: &str) -> Option<Vec<Duration>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_duration)
        .collect()
}

impl Settings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut s = Settings::default();
        let val = |n: &str| {
            get(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = val("INSIGHTS_WEBHOOK_ALLOW_PRIVATE") {
            s.allow_private = match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => anyhow::bail!("INSIGHTS_WEBHOOK_ALLOW_PRIVATE={v:?}: expected true or false"),
            };
        }
        if let Some(v) = val("INSIGHTS_WEBHOOK_ALLOWED_HOSTS") {
            s.allowed_hosts = v
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
        }
        if let Some(v) = val("INSIGHTS_WEBHOOK_TIMEOUT_MS") {
            s.timeout = Duration::from_millis(v.parse().map_err(|_| {
                anyhow::anyhow!("INSIGHTS_WEBHOOK_TIMEOUT_MS={v:?}: expected milliseconds")
            })?);
        }
        if let Some(v) = val("INSIGHTS_WEBHOOK_RETRY_SCHEDULE") {
            s.schedule = parse_schedule(&v).ok_or_else(|| {
                anyhow::anyhow!("INSIGHTS_WEBHOOK_RETRY_SCHEDULE={v:?}: expected e.g. 5s,5m,30m,2h")
            })?;
        }
        if let Some(v) = val("INSIGHTS_WEBHOOK_CONCURRENCY") {
            s.concurrency = v
                .parse::<usize>()
                .map_err(|_| {
                    anyhow::anyhow!("INSIGHTS_WEBHOOK_CONCURRENCY={v:?}: expected a number")
                })?
                .max(1);
        }
        Ok(s)
    }
}

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    if SystemRandom::new().fill(&mut key).is_err() {
        // Fall back to two v4 UUIDs (also from the OS RNG) rather than fail registration.
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    }
    format!("whsec_{}", STANDARD.encode(key))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the secret's decoded bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a Standard Webhooks signature header (what a receiver does): any `v1,` entry matching in
/// constant time, and a timestamp within `tolerance` of now.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &str,
    header: &str,
    tolerance: Duration,
) -> bool {
    use subtle::ConstantTimeEq;
    let now = Utc::now().timestamp();
    if (now - timestamp).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let Some(expected) = sign(secret, msg_id, timestamp, body) else {
        return false;
    };
    header
        .split(' ')
        .any(|sig| bool::from(sig.as_bytes().ct_eq(expected.as_bytes())))
}

/// Validates a target URL: http(s), a host on the allowlist (when there is one), and (unless
/// allowed) a public address.
pub async fn check_url(url: &str, settings: &Settings) -> Result<reqwest::Url, Error> {
    let allow_private = settings.allow_private;
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid("body", format!("url {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(
            "body",
            format!("url must be http or https, got {}", parsed.scheme()),
        ));
    }
    let Some(host) = parsed.host_str() else {
        return Err(Error::invalid("body", "url has no host"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(
            "body",
            "url must not carry credentials; the signature authenticates deliveries",
        ));
    }
    if !settings.allowed_hosts.is_empty()
        && !settings
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    {
        return Err(Error::Forbidden(format!(
            "host {host} is not in INSIGHTS_WEBHOOK_ALLOWED_HOSTS"
        )));
    }
    if !allow_private {
        let port = parsed.port_or_known_default().unwrap_or(443);
        match ssrf::check_host(host, port).await {
            Ok(_) => {}
            Err(ssrf::HostError::Refused(r)) => return Err(Error::Forbidden(r.to_string())),
            // A host that does not resolve now cannot be private now; the connect-time guard
            // judges whatever it resolves to later.
            Err(ssrf::HostError::Unresolved(e)) => {
                tracing::warn!(host, error = %e, "webhook host does not resolve yet")
            }
        }
    }
    Ok(parsed)
}

pub struct NewEndpoint {
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// Registers an endpoint; returns it with its secret in clear (shown once).
pub async fn create_endpoint(
    db: &DatabaseConnection,
    keys: &Keys,
    settings: &Settings,
    new: NewEndpoint,
) -> Result<(we::Model, String), Error> {
    if new.events.is_empty() {
        return Err(Error::invalid(
            "body",
            format!("events must name at least one of {EVENT_TYPES:?}"),
        ));
    }
    for e in &new.events {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(Error::invalid(
                "body",
                format!("unknown event {e:?}; expected one of {EVENT_TYPES:?}"),
            ));
        }
    }
    if new.url.len() > 2048 {
        return Err(Error::invalid("body", "url is longer than 2048 characters"));
    }
    check_url(&new.url, settings).await?;
    let secret = new_secret();
    let now = Utc::now();
    let mut events = new.events.clone();
    events.sort();
    events.dedup();
    let model = we::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(new.tenant_id),
        url: Set(new.url),
        events: Set(json!(events)),
        description: Set(new.description),
        secret: Set(keys.seal(&secret)),
        enabled: Set(true),
        disabled_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok((model, secret))
}

pub async fn list_endpoints(
    db: &DatabaseConnection,
    scope: &Scope,
) -> Result<Vec<we::Model>, DbErr> {
    let mut q = we::Entity::find().order_by_asc(we::Column::CreatedAt);
    if let Some(t) = scope.tenant() {
        q = q.filter(we::Column::TenantId.eq(t));
    }
    q.all(db).await
}

pub async fn get_endpoint(
    db: &DatabaseConnection,
    scope: &Scope,
    id: Uuid,
) -> Result<we::Model, Error> {
    match we::Entity::find_by_id(id).one(db).await? {
        Some(e) if scope.allows(&e.tenant_id) => Ok(e),
        _ => Err(Error::NotFound(format!("webhook {id}"))),
    }
}

/// Deletes an endpoint and its deliveries.
pub async fn delete_endpoint(
    db: &DatabaseConnection,
    scope: &Scope,
    id: Uuid,
) -> Result<(), Error> {
    let e = get_endpoint(db, scope, id).await?;
    wd::Entity::delete_many()
        .filter(wd::Column::EndpointId.eq(e.id))
        .exec(db)
        .await?;
    we::Entity::delete_by_id(e.id).exec(db).await?;
    Ok(())
}

pub async fn list_deliveries(
    db: &DatabaseConnection,
    scope: &Scope,
    endpoint: Uuid,
    limit: u64,
) -> Result<Vec<wd::Model>, Error> {
    let e = get_endpoint(db, scope, endpoint).await?;
    Ok(wd::Entity::find()
        .filter(wd::Column::EndpointId.eq(e.id))
        .order_by_desc(wd::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Sends a delivery again now (a failed one gets a fresh round of retries).
pub async fn retry_delivery(
    db: &DatabaseConnection,
    scope: &Scope,
    endpoint: Uuid,
    delivery: Uuid,
) -> Result<wd::Model, Error> {
    let e = get_endpoint(db, scope, endpoint).await?;
    if !e.enabled {
        return Err(Error::Conflict(format!(
            "webhook {} is disabled ({}); register the endpoint again",
            e.id,
            e.disabled_reason.unwrap_or_default()
        )));
    }
    let d = wd::Entity::find_by_id(delivery)
        .one(db)
        .await?
        .filter(|d| d.endpoint_id == e.id)
        .ok_or_else(|| Error::NotFound(format!("delivery {delivery}")))?;
    let mut am: wd::ActiveModel = d.into();
    am.status = Set(wd::Status::Pending);
    am.attempts = Set(0);
    am.next_attempt_at = Set(Some(Utc::now()));
    am.lease_until = Set(None);
    Ok(am.update(db).await?)
}

/// The body of an event: `{"type", "timestamp", "data"}`.
pub fn event_body(event_type: &str, data: &Value) -> String {
    json!({"type": event_type, "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "data": data}).to_string()
}

/// Writes one delivery per (event, subscribed enabled endpoint of the tenant) in the caller's
/// transaction; returns how many.
pub async fn enqueue<C: ConnectionTrait>(
    c: &C,
    tenant_id: &str,
    session_id: Option<Uuid>,
    events: &[(String, Value)],
) -> Result<usize, DbErr> {
    if events.is_empty() {
        return Ok(0);
    }
    let endpoints = we::Entity::find()
        .filter(we::Column::TenantId.eq(tenant_id))
        .filter(we::Column::Enabled.eq(true))
        .all(c)
        .await?;
    let now = Utc::now();
    let mut n = 0;
    for (event_type, data) in events {
        for e in endpoints.iter().filter(|e| {
            e.events
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == event_type.as_str()))
        }) {
            wd::ActiveModel {
                id: Set(Uuid::now_v7()),
                endpoint_id: Set(e.id),
                tenant_id: Set(tenant_id.to_string()),
                session_id: Set(session_id),
                event_type: Set(event_type.clone()),
                message_id: Set(format!("msg_{}", Uuid::now_v7().simple())),
                payload: Set(event_body(event_type, data)),
                status: Set(wd::Status::Pending),
                attempts: Set(0),
                attempt_log: Set(json!([])),
                next_attempt_at: Set(Some(now)),
                lease_until: Set(None),
                claimed_by: Set(None),
                claim_token: Set(None),
                last_status_code: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                delivered_at: Set(None),
            }
            .insert(c)
            .await?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks reference test vector.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let now = Utc::now().timestamp();
        let fresh = sign(secret, "msg_1", now, body).unwrap();
        assert!(verify(
            secret,
            "msg_1",
            now,
            body,
            &format!("v1,bogus {fresh}"),
            Duration::from_secs(300)
        ));
        assert!(!verify(
            secret,
            "msg_1",
            now,
            "{}",
            &fresh,
            Duration::from_secs(300)
        ));
        assert!(!verify(
            secret,
            "msg_1",
            now - 600,
            body,
            &sign(secret, "msg_1", now - 600, body).unwrap(),
            Duration::from_secs(300)
        ));
        assert!(new_secret().starts_with("whsec_") && new_secret() != new_secret());
    }

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("0,50ms,1s,2m,1h").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_millis(50),
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert!(parse_schedule("5 parsecs").is_none());
        assert_eq!(Settings::default().schedule.len(), 9);
    }
}
