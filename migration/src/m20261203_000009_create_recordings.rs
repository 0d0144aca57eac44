//! Recordings: a call recording handed over whole (upload, URL, Twilio's callback) and the work that
//! turns it into a session (`recordings`, which is also its durable work item: claimed with a lease and
//! a fencing token), and every transcript made of it (`recording_transcripts`, one row per version,
//! the provider's raw answer beside the normalised words).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Clone, Copy)]
enum K {
    Uuid,
    Str,
    Text,
    Int,
    Big,
    F64,
    Json,
    Tz,
}

fn col(name: &str, kind: K, not_null: bool) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match kind {
        K::Uuid => c.uuid(),
        K::Str => c.string(),
        K::Text => c.text(),
        K::Int => c.integer(),
        K::Big => c.big_integer(),
        K::F64 => c.double(),
        K::Json => c.json_binary(),
        K::Tz => c.timestamp_with_time_zone(),
    };
    if not_null {
        c.not_null();
    }
    c.to_owned()
}

const RECORDINGS: &[(&str, K, bool)] = &[
    ("id", K::Uuid, true),
    ("tenant_id", K::Str, true),
    ("call_id", K::Str, true),
    ("agent_id", K::Str, false),
    ("session_id", K::Uuid, false),
    ("source", K::Str, true),
    ("external_id", K::Str, false),
    ("source_url", K::Text, false),
    ("file_name", K::Text, false),
    ("sha256", K::Str, false),
    ("size_bytes", K::Big, false),
    ("content_type", K::Str, false),
    ("object_key", K::Text, false),
    ("codec", K::Str, false),
    ("channels", K::Int, false),
    ("sample_rate", K::Int, false),
    ("duration_ms", K::Big, false),
    ("waveform", K::Json, false),
    ("channel_roles", K::Json, true),
    ("language", K::Str, false),
    ("provider", K::Str, true),
    ("model", K::Str, false),
    ("transcript_version", K::Int, false),
    ("conversation_metrics", K::Json, false),
    ("attached", K::Int, true),
    ("duplicate_of", K::Uuid, false),
    ("derivation_seq", K::Big, true),
    ("derivations", K::Json, false),
    ("status", K::Str, true),
    ("error", K::Text, false),
    ("work", K::Str, false),
    ("attempts", K::Int, true),
    ("claimed_by", K::Str, false),
    ("claim_token", K::Uuid, false),
    ("lease_until", K::Tz, false),
    ("available_at", K::Tz, true),
    ("started_at", K::Tz, false),
    ("created_at", K::Tz, true),
    ("updated_at", K::Tz, true),
    ("completed_at", K::Tz, false),
];

const TRANSCRIPTS: &[(&str, K, bool)] = &[
    ("recording_id", K::Uuid, true),
    ("version", K::Int, true),
    ("provider", K::Str, true),
    ("model", K::Str, false),
    ("language", K::Str, false),
    ("status", K::Str, true),
    ("error", K::Text, false),
    ("transcript", K::Text, false),
    ("words", K::Json, false),
    ("raw", K::Json, false),
    ("request_id", K::Str, false),
    ("wer_vs_record", K::F64, false),
    ("created_at", K::Tz, true),
    ("completed_at", K::Tz, false),
];

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &str,
    cols: &[&str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table)).if_not_exists();
    if unique {
        i.unique();
    }
    for c in cols {
        i.col(Alias::new(*c));
    }
    manager.create_index(i.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut t = Table::create();
        t.table(Alias::new("recordings")).if_not_exists();
        for (name, kind, nn) in RECORDINGS {
            t.col(col(name, *kind, *nn));
        }
        t.primary_key(Index::create().col(Alias::new("id")));
        manager.create_table(t.to_owned()).await?;
        // The same bytes twice for one tenant are one recording; one Twilio recording is one row.
        index(
            manager,
            "uq_recordings_tenant_sha256",
            "recordings",
            &["tenant_id", "sha256"],
            true,
        )
        .await?;
        index(
            manager,
            "uq_recordings_tenant_external",
            "recordings",
            &["tenant_id", "external_id"],
            true,
        )
        .await?;
        index(
            manager,
            "idx_recordings_session",
            "recordings",
            &["session_id"],
            false,
        )
        .await?;
        index(
            manager,
            "idx_recordings_tenant_created",
            "recordings",
            &["tenant_id", "created_at"],
            false,
        )
        .await?;
        index(
            manager,
            "idx_recordings_work",
            "recordings",
            &["work", "available_at"],
            false,
        )
        .await?;

        let mut t = Table::create();
        t.table(Alias::new("recording_transcripts")).if_not_exists();
        for (name, kind, nn) in TRANSCRIPTS {
            t.col(col(name, *kind, *nn));
        }
        t.primary_key(
            Index::create()
                .col(Alias::new("recording_id"))
                .col(Alias::new("version")),
        );
        t.foreign_key(
            ForeignKey::create()
                .name("fk_recording_transcripts_recording")
                .from(
                    Alias::new("recording_transcripts"),
                    Alias::new("recording_id"),
                )
                .to(Alias::new("recordings"), Alias::new("id"))
                .on_delete(ForeignKeyAction::Cascade),
        );
        manager.create_table(t.to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["recording_transcripts", "recordings"] {
            manager
                .drop_table(Table::drop().table(Alias::new(name)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
