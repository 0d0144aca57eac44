//! Storing a result: one fenced transaction marks the queue item done (only for the claim that still
//! holds it), replaces the `call_analytics` row, moves the dashboard rollups from the old row's
//! contribution to the new one, and writes the webhook outbox rows the result causes.

use super::profile::Profile;
use super::rollup::{self, Contribution};
use super::schema::{Analysis, Entities, SCHEMA_VERSION};
use super::{CallInput, Usage};
use crate::crypto::Keys;
use crate::db::stmt;
use chrono::{DateTime, Utc};
use entity::call_analytics as ca;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, TransactionTrait,
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

/// A claim on a queue item: only its holder may store the item's result.
#[derive(Debug, Clone)]
pub struct Claim {
    pub session_id: Uuid,
    pub token: Uuid,
    pub attempts: i32,
    pub job_id: Option<Uuid>,
    pub report_seq: i64,
}

/// What one run produced, before it is stored.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `completed`, `skipped` or `failed`.
    pub status: ca::Status,
    pub analyzer: &'static str,
    pub analysis: Option<Analysis>,
    pub error: Option<String>,
    pub raw_answer: Option<String>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub model: Option<String>,
    pub attempts: i32,
    pub latency_ms: f64,
    pub disagreements: Vec<Value>,
}

/// A stored analytics row as the API, the UI and webhooks show it (personal fields decrypted).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallAnalyticsView {
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    /// `completed`, `skipped` or `failed`.
    pub status: String,
    /// Why a call was skipped or failed.
    pub error: Option<String>,
    pub schema_version: i32,
    /// `llm` or `offline`.
    pub analyzer: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    pub summary: Option<String>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: Option<String>,
    /// The caller's sentiment, −1..1.
    pub sentiment_score: Option<f64>,
    pub intent: Option<String>,
    pub lead_score: Option<i32>,
    pub satisfaction: Option<i32>,
    pub escalated: Option<bool>,
    pub escalation_reason: Option<String>,
    /// `resolved`, `escalated` or `dropped`.
    pub resolution: Option<String>,
    pub topics: Vec<String>,
    pub action_items: Vec<String>,
    pub competitor_mentions: Vec<String>,
    pub tags: Vec<String>,
    pub entities: Option<Entities>,
    pub next_action: Option<String>,
    /// The profile's extra fields.
    #[schema(value_type = Object)]
    pub custom: Option<Value>,
    /// Where the analyzer contradicted the call's own record (the record was kept).
    #[schema(value_type = Vec<Object>)]
    pub disagreements: Vec<Value>,
    pub hot_lead: bool,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    pub attempts: i32,
    /// The analyzer's last raw answer when it could not be used.
    pub raw_answer: Option<String>,
    pub analyzed_report_seq: i64,
    /// A recorded call's transcript version the analysed report was derived from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_version: Option<i32>,
    pub analyzed_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

fn strings(v: &Option<Value>) -> Vec<String> {
    v.as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Opens an encrypted field; a value that cannot be read is shown as absent and logged.
fn open(keys: &Keys, v: &Option<String>, session: Uuid, field: &str) -> Option<String> {
    let s = v.as_ref()?;
    match keys.open(s) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(session_id = %session, field, error = %e, "cannot decrypt a stored analytics field");
            None
        }
    }
}

impl CallAnalyticsView {
    pub fn of(m: &ca::Model, keys: &Keys) -> Self {
        let entities = open(keys, &m.entities, m.session_id, "entities")
            .and_then(|t| serde_json::from_str::<Entities>(&t).ok());
        CallAnalyticsView {
            session_id: m.session_id,
            call_id: m.call_id.clone(),
            tenant_id: m.tenant_id.clone(),
            agent_id: m.agent_id.clone(),
            status: m.status.to_string(),
            error: m.error.clone(),
            schema_version: m.schema_version,
            analyzer: m.analyzer.clone(),
            model: m.model.clone(),
            prompt_version: m.prompt_version.clone(),
            summary: open(keys, &m.summary, m.session_id, "summary"),
            sentiment: m.sentiment.clone(),
            sentiment_score: m.sentiment_score,
            intent: m.intent.clone(),
            lead_score: m.lead_score,
            satisfaction: m.satisfaction,
            escalated: m.escalated,
            escalation_reason: m.escalation_reason.clone(),
            resolution: m.resolution.clone(),
            topics: strings(&m.topics),
            action_items: strings(&m.action_items),
            competitor_mentions: strings(&m.competitor_mentions),
            tags: strings(&m.tags),
            entities,
            next_action: m.next_action.clone(),
            custom: m.custom.clone(),
            disagreements: m
                .disagreements
                .as_ref()
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            hot_lead: m.hot_lead,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cost_usd: m.cost_usd,
            latency_ms: m.latency_ms,
            attempts: m.attempts,
            raw_answer: m.raw_answer.clone(),
            analyzed_report_seq: m.analyzed_report_seq,
            transcript_version: None,
            analyzed_at: m.analyzed_at,
            started_at: m.started_at,
            ended_at: m.ended_at,
        }
    }
}

