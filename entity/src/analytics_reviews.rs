//! `analytics_reviews`: a reviewer's verdict on one call's analytics, field by field.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "analytics_reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub session_id: Uuid,
    pub tenant_id: String,
    pub reviewer: Option<String>,
    /// Analyzer, model and prompt version of the result reviewed.
    pub analyzer: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    /// `{field: {"correct": true} | {"correct": false, "value": …}}`.
    pub verdicts: Json,
    pub analyzed_sentiment: Option<f64>,
    pub reviewed_sentiment: Option<f64>,
    pub reviewed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
