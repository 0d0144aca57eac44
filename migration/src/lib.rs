//! Database migrations of call-insights: one file per change, named by date; applied at start-up and by
//! `call-insights migrate`. The same migrations run on PostgreSQL and SQLite.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_ingest_tables;
mod m20261121_000002_create_analysis_tables;
mod m20261201_000003_create_analytics_tables;
mod m20261201_000004_create_erasure_audit;
mod m20261201_000005_index_active_calls;
mod m20261201_000006_index_active_calls_partial;
mod m20261201_000007_create_live_outbox;
mod m20261202_000008_create_service_secrets;
mod m20261203_000009_create_recordings;
mod m20261203_000010_claim_tokens;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_ingest_tables::Migration),
            Box::new(m20261121_000002_create_analysis_tables::Migration),
            Box::new(m20261201_000003_create_analytics_tables::Migration),
            Box::new(m20261201_000004_create_erasure_audit::Migration),
            Box::new(m20261201_000005_index_active_calls::Migration),
            Box::new(m20261201_000006_index_active_calls_partial::Migration),
            Box::new(m20261201_000007_create_live_outbox::Migration),
            Box::new(m20261202_000008_create_service_secrets::Migration),
            Box::new(m20261203_000009_create_recordings::Migration),
            Box::new(m20261203_000010_claim_tokens::Migration),
        ]
    }
}
