//! `webhook_endpoints`: where a tenant wants analytics events delivered, with the signing secret.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    /// Event types subscribed to (JSON array of strings).
    pub events: Json,
    pub description: Option<String>,
    /// `whsec_<base64>` (or its encrypted form when encryption at rest is on).
    #[serde(skip)]
    pub secret: String,
    pub enabled: bool,
    /// Why deliveries stopped (410 Gone from the receiver).
    pub disabled_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
