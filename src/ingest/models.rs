//! A report's contents as entity models (what is stored, before it is stored): the shape the
//! diagnosis rules read, built in memory when a batch already holds everything stored for a call.

use super::contract::{Event, SessionReport, Turn};
use super::persist::SegmentRow;
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, session_events as ev,
};
use uuid::Uuid;

/// The session row a report describes (nil id; aggregates and flags zero until computed). The
/// duration is the reported one, or derived from `ended_at` when the agent sent none.
pub fn session_model(r: &SessionReport) -> cs::Model {
    let now = chrono::Utc::now();
    let p = &r.pipeline;
    let duration = r.duration_seconds.or_else(|| {
        r.ended_at
            .map(|end| std::cmp::max((end - r.started_at).num_milliseconds(), 0) as f64 / 1000.0)
    });
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
        duration_seconds: duration,
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

/// A measured (or missing / broken) audio segment as stored.
pub fn segment_model(g: &SegmentRow) -> seg::Model {
    let m = g.metrics.as_ref();
    seg::Model {
        session_id: Uuid::nil(),
        segment_id: g.segment_id.clone(),
        segment_type: g.segment_type.into(),
        turn_index: g.turn_index,
        offset_ms: g.offset_ms,
        duration_ms: g.duration_ms,
        s3_key: g.s3_key.clone(),
        bucket: g.bucket.clone(),
        source: g.source.into(),
        size_bytes: g.size_bytes,
        sample_rate: m.map(|m| m.sample_rate as i32),
        channels: m.map(|m| i32::from(m.channels)),
        bits_per_sample: m.map(|m| i32::from(m.bits_per_sample)),
        decoded_duration_ms: m.map(|m| m.duration_ms),
        rms_mean: m.map(|m| m.rms_mean),
        rms_peak: m.map(|m| m.rms_peak),
        snr_estimate: m.and_then(|m| m.snr_estimate),
        peak_dbfs: m.and_then(|m| m.peak_dbfs),
        clipped_ratio: m.map(|m| m.clipped_ratio),
        clip_runs: m.map(|m| i32::try_from(m.clip_runs).unwrap_or(i32::MAX)),
        speech_levels: g.speech_levels.clone(),
        status: g.status,
        error: g.error.clone(),
        report_seq: g.report_seq,
    }
}
