//! A recorded call for the replay and analysis tests: three user turns (0, 2, 4) with full pre- and
//! post-suppression recordings and per-turn STT input for turns 0 and 2. Turn 4 has no STT input
//! and the post-suppression recording ends before it, so two of its renditions are missing.

use super::TestEnv;
use call_insights::audio::encode_wav_i16;
use call_insights::stt::ProviderId;
use serde_json::json;
use testkit::stt::{FakeAudio, FakeProvider};

/// User turns: (turn index, start ms, duration ms, what the user said).
pub const TURNS: [(i64, i64, i64, &str); 3] = [
    (0, 500, 1200, "I'd like to book a table for two, please."),
    (2, 4000, 1700, "My account number is four five six."),
    (4, 8000, 2200, "Can you call me back tomorrow?"),
];

pub fn tone(ms: i64, amplitude: f32) -> Vec<f32> {
    (0..(ms * 16) as usize)
        .map(|i| amplitude * (i as f32 * 300.0 * std::f32::consts::TAU / 16000.0).sin())
        .collect()
}

/// A full-call recording of `total_ms` with each user turn's tone at its place over faint noise.
pub fn recording(total_ms: i64, amplitude: f32) -> Vec<u8> {
    let mut s: Vec<f32> = (0..(total_ms * 16) as usize)
        .map(|i| 0.001 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0))
        .collect();
    for (_, start, dur, _) in TURNS {
        let from = (start * 16) as usize;
        for (k, v) in tone(dur, amplitude).into_iter().enumerate() {
            if let Some(x) = s.get_mut(from + k) {
                *x = v;
            }
        }
    }
    encode_wav_i16(&s, 16000)
}

/// The transcript a fake gives for a turn's audio, known by its duration.
pub fn said(audio: &FakeAudio) -> Option<&'static str> {
    TURNS
        .iter()
        .find(|t| (audio.duration_ms - t.2 as f64).abs() < 5.0)
        .map(|t| t.3)
}

/// Publishes the call as one final report of `tenant` and consumes it.
pub async fn ingest_call(
    env: &TestEnv,
    call_id: &str,
    tenant: &str,
) -> entity::call_sessions::Model {
    let mut r = super::report(call_id, 0, true, 6);
    r["tenant_id"] = json!(tenant);
    for (i, start, dur, text) in TURNS {
        r["turns"][i as usize]["content"] = json!(text);
        r["turns"][i as usize]["start_ms"] = json!(start);
        r["turns"][i as usize]["end_ms"] = json!(start + dur);
    }
    publish_recorded(env, call_id, r, 11_000, 7_000).await
}

/// Publishes `r` with the recording: full pre/post-suppression audio of `pre_ms`/`post_ms` and STT
/// input for turns 0 and 2; consumes it and returns the stored session.
async fn publish_recorded(
    env: &TestEnv,
    call_id: &str,
    mut r: serde_json::Value,
    pre_ms: i64,
    post_ms: i64,
) -> entity::call_sessions::Model {
    r["audio_segments"] = json!([
        {"segment_id": "pre", "segment_type": "full_pre_rnnoise", "offset_ms": 0, "audio": {"field": "audio:pre"}},
        {"segment_id": "post", "segment_type": "full_post_rnnoise", "offset_ms": 0, "audio": {"field": "audio:post"}},
        {"segment_id": "stt-0", "segment_type": "stt_input", "turn_index": 0, "offset_ms": 500, "audio": {"field": "audio:stt-0"}},
        {"segment_id": "stt-2", "segment_type": "stt_input", "turn_index": 2, "offset_ms": 4000, "audio": {"field": "audio:stt-2"}},
    ]);
    env.publish_fields(&[
        ("payload", &serde_json::to_vec(&r).unwrap()),
        ("audio:pre", &recording(pre_ms, 0.3)),
        ("audio:post", &recording(post_ms, 0.25)),
        ("audio:stt-0", &encode_wav_i16(&tone(1200, 0.2), 16000)),
        ("audio:stt-2", &encode_wav_i16(&tone(1700, 0.2), 16000)),
    ])
    .await;
    assert_eq!(env.drain(&mut env.consumer()).await.dead_lettered, 0);
    env.session(call_id).await.expect("session stored")
}

/// Scripts every fake to transcribe the turns: Deepgram drops the last word, OpenAI writes numbers
/// as digits (the same once normalised), the others are exact.
pub fn script_fakes(fakes: &[FakeProvider]) {
    for f in fakes {
        let id = f.id();
        f.set_script(move |a| {
            let text = said(a).unwrap_or("unexpected audio");
            match id {
                ProviderId::Deepgram => text.rsplit_once(' ').map_or(text, |(h, _)| h).to_string(),
                ProviderId::Openai => text.replace("two", "2").replace("four five six", "456"),
                _ => text.to_string(),
            }
        });
    }
}

/// The call of the UI tests: [`ingest_call`]'s recording with a full latency breakdown on the agent
/// turns (turn 1 slow: a `high_e2e_latency` warning) and an LLM error event (a critical issue).
pub async fn ingest_ui_call(
    env: &TestEnv,
    call_id: &str,
    tenant: &str,
) -> entity::call_sessions::Model {
    let mut r = super::report(call_id, 0, true, 6);
    r["tenant_id"] = json!(tenant);
    r["agent_id"] = json!("booking-bot");
    for (i, start, dur, text) in TURNS {
        r["turns"][i as usize]["content"] = json!(text);
        r["turns"][i as usize]["start_ms"] = json!(start);
        r["turns"][i as usize]["end_ms"] = json!(start + dur);
        r["turns"][i as usize]["transcription_delay_ms"] = json!(120.0);
        r["turns"][i as usize]["end_of_turn_delay_ms"] = json!(330.0);
    }
    for (i, start, llm, tts, e2e) in [
        (1usize, 2200, 1800.0, 250.0, 2400.0),
        (3, 6000, 300.0, 220.0, 850.0),
        (5, 10_500, 280.0, 200.0, 810.0),
    ] {
        let t = &mut r["turns"][i];
        t["content"] = json!(format!("Agent answer {i}."));
        t["start_ms"] = json!(start);
        t["end_ms"] = json!(start + 1200);
        t["llm_ttft_ms"] = json!(llm);
        t["tts_ttfb_ms"] = json!(tts);
        t["e2e_latency_ms"] = json!(e2e);
    }
    r["events"] = json!([
        {"seq": 0, "type": "user_started_speaking", "at_ms": 500, "turn_index": 0},
        {"seq": 1, "type": "user_stopped_speaking", "at_ms": 1700, "turn_index": 0, "data": {"speech_duration_ms": 1200}},
        {"seq": 2, "type": "llm_error", "at_ms": 6100, "turn_index": 3, "data": {"message": "upstream timeout", "recoverable": false}},
    ]);
    publish_recorded(env, call_id, r, 12_000, 12_000).await
}
