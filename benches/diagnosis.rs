//! Diagnosis engine benchmark: runs every rule over a 200-turn session (realistic turns and events,
//! some faults, audio segment metrics) and prints sessions/s and rules/s. Figures only.
//!
//!   cargo bench --bench diagnosis
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::diagnosis::{Snapshot, Thresholds, diagnose, rules};
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, session_events as ev,
};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

fn main() {
    let id = Uuid::nil();
    let now = chrono::Utc::now();
    let session = cs::Model {
        id,
        call_id: "bench".into(),
        room_id: None,
        job_id: None,
        tenant_id: "acme".into(),
        agent_id: None,
        channel_type: None,
        stt_provider: None,
        stt_model: None,
        llm_provider: None,
        llm_model: None,
        tts_provider: None,
        tts_model: None,
        vad_threshold: Some(0.5),
        noise_suppression_enabled: Some(true),
        rnnoise_enabled: Some(true),
        started_at: now,
        ended_at: Some(now),
        duration_seconds: Some(600.0),
        close_reason: Some("user_hangup".into()),
        was_transferred: Some(false),
        error: None,
        total_user_turns: 100,
        total_agent_turns: 100,
        avg_e2e_latency_ms: Some(1000.0),
        has_near_miss: false,
        has_issues: false,
        issue_summary: None,
        report_seq: 10,
        is_final: true,
        created_at: now,
        updated_at: now,
    };
    let mut turns = Vec::new();
    let mut events = Vec::new();
    let mut t = 800i64;
    for i in 0..200i64 {
        let user = i % 2 == 0;
        let (start, end) = (t, t + 1500 + (i % 7) * 100);
        turns.push(ct::Model {
            session_id: id,
            turn_index: i,
            role: if user { "user" } else { "assistant" }.into(),
            content: if user && i % 40 == 0 { String::new() } else { format!("turn {i} words words words") },
            start_ms: Some(start),
            end_ms: Some(end),
            interrupted: Some(i % 50 == 1),
            stt_confidence: user.then_some(if i % 30 == 0 { 0.5 } else { 0.9 }),
            transcription_delay_ms: user.then_some(150.0 + (i % 5) as f64 * 100.0),
            end_of_turn_delay_ms: user.then_some(300.0),
            llm_ttft_ms: (!user).then_some(300.0 + (i % 9) as f64 * 100.0),
            tts_ttfb_ms: (!user).then_some(200.0),
            e2e_latency_ms: (!user).then_some(900.0 + (i % 11) as f64 * 80.0),
            tool_calls: (!user && i % 10 == 1).then(|| json!([{"name": "lookup", "error": if i % 20 == 1 { json!("timeout") } else { json!(null) }}])),
            report_seq: 10,
        });
        let n = events.len() as i64;
        if user {
            events.push(ev::Model {
                session_id: id,
                seq: n,
                event_type: "user_started_speaking".into(),
                at_ms: start,
                turn_index: Some(i),
                data: None,
                report_seq: 10,
            });
            events.push(ev::Model {
                session_id: id,
                seq: n + 1,
                event_type: "user_stopped_speaking".into(),
                at_ms: end,
                turn_index: Some(i),
                data: Some(json!({"speech_duration_ms": end - start})),
                report_seq: 10,
            });
            events.push(ev::Model {
                session_id: id,
                seq: n + 2,
                event_type: "user_transcript".into(),
                at_ms: end + 200,
                turn_index: Some(i),
                data: Some(json!({"final": true, "transcript": "words", "confidence": 0.9})),
                report_seq: 10,
            });
        } else {
            events.push(ev::Model {
                session_id: id,
                seq: n,
                event_type: "agent_started_speaking".into(),
                at_ms: start,
                turn_index: Some(i),
                data: None,
                report_seq: 10,
            });
            events.push(ev::Model {
                session_id: id,
                seq: n + 1,
                event_type: "agent_stopped_speaking".into(),
                at_ms: end,
                turn_index: Some(i),
                data: None,
                report_seq: 10,
            });
        }
        t = end + 700;
    }
    let segment = |sid: &str, ty: &str, levels: f64| seg::Model {
        session_id: id,
        segment_id: sid.into(),
        segment_type: ty.into(),
        turn_index: None,
        offset_ms: Some(0),
        duration_ms: Some(t),
        s3_key: Some("k".into()),
        bucket: None,
        source: "field".into(),
        size_bytes: Some(1),
        sample_rate: Some(16000),
        channels: Some(1),
        bits_per_sample: Some(16),
        decoded_duration_ms: Some(t as f64),
        rms_mean: Some(0.1),
        rms_peak: Some(0.3),
        snr_estimate: Some(25.0),
        peak_dbfs: Some(-3.0),
        clipped_ratio: Some(0.0),
        clip_runs: Some(0),
        speech_levels: Some(
            json!({"overall_dbfs": levels, "turns": (0..100).map(|k| json!({"turn_index": 2 * k, "dbfs": levels})).collect::<Vec<_>>()}),
        ),
        status: entity::audio_segments::Status::Stored,
        error: None,
        report_seq: 10,
    };
    let segments = vec![
        segment("pre", "full_pre_rnnoise", -20.0),
        segment("post", "full_post_rnnoise", -22.0),
    ];
    let snapshot = Snapshot {
        session: &session,
        turns: &turns,
        events: &events,
        segments: &segments,
    };
    let thresholds = Thresholds::default();

    let warm = diagnose(&snapshot, &thresholds);
    let iterations = 2000u32;
    let started = Instant::now();
    let mut issues = 0usize;
    for _ in 0..iterations {
        issues += std::hint::black_box(diagnose(std::hint::black_box(&snapshot), &thresholds))
            .issues
            .len();
    }
    let secs = started.elapsed().as_secs_f64();
    let rules_n = rules::ALL.len();
    println!(
        "session: 200 turns, {} events, {} segments; {} issues found ({})",
        events.len(),
        segments.len(),
        warm.issues.len(),
        warm.summary.unwrap_or_default()
    );
    println!(
        "{iterations} diagnoses in {secs:.3} s: {:.0} sessions/s, {:.1} µs per session",
        f64::from(iterations) / secs,
        secs * 1e6 / f64::from(iterations)
    );
    println!(
        "rules/s: {:.0} ({rules_n} rules per session)",
        f64::from(iterations) * rules_n as f64 / secs
    );
    assert!(issues > 0);
}
