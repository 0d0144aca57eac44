//! Live monitoring: events derived where the facts are (what an ingest commit changed, what analytics
//! stored), carried by a capped Redis stream (`<stream>:events`) so every replica sees every call, one
//! reader per process fanning them out to Server-Sent Events clients, resumable by event id, and the
//! active calls.

pub mod active;
pub mod hub;
pub mod outbox;
pub mod token;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Event types on the wire (`event:` of the SSE stream).
pub const EVENT_TYPES: [&str; 5] = [
    "call_started",
    "turn",
    "issue_detected",
    "call_ended",
    "analytics_ready",
];

/// One live event, before it has a stream id.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    /// The event's own id (UUIDv7, its outbox row): the same fact appended twice (a process that
    /// died between the append and the outbox delete) carries the same `event_id`.
    #[serde(rename = "event_id")]
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    /// When the fact became known here.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub data: serde_json::Map<String, Value>,
    /// The serialized body, made once (written to the outbox, then appended).
    #[serde(skip)]
    body: std::sync::OnceLock<String>,
    /// The `live_outbox` row holding this event (one per call per commit), once written there.
    #[serde(skip)]
    pub outbox_row: Option<Uuid>,
}

impl LiveEvent {
    pub fn new(
        kind: &'static str,
        session_id: Uuid,
        call_id: &str,
        tenant_id: &str,
        agent_id: Option<&str>,
        data: Value,
    ) -> Self {
        LiveEvent {
            id: Uuid::now_v7(),
            kind,
            session_id,
            call_id: call_id.to_string(),
            tenant_id: tenant_id.to_string(),
            agent_id: agent_id.map(str::to_string),
            at: Utc::now(),
            data: match data {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            body: std::sync::OnceLock::new(),
            outbox_row: None,
        }
    }

    /// The JSON body clients receive (type included), serialized on first use.
    pub fn body(&self) -> &str {
        self.body
            .get_or_init(|| serde_json::to_string(self).unwrap_or_default())
    }
}

/// The events stream of an ingest stream.
pub fn events_stream(stream: &str) -> String {
    format!("{stream}:events")
}

/// Approximate cap of the events stream (entries); older events answer `reset` on resume.
pub const EVENTS_MAXLEN: usize = 100_000;

/// Appends `(type, tenant_id, body)` entries to the stream in one pipeline.
pub async fn append<'a>(
    conn: &mut crate::broker::Conn,
    stream: &str,
    entries: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut n = 0;
    for (kind, tenant, body) in entries {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAXLEN)
            .arg("*")
            .arg("type")
            .arg(kind)
            .arg("tenant_id")
            .arg(tenant)
            .arg("body")
            .arg(body)
            .ignore();
        n += 1;
    }
    if n == 0 {
        return Ok(());
    }
    pipe.query_async::<()>(conn).await
}
