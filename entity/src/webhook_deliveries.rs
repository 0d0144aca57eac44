//! `webhook_deliveries`: the outbox. One row per (event, endpoint), written in the transaction that
//! stores the result causing it; attempts are logged on the row until it is delivered or gives up.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub tenant_id: String,
    pub session_id: Option<Uuid>,
    pub event_type: String,
    /// The `webhook-id` header: the same on every attempt, receivers de-duplicate on it.
    pub message_id: String,
    /// The exact body sent (and signed).
    pub payload: String,
    pub status: Status,
    pub attempts: i32,
    /// `[{at, status_code, error, duration_ms}]`.
    pub attempt_log: Json,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    /// The worker attempting it, and its claim's fencing token (see `lease`).
    pub claimed_by: Option<String>,
    pub claim_token: Option<Uuid>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

/// Where a delivery is: `pending` (due at `next_attempt_at`), `delivered`, `failed` (retries
/// exhausted) or `disabled` (its endpoint answered 410 Gone or was disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "disabled")]
    Disabled,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
