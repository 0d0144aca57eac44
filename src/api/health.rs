//! Operational endpoints: liveness and readiness (database, Redis, audio store). `/metrics` is in
//! `metrics.rs`.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    /// Why the dependency is not reachable (absent when ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub database: Check,
    pub redis: Check,
    pub storage: Check,
}

fn check<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Check {
    match r {
        Ok(Ok(())) => Check {
            ok: true,
            error: None,
        },
        Ok(Err(e)) => Check {
            ok: false,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            ok: false,
            error: Some("timed out after 2 s".into()),
        },
    }
}

/// The database, Redis and the audio store are all reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness, example = json!({"status": "ready", "database": {"ok": true}, "redis": {"ok": true}, "storage": {"ok": true}})),
        (status = 503, description = "A dependency is unreachable", body = Readiness, example = json!({"status": "unavailable", "database": {"ok": true}, "redis": {"ok": false, "error": "Connection refused (os error 111)"}, "storage": {"ok": true}}))
    ))]
pub async fn readyz(State(AppState(app)): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let t = Duration::from_secs(2);
    let redis_ping = async {
        let mut conn = app.redis.conn().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    let (database, redis, storage) = tokio::join!(
        tokio::time::timeout(t, app.db.ping()),
        tokio::time::timeout(t, redis_ping),
        tokio::time::timeout(t, app.store.check()),
    );
    let body = Readiness {
        status: "ready",
        database: check(database),
        redis: check(redis),
        storage: check(storage),
    };
    if body.database.ok && body.redis.ok && body.storage.ok {
        (StatusCode::OK, Json(body))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                ..body
            }),
        )
    }
}
