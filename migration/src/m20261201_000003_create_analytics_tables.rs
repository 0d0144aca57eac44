//! The analytics tables: the per-call result (`call_analytics`), its durable work queue (written in the
//! ingest transaction), backfill jobs, hourly rollups kept current on write (dashboards), reviewers'
//! verdicts, and webhook endpoints with their delivery outbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Column kinds of this migration's compact table descriptions.
#[derive(Clone, Copy)]
enum K {
    Uuid,
    Str,
    Text,
    Int,
    Big,
    F64,
    Bool,
    Json,
    Tz,
}

/// `(name, kind, not null)`.
type Col = (&'static str, K, bool);

fn column((name, kind, not_null): Col) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match kind {
        K::Uuid => c.uuid(),
        K::Str => c.string(),
        K::Text => c.text(),
        K::Int => c.integer(),
        K::Big => c.big_integer(),
        K::F64 => c.double(),
        K::Bool => c.boolean(),
        K::Json => c.json_binary(),
        K::Tz => c.timestamp_with_time_zone(),
    };
    if not_null {
        c.not_null();
    }
    c.to_owned()
}

struct TableSpec {
    name: &'static str,
    cols: &'static [Col],
    key: &'static [&'static str],
    /// `(column, referenced table)` with ON DELETE CASCADE to `<table>.id`.
    fks: &'static [(&'static str, &'static str)],
    indexes: &'static [(&'static str, &'static [&'static str])],
}

const CALL_ANALYTICS: TableSpec = TableSpec {
    name: "call_analytics",
    cols: &[
        ("session_id", K::Uuid, true),
        ("tenant_id", K::Str, true),
        ("call_id", K::Str, true),
        ("agent_id", K::Str, false),
        ("started_at", K::Tz, true),
        ("ended_at", K::Tz, false),
        ("status", K::Str, true),
        ("schema_version", K::Int, true),
        ("analyzer", K::Str, true),
        ("model", K::Str, false),
        ("prompt_version", K::Str, false),
        ("summary", K::Text, false),
        ("sentiment", K::Str, false),
        ("sentiment_score", K::F64, false),
        ("intent", K::Str, false),
        ("lead_score", K::Int, false),
        ("satisfaction", K::Int, false),
        ("escalated", K::Bool, false),
        ("escalation_reason", K::Text, false),
        ("resolution", K::Str, false),
        ("topics", K::Json, false),
        ("action_items", K::Json, false),
        ("competitor_mentions", K::Json, false),
        ("tags", K::Json, false),
        ("entities", K::Text, false),
        ("next_action", K::Text, false),
        ("custom", K::Json, false),
        ("disagreements", K::Json, false),
        ("hot_lead", K::Bool, true),
        ("input_tokens", K::Big, false),
        ("output_tokens", K::Big, false),
        ("cost_usd", K::F64, false),
        ("latency_ms", K::F64, false),
        ("attempts", K::Int, true),
        ("error", K::Text, false),
        ("raw_answer", K::Text, false),
        ("conversation_hash", K::Str, false),
        ("rollup", K::Json, false),
        ("analyzed_report_seq", K::Big, true),
        ("analyzed_at", K::Tz, true),
    ],
    key: &["session_id"],
    fks: &[("session_id", "call_sessions")],
    indexes: &[
        (
            "idx_call_analytics_tenant_started",
            &["tenant_id", "started_at"],
        ),
        (
            "idx_call_analytics_tenant_lead",
            &["tenant_id", "lead_score", "started_at"],
        ),
        ("idx_call_analytics_lead", &["lead_score", "started_at"]),
        (
            "idx_call_analytics_analyzed",
            &["tenant_id", "status", "analyzed_at"],
        ),
    ],
};

