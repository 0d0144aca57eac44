//! The live-events outbox: the live events an ingest commit (or an analytics store) produces are
//! written in that same transaction, one row per call holding its events in order (a JSON array of
//! `[type, body]`), then appended to the events stream and deleted. A process that
//! dies between the commit and the append, or a Redis that refuses it, leaves the rows here, and
//! any replica's sweep appends them later: a committed fact always reaches the live stream.
//! Rows go with their session (erasure, retention) by cascade.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LiveOutbox {
    Table,
    Id,
    SessionId,
    TenantId,
    Events,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LiveOutbox::Table)
                    .if_not_exists()
                    // UUIDv7: ordered by creation, so the sweep appends oldest first.
                    .col(
                        ColumnDef::new(LiveOutbox::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LiveOutbox::SessionId).uuid().not_null())
                    .col(ColumnDef::new(LiveOutbox::TenantId).string().not_null())
                    .col(ColumnDef::new(LiveOutbox::Events).text().not_null())
                    .col(
                        ColumnDef::new(LiveOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_live_outbox_session_id")
                            .from(LiveOutbox::Table, LiveOutbox::SessionId)
                            .to(CallSessions::Table, CallSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LiveOutbox::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
