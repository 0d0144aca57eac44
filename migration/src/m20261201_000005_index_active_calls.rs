//! An index for the active calls (`is_final = false AND updated_at >= now − timeout`): the live
//! page, `/api/v1/monitor/active-calls` and the silent-call sweep read them on every request and
//! every sweep; without it each read scanned every session ever stored (found by the soak: its
//! p99 grew with the table).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    IsFinal,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_call_sessions_final_updated")
                    .table(CallSessions::Table)
                    .col(CallSessions::IsFinal)
                    .col(CallSessions::UpdatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_call_sessions_final_updated")
                    .table(CallSessions::Table)
                    .to_owned(),
            )
            .await
    }
}