const ANALYTICS_QUEUE: TableSpec = TableSpec {
    name: "analytics_queue",
    cols: &[
        ("session_id", K::Uuid, true),
        ("tenant_id", K::Str, true),
        ("report_seq", K::Big, true),
        ("status", K::Str, true),
        ("attempts", K::Int, true),
        ("job_id", K::Uuid, false),
        ("claimed_by", K::Str, false),
        ("claim_token", K::Uuid, false),
        ("lease_until", K::Tz, false),
        ("available_at", K::Tz, true),
        ("error", K::Text, false),
        ("enqueued_at", K::Tz, true),
        ("finished_at", K::Tz, false),
    ],
    key: &["session_id"],
    fks: &[("session_id", "call_sessions")],
    indexes: &[
        ("idx_analytics_queue_claim", &["status", "available_at"]),
        ("idx_analytics_queue_job", &["job_id", "status"]),
    ],
};

const BACKFILL_JOBS: TableSpec = TableSpec {
    name: "analytics_backfill_jobs",
    cols: &[
        ("id", K::Uuid, true),
        ("tenant_id", K::Str, false),
        ("status", K::Str, true),
        ("filter", K::Json, true),
        ("total", K::Int, true),
        ("completed", K::Int, true),
        ("skipped", K::Int, true),
        ("failed", K::Int, true),
        ("cancelled", K::Int, true),
        ("created_at", K::Tz, true),
        ("updated_at", K::Tz, true),
        ("finished_at", K::Tz, false),
    ],
    key: &["id"],
    fks: &[],
    indexes: &[(
        "idx_analytics_backfill_tenant",
        &["tenant_id", "created_at"],
    )],
};

/// Additive hourly counters per (tenant, agent, hour, intent): every stored result adds its
/// contribution and takes back the one it replaces, in its own transaction.
const ROLLUPS: TableSpec = TableSpec {
    name: "analytics_rollups",
    cols: &[
        ("tenant_id", K::Str, true),
        ("agent_id", K::Str, true),
        ("hour", K::Str, true),
        ("intent", K::Str, true),
        ("calls", K::Big, true),
        ("completed", K::Big, true),
        ("skipped", K::Big, true),
        ("failed", K::Big, true),
        ("with_issues", K::Big, true),
        ("duration_sum", K::F64, true),
        ("duration_n", K::Big, true),
        ("sentiment_sum", K::F64, true),
        ("sentiment_n", K::Big, true),
        ("satisfaction_sum", K::F64, true),
        ("satisfaction_n", K::Big, true),
        ("escalated", K::Big, true),
        ("resolved", K::Big, true),
        ("dropped", K::Big, true),
        ("hot_leads", K::Big, true),
    ],
    key: &["tenant_id", "agent_id", "hour", "intent"],
    fks: &[],
    indexes: &[
        ("idx_analytics_rollups_hour", &["hour"]),
        ("idx_analytics_rollups_tenant_hour", &["tenant_id", "hour"]),
    ],
};

const LATENCY_ROLLUPS: TableSpec = TableSpec {
    name: "analytics_latency_rollups",
    cols: &[
        ("tenant_id", K::Str, true),
        ("agent_id", K::Str, true),
        ("hour", K::Str, true),
        ("bucket", K::Int, true),
        ("turns", K::Big, true),
    ],
    key: &["tenant_id", "agent_id", "hour", "bucket"],
    fks: &[],
    indexes: &[("idx_analytics_latency_rollups_hour", &["hour"])],
};

const TOPIC_ROLLUPS: TableSpec = TableSpec {
    name: "analytics_topic_rollups",
    cols: &[
        ("tenant_id", K::Str, true),
        ("agent_id", K::Str, true),
        ("hour", K::Str, true),
        ("intent", K::Str, true),
        ("topic", K::Str, true),
        ("calls", K::Big, true),
    ],
    key: &["tenant_id", "agent_id", "hour", "intent", "topic"],
    fks: &[],
    indexes: &[("idx_analytics_topic_rollups_hour", &["hour"])],
};

