//! Secrets the service generates for itself and every replica must share (today the URL signing key
//! that signs audio URLs, UI sessions and live-stream tokens), generated once by whichever replica
//! starts first: a key per replica would make a token minted by one refused by the next.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServiceSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServiceSecrets::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ServiceSecrets::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ServiceSecrets::Value).text().not_null())
                    .col(
                        ColumnDef::new(ServiceSecrets::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ServiceSecrets::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
