//! `erasure_audit`: one row per erased call or removed archived clip — who, when, which session and
//! call, counts of what was removed; never any content of the call.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "erasure_audit")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `request` (the API), `retention` (`INSIGHTS_RETENTION_DAYS`) or `archive_retention`.
    pub reason: String,
    /// The API key's fingerprint (`key:<hex>`), `open` without keys, or `retention`.
    pub requested_by: String,
    pub tenant_id: String,
    pub session_id: Uuid,
    pub call_id: String,
    /// The STT report whose archived clip archive retention removed.
    pub report_id: Option<Uuid>,
    /// Counts by kind: rows per table, audio objects, archived clips, stream entries.
    pub removed: Json,
    pub erased_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