const REVIEWS: TableSpec = TableSpec {
    name: "analytics_reviews",
    cols: &[
        ("id", K::Uuid, true),
        ("session_id", K::Uuid, true),
        ("tenant_id", K::Str, true),
        ("reviewer", K::Str, false),
        ("analyzer", K::Str, true),
        ("model", K::Str, false),
        ("prompt_version", K::Str, false),
        ("verdicts", K::Json, true),
        ("analyzed_sentiment", K::F64, false),
        ("reviewed_sentiment", K::F64, false),
        ("reviewed_at", K::Tz, true),
    ],
    key: &["id"],
    fks: &[("session_id", "call_sessions")],
    indexes: &[
        (
            "idx_analytics_reviews_tenant_at",
            &["tenant_id", "reviewed_at"],
        ),
        ("idx_analytics_reviews_session", &["session_id"]),
    ],
};

const WEBHOOK_ENDPOINTS: TableSpec = TableSpec {
    name: "webhook_endpoints",
    cols: &[
        ("id", K::Uuid, true),
        ("tenant_id", K::Str, true),
        ("url", K::Text, true),
        ("events", K::Json, true),
        ("description", K::Text, false),
        ("secret", K::Text, true),
        ("enabled", K::Bool, true),
        ("disabled_reason", K::Text, false),
        ("created_at", K::Tz, true),
        ("updated_at", K::Tz, true),
    ],
    key: &["id"],
    fks: &[],
    indexes: &[("idx_webhook_endpoints_tenant", &["tenant_id"])],
};

const WEBHOOK_DELIVERIES: TableSpec = TableSpec {
    name: "webhook_deliveries",
    cols: &[
        ("id", K::Uuid, true),
        ("endpoint_id", K::Uuid, true),
        ("tenant_id", K::Str, true),
        ("session_id", K::Uuid, false),
        ("event_type", K::Str, true),
        ("message_id", K::Str, true),
        ("payload", K::Text, true),
        ("status", K::Str, true),
        ("attempts", K::Int, true),
        ("attempt_log", K::Json, true),
        ("next_attempt_at", K::Tz, false),
        ("lease_until", K::Tz, false),
        ("last_status_code", K::Int, false),
        ("last_error", K::Text, false),
        ("created_at", K::Tz, true),
        ("delivered_at", K::Tz, false),
    ],
    key: &["id"],
    fks: &[("endpoint_id", "webhook_endpoints")],
    indexes: &[
        ("idx_webhook_deliveries_due", &["status", "next_attempt_at"]),
        (
            "idx_webhook_deliveries_endpoint",
            &["endpoint_id", "created_at"],
        ),
        ("idx_webhook_deliveries_session", &["session_id"]),
    ],
};

const TABLES: [&TableSpec; 9] = [
    &CALL_ANALYTICS,
    &ANALYTICS_QUEUE,
    &BACKFILL_JOBS,
    &ROLLUPS,
    &LATENCY_ROLLUPS,
    &TOPIC_ROLLUPS,
    &REVIEWS,
    &WEBHOOK_ENDPOINTS,
    &WEBHOOK_DELIVERIES,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            let mut create = Table::create();
            create.table(Alias::new(t.name)).if_not_exists();
            for c in t.cols {
                create.col(column(*c));
            }
            let mut pk = Index::create();
            for k in t.key {
                pk.col(Alias::new(*k));
            }
            create.primary_key(&mut pk);
            for (col, target) in t.fks {
                create.foreign_key(
                    ForeignKey::create()
                        .name(format!("fk_{}_{col}", t.name))
                        .from(Alias::new(t.name), Alias::new(*col))
                        .to(Alias::new(*target), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                );
            }
            manager.create_table(create.to_owned()).await?;
            for (name, cols) in t.indexes {
                let mut index = Index::create();
                index.name(*name).table(Alias::new(t.name)).if_not_exists();
                for c in *cols {
                    index.col(Alias::new(*c));
                }
                manager.create_index(index.to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES.iter().rev() {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(t.name))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