/// Counters of one backfill job column name for a status.
fn job_counter(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "skipped" => "skipped",
        _ => "failed",
    }
}

/// Marks the claim's queue item finished, fenced by its token; false when the claim was lost.
async fn fence<C: ConnectionTrait>(
    c: &C,
    claim: &Claim,
    status: &str,
    error: Option<&str>,
) -> Result<bool, DbErr> {
    super::worker::QUEUE
        .fenced(
            c,
            &[claim.session_id.into()],
            claim.token,
            "status = ?, finished_at = ?, claim_token = NULL, lease_until = NULL, error = ?",
            vec![
                status.into(),
                Utc::now().into(),
                error.map(str::to_string).into(),
            ],
        )
        .await
}

async fn count_for_job<C: ConnectionTrait>(
    c: &C,
    job: Option<Uuid>,
    status: &str,
) -> Result<(), DbErr> {
    let Some(job) = job else { return Ok(()) };
    let backend = c.get_database_backend();
    let col = job_counter(status);
    let now = Utc::now();
    c.execute_raw(stmt(
        backend,
        &format!(
            "UPDATE analytics_backfill_jobs SET {col} = {col} + 1, updated_at = ? WHERE id = ?"
        ),
        [now.into(), job.into()],
    ))
    .await?;
    c.execute_raw(stmt(
        backend,
        "UPDATE analytics_backfill_jobs SET status = 'completed', finished_at = ? \
         WHERE id = ? AND status = 'running' AND completed + skipped + failed + cancelled >= total",
        [now.into(), job.into()],
    ))
    .await?;
    Ok(())
}

/// The conversation did not change since the stored result: only the report seq moves on.
pub async fn store_unchanged(db: &DatabaseConnection, claim: &Claim) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    if !fence(&txn, claim, "done", None).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "UPDATE call_analytics SET analyzed_report_seq = ? WHERE session_id = ? AND analyzed_report_seq < ?",
        [claim.report_seq.into(), claim.session_id.into(), claim.report_seq.into()],
    ))
    .await?;
    count_for_job(&txn, claim.job_id, "completed").await?;
    txn.commit().await?;
    Ok(true)
}

/// Sends the item back to the queue for a later try (rate limits, outages), fenced.
pub async fn requeue(
    db: &DatabaseConnection,
    claim: &Claim,
    error: &str,
    after: std::time::Duration,
) -> Result<bool, DbErr> {
    let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
    super::worker::QUEUE
        .release(
            db,
            &[claim.session_id.into()],
            claim.token,
            "status = 'queued', available_at = ?, error = ?",
            vec![at.into(), error.into()],
        )
        .await
}

/// Hands a claim back untouched (shutdown): the start is not counted.
pub async fn release(db: &DatabaseConnection, claim: &Claim) -> Result<(), DbErr> {
    super::worker::QUEUE
        .release(
            db,
            &[claim.session_id.into()],
            claim.token,
            "status = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END",
            Vec::new(),
        )
        .await?;
    Ok(())
}

fn contribution(call: &CallInput, model: &ca::Model) -> Contribution {
    let s = &call.session;
    Contribution {
        hour: rollup::hour_of(s.started_at),
        agent: s.agent_id.clone().unwrap_or_default(),
        intent: model.intent.clone().unwrap_or_default(),
        status: model.status.to_string(),
        with_issues: s.has_issues,
        duration: s.duration_seconds,
        sentiment: model.sentiment_score,
        satisfaction: model.satisfaction,
        escalated: model.escalated == Some(true),
        resolution: model.resolution.clone(),
        hot_lead: model.hot_lead,
        latency: rollup::latency_histogram(call.turns.iter().filter_map(|t| t.e2e_latency_ms)),
        topics: strings(&model.topics),
    }
}

