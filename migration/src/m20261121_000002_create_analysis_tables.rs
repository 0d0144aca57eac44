//! The analysis tables: the cached full-call analysis per session, analysis jobs and their items (the
//! work queue batch and single analyses run from, so a restart resumes them), and user STT reports.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SessionAnalyses {
    Table,
    SessionId,
    TenantId,
    CallId,
    Status,
    JobId,
    RequestedProviders,
    Providers,
    Language,
    Result,
    Error,
    StartedAt,
    RanAt,
    DurationMs,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AnalysisJobs {
    Table,
    Id,
    TenantId,
    Kind,
    Status,
    Providers,
    Language,
    Filter,
    Total,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum AnalysisJobItems {
    Table,
    JobId,
    SessionId,
    Position,
    Status,
    Attempts,
    Error,
    ClaimedBy,
    LeaseUntil,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum SttReports {
    Table,
    Id,
    TenantId,
    SessionId,
    CallId,
    TurnIndex,
    SttOutput,
    ExpectedOutput,
    IssueType,
    Notes,
    ReportedBy,
    ClipRendition,
    ClipStartMs,
    ClipEndMs,
    ClipDurationMs,
    SourceS3Key,
    ArchiveS3Key,
    ArchiveBucket,
    AudioError,
    AnalysisStatus,
    Analysis,
    AnalysisError,
    AnalyzedAt,
    CreatedAt,
    UpdatedAt,
}

fn tz(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SessionAnalyses::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SessionAnalyses::SessionId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SessionAnalyses::TenantId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SessionAnalyses::CallId).string().not_null())
                    .col(ColumnDef::new(SessionAnalyses::Status).string().not_null())
                    .col(ColumnDef::new(SessionAnalyses::JobId).uuid())
                    .col(ColumnDef::new(SessionAnalyses::RequestedProviders).json_binary())
                    .col(ColumnDef::new(SessionAnalyses::Providers).json_binary())
                    .col(ColumnDef::new(SessionAnalyses::Language).string())
                    .col(ColumnDef::new(SessionAnalyses::Result).json_binary())
                    .col(ColumnDef::new(SessionAnalyses::Error).text())
                    .col(tz(SessionAnalyses::StartedAt).not_null())
                    .col(tz(SessionAnalyses::RanAt))
                    .col(ColumnDef::new(SessionAnalyses::DurationMs).double())
                    .col(tz(SessionAnalyses::UpdatedAt).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_session_analyses_session")
                            .from(SessionAnalyses::Table, SessionAnalyses::SessionId)
                            .to(CallSessions::Table, CallSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_analyses_tenant_updated")
                    .table(SessionAnalyses::Table)
                    .col(SessionAnalyses::TenantId)
                    .col(SessionAnalyses::UpdatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AnalysisJobs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AnalysisJobs::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AnalysisJobs::TenantId).string())
                    .col(ColumnDef::new(AnalysisJobs::Kind).string().not_null())
                    .col(ColumnDef::new(AnalysisJobs::Status).string().not_null())
                    .col(ColumnDef::new(AnalysisJobs::Providers).json_binary())
                    .col(ColumnDef::new(AnalysisJobs::Language).string())
                    .col(ColumnDef::new(AnalysisJobs::Filter).json_binary())
                    .col(ColumnDef::new(AnalysisJobs::Total).integer().not_null())
                    .col(tz(AnalysisJobs::CreatedAt).not_null())
                    .col(tz(AnalysisJobs::UpdatedAt).not_null())
                    .col(tz(AnalysisJobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_analysis_jobs_tenant_created")
                    .table(AnalysisJobs::Table)
                    .col(AnalysisJobs::TenantId)
                    .col(AnalysisJobs::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AnalysisJobItems::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AnalysisJobItems::JobId).uuid().not_null())
                    .col(
                        ColumnDef::new(AnalysisJobItems::SessionId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AnalysisJobItems::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AnalysisJobItems::Status).string().not_null())
                    .col(
                        ColumnDef::new(AnalysisJobItems::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(AnalysisJobItems::Error).text())
                    .col(ColumnDef::new(AnalysisJobItems::ClaimedBy).string())
                    .col(tz(AnalysisJobItems::LeaseUntil))
                    .col(tz(AnalysisJobItems::StartedAt))
                    .col(tz(AnalysisJobItems::FinishedAt))
                    .primary_key(
                        Index::create()
                            .col(AnalysisJobItems::JobId)
                            .col(AnalysisJobItems::SessionId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_analysis_job_items_job")
                            .from(AnalysisJobItems::Table, AnalysisJobItems::JobId)
                            .to(AnalysisJobs::Table, AnalysisJobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_analysis_job_items_session")
                            .from(AnalysisJobItems::Table, AnalysisJobItems::SessionId)
                            .to(CallSessions::Table, CallSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_analysis_job_items_claim")
                    .table(AnalysisJobItems::Table)
                    .col(AnalysisJobItems::Status)
                    .col(AnalysisJobItems::LeaseUntil)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SttReports::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SttReports::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SttReports::TenantId).string().not_null())
                    .col(ColumnDef::new(SttReports::SessionId).uuid().not_null())
                    .col(ColumnDef::new(SttReports::CallId).string().not_null())
                    .col(
                        ColumnDef::new(SttReports::TurnIndex)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SttReports::SttOutput).text().not_null())
                    .col(ColumnDef::new(SttReports::ExpectedOutput).text().not_null())
                    .col(ColumnDef::new(SttReports::IssueType).string().not_null())
                    .col(ColumnDef::new(SttReports::Notes).text())
                    .col(ColumnDef::new(SttReports::ReportedBy).string())
                    .col(ColumnDef::new(SttReports::ClipRendition).string())
                    .col(ColumnDef::new(SttReports::ClipStartMs).big_integer())
                    .col(ColumnDef::new(SttReports::ClipEndMs).big_integer())
                    .col(ColumnDef::new(SttReports::ClipDurationMs).double())
                    .col(ColumnDef::new(SttReports::SourceS3Key).string())
                    .col(ColumnDef::new(SttReports::ArchiveS3Key).string())
                    .col(ColumnDef::new(SttReports::ArchiveBucket).string())
                    .col(ColumnDef::new(SttReports::AudioError).text())
                    .col(ColumnDef::new(SttReports::AnalysisStatus).string())
                    .col(ColumnDef::new(SttReports::Analysis).json_binary())
                    .col(ColumnDef::new(SttReports::AnalysisError).text())
                    .col(tz(SttReports::AnalyzedAt))
                    .col(tz(SttReports::CreatedAt).not_null())
                    .col(tz(SttReports::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_stt_reports_tenant_created", SttReports::TenantId),
            ("idx_stt_reports_session", SttReports::SessionId),
        ] {
            let mut index = Index::create();
            index.name(name).table(SttReports::Table).col(col);
            if name.ends_with("created") {
                index.col(SttReports::CreatedAt);
            }
            manager
                .create_index(index.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SttReports::Table.into_iden(),
            AnalysisJobItems::Table.into_iden(),
            AnalysisJobs::Table.into_iden(),
            SessionAnalyses::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
