//! What the benchmarks that run the whole service share: a fresh PostgreSQL database and data
//! folder, a config pointing at them (own stream, non-blocking reads), the HTTP API on a free port,
//! and the clean-up. Included with `#[path = "support/mod.rs"] mod support;`.

#![allow(dead_code)]

use call_insights::app::App;
use call_insights::config::Config;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use std::path::PathBuf;
use std::sync::Arc;

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A bench's own database and data folder, dropped by [`BenchDb::drop_all`].
pub struct BenchDb {
    admin: DatabaseConnection,
    name: String,
    tmp: PathBuf,
}

/// A fresh database `<prefix>_<id>`, and a config using it, Redis from `INSIGHTS_TEST_REDIS_URL`,
/// the stream `<prefix>:<id>:sessions`, consumer `bench`, reads that do not block.
pub async fn fresh(prefix: &str) -> anyhow::Result<(BenchDb, Config)> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let admin_url = env_or(
        "INSIGHTS_TEST_DATABASE_URL",
        "postgres://root@127.0.0.1:5432/postgres",
    );
    let admin = Database::connect(&admin_url).await?;
    let name = format!("{prefix}_{id}");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    let tmp = std::env::temp_dir().join(format!("call-insights-{prefix}-{id}"));
    let mut c = Config::defaults();
    c.redis_url = env_or("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    c.database_url = Some(format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b)
    ));
    c.data_dir = tmp.clone();
    c.stream = format!("{prefix}:{id}:sessions");
    c.consumer_name = Some("bench".into());
    c.block_ms = 0;
    Ok((BenchDb { admin, name, tmp }, c))
}

/// Serves the app's HTTP API and UI on a free loopback port; returns its base URL.
pub async fn serve(app: &Arc<App>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = call_insights::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    Ok(base)
}

impl BenchDb {
    /// Drops the database (with any connection still open) and the data folder.
    pub async fn drop_all(self) -> anyhow::Result<()> {
        self.admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await?;
        let _ = std::fs::remove_dir_all(self.tmp);
        Ok(())
    }
}
