//! The erasure audit: one row per erased call (on request or by retention) and per archived clip
//! removed by archive retention — who, when, which session and call, what was removed (counts),
//! never any content of the call.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ErasureAudit {
    Table,
    Id,
    Reason,
    RequestedBy,
    TenantId,
    SessionId,
    CallId,
    ReportId,
    Removed,
    ErasedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ErasureAudit::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ErasureAudit::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ErasureAudit::Reason).string().not_null())
                    .col(
                        ColumnDef::new(ErasureAudit::RequestedBy)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ErasureAudit::TenantId).string().not_null())
                    .col(ColumnDef::new(ErasureAudit::SessionId).uuid().not_null())
                    .col(ColumnDef::new(ErasureAudit::CallId).string().not_null())
                    .col(ColumnDef::new(ErasureAudit::ReportId).uuid())
                    .col(
                        ColumnDef::new(ErasureAudit::Removed)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ErasureAudit::ErasedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_erasure_audit_session", ErasureAudit::SessionId),
            ("idx_erasure_audit_call", ErasureAudit::CallId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(ErasureAudit::Table)
                        .col(col)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ErasureAudit::Table).to_owned())
            .await
    }
}
