//! A report's contents as entity models (what is stored, before it is stored): the shape the
//! diagnosis rules read, built in memory when a batch already holds everything stored for a call.

use super::contract::{Event, SessionReport, Turn};
use entity::{call_sessions as cs, conversation_turns as ct, session_events as ev};
use uuid::Uuid;

/// The session row a report describes (nil id, aggregates zero: the rules do not read them).
pub fn session_model(r: &SessionReport) -> cs::Model {
    let now = chrono::Utc::now();
    let p = &r.pipeline;
    cs::Model {
        id: Uuid::nil(),
        call_id: r.call_id.clone(),
        room_id: r.room_id.clone(),
        job_id: r.job_id.clone(),
        tenant_id: r.tenant_id.clone(),
        agent_id: r.agent_id.clone(),
        channel_type: r.channel_type.clone(),
        stt_provider: p.stt.provider.clone(),
        stt_model: p.stt.model.clone(),
        llm_provider: p.llm.provider.clone(),
        llm_model: p.llm.model.clone(),
        tts_provider: p.tts.provider.clone(),
        tts_model: p.tts.model.clone(),
        vad_threshold: p.vad.threshold,
        noise_suppression_enabled: p.vad.noise_suppression_enabled,
        rnnoise_enabled: p.vad.rnnoise_enabled,
        started_at: r.started_at,
        ended_at: r.ended_at,
        duration_seconds: r.duration_seconds,
        close_reason: r.outcome.close_reason.clone(),
        was_transferred: r.outcome.was_transferred,
        error: r.outcome.error.clone(),
        total_user_turns: 0,
        total_agent_turns: 0,
        avg_e2e_latency_ms: None,
        has_near_miss: false,
        has_issues: false,
        issue_summary: None,
        report_seq: r.seq,
        is_final: r.is_final(),
        created_at: now,
        updated_at: now,
    }
}

/// A turn's tool calls as stored (a JSON array of the objects the agent sent).
pub fn tool_calls_json(t: &Turn) -> Option<serde_json::Value> {
    t.tool_calls.as_ref().map(|calls| {
        serde_json::Value::Array(
            calls
                .iter()
                .cloned()
                .map(serde_json::Value::Object)
                .collect(),
        )
    })
}

pub fn turn_model(t: &Turn, report_seq: i64) -> ct::Model {
    ct::Model {
        session_id: Uuid::nil(),
        turn_index: t.index,
        role: t.role.as_str().into(),
        content: t.content.clone(),
        start_ms: t.start_ms,
        end_ms: t.end_ms,
        interrupted: t.interrupted,
        stt_confidence: t.stt_confidence,
        transcription_delay_ms: t.transcription_delay_ms,
        end_of_turn_delay_ms: t.end_of_turn_delay_ms,
        llm_ttft_ms: t.llm_ttft_ms,
        tts_ttfb_ms: t.tts_ttfb_ms,
        e2e_latency_ms: t.e2e_latency_ms,
        tool_calls: tool_calls_json(t),
        report_seq,
    }
}

pub fn event_model(e: &Event, report_seq: i64) -> ev::Model {
    ev::Model {
        session_id: Uuid::nil(),
        seq: e.seq,
        event_type: e.event_type.clone(),
        at_ms: e.at_ms,
        turn_index: e.turn_index,
        data: e.data.clone().filter(|d| !d.is_null()),
        report_seq,
    }
}
