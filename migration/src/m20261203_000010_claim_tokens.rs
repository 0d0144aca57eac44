//! One fencing scheme for every queue: STT analysis items and webhook deliveries get the per-claim
//! token the analytics queue and the recording pipeline already use (analysis items were fenced by
//! the worker's name, webhook deliveries by the value of their lease), so every queue runs on the
//! one leased-queue module.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, column, uuid?) — nullable columns, added one statement each (SQLite alters one at a time).
const ADDED: &[(&str, &str, bool)] = &[
    ("analysis_job_items", "claim_token", true),
    ("webhook_deliveries", "claimed_by", false),
    ("webhook_deliveries", "claim_token", true),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column, uuid) in ADDED {
            let mut c = ColumnDef::new(Alias::new(*column));
            if *uuid {
                c.uuid();
            } else {
                c.string();
            }
            c.null();
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(*table))
                        .add_column(c)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column, _) in ADDED.iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(*table))
                        .drop_column(Alias::new(*column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
