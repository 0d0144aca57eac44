//! Live monitoring: events derived where the facts are (what an ingest commit changed, what analytics
//! stored), carried by a capped Redis stream (`<stream>:events`) so every replica sees every call, one
//! reader per process fanning them out to Server-Sent Events clients, resumable by event id, and the
//! active calls.

pub mod active;
pub mod hub;
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
        }
    }

    /// The JSON body clients receive (type included).
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The events stream of an ingest stream.
pub fn events_stream(stream: &str) -> String {
    format!("{stream}:events")
}

/// Approximate cap of the events stream (entries); older events answer `reset` on resume.
pub const EVENTS_MAXLEN: usize = 100_000;

/// Appends events to the stream (best effort, after the commit that produced them: a failure is
/// logged and counted, never blocks ingest).
pub async fn publish(
    conn: &mut crate::broker::Conn,
    stream: &str,
    events: &[LiveEvent],
) -> redis::RedisResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for e in events {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAXLEN)
            .arg("*")
            .arg("type")
            .arg(e.kind)
            .arg("tenant_id")
            .arg(&e.tenant_id)
            .arg("body")
            .arg(e.body())
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}