/// Stores a finished run, with its `analytics_ready` event (`live`) in the live-events outbox of
/// the same transaction. Returns false (and changes nothing) when the claim was lost: another
/// worker took the item over after this one's lease ran out, or a newer report re-queued it.
pub async fn store(
    db: &DatabaseConnection,
    keys: &Keys,
    claim: &Claim,
    call: &CallInput,
    profile: &Profile,
    outcome: Outcome,
    live: Option<&mut crate::live::LiveEvent>,
) -> Result<bool, DbErr> {
    let s = &call.session;
    let conversation_hash = call.conversation_hash();
    let now = Utc::now();
    let a = outcome.analysis.as_ref();
    let hot = a.is_some_and(|a| profile.hot_lead.is_hot(a.lead_score, &a.intent));
    let sealed_entities = a
        .and_then(|a| serde_json::to_string(&a.entities).ok())
        .map(|t| keys.seal(&t));
    let model = ca::Model {
        session_id: s.id,
        tenant_id: s.tenant_id.clone(),
        call_id: s.call_id.clone(),
        agent_id: s.agent_id.clone(),
        started_at: s.started_at,
        ended_at: s.ended_at,
        status: outcome.status,
        schema_version: SCHEMA_VERSION,
        analyzer: outcome.analyzer.to_string(),
        model: outcome.model.clone(),
        prompt_version: Some(profile.prompt_version.clone()),
        summary: a.map(|a| keys.seal(&a.summary)),
        sentiment: a.map(|a| a.sentiment.clone()),
        sentiment_score: a.map(|a| a.sentiment_score),
        intent: a.map(|a| a.intent.clone()),
        lead_score: a.map(|a| a.lead_score),
        satisfaction: a.map(|a| a.satisfaction),
        escalated: a.map(|a| a.escalated),
        escalation_reason: a.and_then(|a| a.escalation_reason.clone()),
        resolution: a.map(|a| a.resolution.clone()),
        topics: a.map(|a| json!(a.topics)),
        action_items: a.map(|a| json!(a.action_items)),
        competitor_mentions: a.map(|a| json!(a.competitor_mentions)),
        tags: a.map(|a| json!(a.tags)),
        entities: sealed_entities,
        next_action: a.and_then(|a| a.next_action.clone()),
        custom: a.map(|a| Value::Object(a.custom.clone())),
        disagreements: (!outcome.disagreements.is_empty()).then(|| json!(outcome.disagreements)),
        hot_lead: hot,
        input_tokens: outcome.usage.map(|u| u.input_tokens),
        output_tokens: outcome.usage.map(|u| u.output_tokens),
        cost_usd: outcome.cost_usd,
        latency_ms: Some((outcome.latency_ms * 10.0).round() / 10.0),
        attempts: outcome.attempts,
        error: outcome.error.clone(),
        raw_answer: outcome.raw_answer.clone(),
        conversation_hash: Some(conversation_hash),
        rollup: None,
        analyzed_report_seq: claim.report_seq.max(s.report_seq),
        analyzed_at: now,
    };
    let contrib = contribution(call, &model);
    let mut model = model;
    model.rollup = serde_json::to_value(&contrib).ok();

    let txn = db.begin().await?;
    let queue_status = if outcome.status == ca::Status::Failed {
        "failed"
    } else {
        "done"
    };
    if !fence(&txn, claim, queue_status, outcome.error.as_deref()).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    let old = ca::Entity::find_by_id(s.id).one(&txn).await?;
    if let Some(o) = &old {
        if let Some(prev) = o
            .rollup
            .clone()
            .and_then(|r| serde_json::from_value::<Contribution>(r).ok())
        {
            rollup::apply(&txn, &o.tenant_id, &prev, -1).await?;
        }
        ca::Entity::delete_by_id(s.id).exec(&txn).await?;
    }
    let am: ca::ActiveModel = model.clone().into();
    ca::Entity::insert(am.reset_all()).exec(&txn).await?;
    rollup::apply(&txn, &s.tenant_id, &contrib, 1).await?;

    let view = serde_json::to_value(CallAnalyticsView::of(&model, keys)).unwrap_or(Value::Null);
    let mut data = view.clone();
    if let Some(o) = data.as_object_mut() {
        o.remove("raw_answer");
        o.remove("started_at");
    }
    let mut events = vec![("call.analyzed".to_string(), data.clone())];
    if hot && !old.as_ref().is_some_and(|o| o.hot_lead) {
        events.push(("lead.hot".to_string(), data.clone()));
    }
    if model.escalated == Some(true) && old.as_ref().is_none_or(|o| o.escalated != Some(true)) {
        events.push(("call.escalated".to_string(), data.clone()));
    }
    if old.is_none() {
        for issue in call.issues.iter().filter(|i| i.severity == "critical") {
            events.push((
                "call.issue_detected".to_string(),
                json!({
                    "session_id": s.id, "call_id": s.call_id, "tenant_id": s.tenant_id, "agent_id": s.agent_id,
                    "issue": {"code": issue.code, "severity": issue.severity, "title": issue.title,
                              "detail": issue.detail, "turn_index": issue.turn_index, "at_ms": issue.at_ms},
                }),
            ));
        }
    }
    crate::webhooks::enqueue(&txn, &s.tenant_id, Some(s.id), &events).await?;
    count_for_job(&txn, claim.job_id, outcome.status.as_str()).await?;
    if let Some(e) = live {
        crate::live::outbox::insert(&txn, std::slice::from_mut(e)).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// A call's analytics row, if the caller may see it.
pub async fn find(db: &DatabaseConnection, session_id: Uuid) -> Result<Option<ca::Model>, DbErr> {
    ca::Entity::find_by_id(session_id).one(db).await
}
