//! The rules: one small pure function each, registered in `ALL`. Codes and severities are part of
//! the API. Upper limits fire at or above their threshold, lower limits below it.

use super::{Issue, Rule, Severity, Snapshot, Thresholds, clock};
use entity::{audio_segments, conversation_turns as turns, session_events};
use serde_json::{Value, json};

/// Every rule, in the order docs/diagnosis.md documents them.
pub const ALL: &[(&str, Rule)] = &[
    ("dropped_utterance", dropped_utterance),
    ("stt_total_failure", stt_total_failure),
    ("agent_no_response", agent_no_response),
    ("pipeline_error", pipeline_error),
    ("high_e2e_latency", high_e2e_latency),
    ("slow_llm_ttft", slow_llm_ttft),
    ("slow_tts_ttfb", slow_tts_ttfb),
    ("slow_transcription", slow_transcription),
    ("slow_end_of_turn", slow_end_of_turn),
    ("rnnoise_over_attenuation", rnnoise_over_attenuation),
    ("clipping", clipping),
    ("low_snr", low_snr),
    ("tool_call_error", tool_call_error),
    ("empty_user_turn", empty_user_turn),
    ("near_miss_speech", near_miss_speech),
    ("low_confidence_turn", low_confidence_turn),
    ("recovered_pipeline_error", recovered_pipeline_error),
    ("transferred", transferred),
    ("long_silence", long_silence),
    ("frequent_interruptions", frequent_interruptions),
    ("dead_air", dead_air),
    ("talk_over", talk_over),
    ("long_monologue", long_monologue),
    ("slow_response", slow_response),
];

/// Short human label of a code, for summaries.
pub fn label(code: &str) -> &'static str {
    match code {
        "dropped_utterance" => "dropped utterance",
        "stt_total_failure" => "STT total failure",
        "agent_no_response" => "agent did not respond",
        "pipeline_error" => "pipeline error",
        "high_e2e_latency" => "high end-to-end latency",
        "slow_llm_ttft" => "slow LLM first token",
        "slow_tts_ttfb" => "slow TTS first byte",
        "slow_transcription" => "slow transcription",
        "slow_end_of_turn" => "slow end-of-turn detection",
        "rnnoise_over_attenuation" => "noise suppression removed speech",
        "clipping" => "clipped audio",
        "low_snr" => "low SNR",
        "tool_call_error" => "tool call error",
        "empty_user_turn" => "empty user turn",
        "near_miss_speech" => "near-miss speech",
        "low_confidence_turn" => "low-confidence transcript",
        "recovered_pipeline_error" => "recovered pipeline error",
        "transferred" => "transferred",
        "long_silence" => "long silence",
        "frequent_interruptions" => "frequent interruptions",
        "dead_air" => "dead air",
        "talk_over" => "talk-over",
        "long_monologue" => "long monologue",
        "slow_response" => "slow agent response",
        _ => "issue",
    }
}

fn issue(code: &'static str, severity: Severity, title: String) -> Issue {
    Issue {
        code,
        severity,
        title,
        detail: None,
        turn_index: None,
        at_ms: None,
        evidence: json!({}),
    }
}

impl Issue {
    fn at(mut self, at_ms: Option<i64>, turn_index: Option<i64>) -> Self {
        self.at_ms = at_ms;
        self.turn_index = turn_index;
        self
    }
    fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
    fn evidence(mut self, e: Value) -> Self {
        self.evidence = e;
        self
    }
}

fn field<'a>(e: &'a session_events::Model, key: &str) -> Option<&'a Value> {
    e.data.as_ref()?.get(key)
}
fn num(e: &session_events::Model, key: &str) -> Option<f64> {
    field(e, key)?.as_f64()
}
fn flag(e: &session_events::Model, key: &str) -> Option<bool> {
    field(e, key)?.as_bool()
}
fn text<'a>(e: &'a session_events::Model, key: &str) -> Option<&'a str> {
    field(e, key)?.as_str()
}
fn is_user(t: &turns::Model) -> bool {
    t.role == "user"
}
fn has_words(s: &str) -> bool {
    !s.trim().is_empty()
}
fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

/// The latest instant the snapshot knows of: on a partial report, whether something "followed"
/// an event can only be decided once this is past the window.
fn known_until(s: &Snapshot<'_>) -> i64 {
    let events = s.events.iter().map(|e| e.at_ms);
    let turns = s.turns.iter().filter_map(|t| t.end_ms.or(t.start_ms));
    events.chain(turns).max().unwrap_or(0)
}

fn decided(s: &Snapshot<'_>, until_ms: f64) -> bool {
    s.session.is_final || (known_until(s) as f64) >= until_ms
}

/// Something the user said was transcribed close to `at_ms`: a non-empty user turn ending, or a final
/// non-empty user transcript, in `[at_ms - 1 s, at_ms + window]`.
fn transcribed_near(s: &Snapshot<'_>, at_ms: i64, window_ms: f64) -> bool {
    let (lo, hi) = (at_ms as f64 - 1000.0, at_ms as f64 + window_ms);
    let inside = |t: i64| (lo..=hi).contains(&(t as f64));
    s.turns
        .iter()
        .any(|t| is_user(t) && has_words(&t.content) && t.end_ms.or(t.start_ms).is_some_and(inside))
        || s.events.iter().any(|e| {
            e.event_type == "user_transcript"
                && flag(e, "final").unwrap_or(true)
                && text(e, "transcript").is_some_and(has_words)
                && inside(e.at_ms)
        })
}

/// critical: the VAD heard the user speak, but no transcript followed.
pub fn dropped_utterance(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    s.events
        .iter()
        .filter(|e| e.event_type == "user_stopped_speaking")
        .filter_map(|e| {
            let speech = num(e, "speech_duration_ms")?;
            if speech < t.dropped_utterance_min_speech_ms
                || !decided(s, e.at_ms as f64 + t.dropped_utterance_window_ms)
                || transcribed_near(s, e.at_ms, t.dropped_utterance_window_ms)
            {
                return None;
            }
            Some(
                issue("dropped_utterance", Severity::Critical, format!("Dropped utterance at {}: {} of user speech, no transcript", clock(e.at_ms), ms(speech)))
                    .at(Some(e.at_ms), e.turn_index)
                    .detail("The VAD heard the user, but no user turn or final transcript followed: the agent never knew the user spoke. Replay the audio at this time through other STT providers and check the STT input rendition.")
                    .evidence(json!({"speech_duration_ms": speech, "stopped_at_ms": e.at_ms, "window_ms": t.dropped_utterance_window_ms,
                        "min_speech_ms": t.dropped_utterance_min_speech_ms, "event_seq": e.seq})),
            )
        })
        .collect()
}

/// critical: the user spoke but STT produced nothing at all, or STT failed unrecoverably.
pub fn stt_total_failure(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    let mut out = Vec::new();
    let fatal = s
        .events
        .iter()
        .find(|e| e.event_type == "stt_error" && flag(e, "recoverable") != Some(true));
    let user_turns: Vec<&turns::Model> = s.turns.iter().filter(|t| is_user(t)).collect();
    let spoke_ms: Vec<i64> = s
        .events
        .iter()
        .filter(|e| {
            e.event_type == "user_stopped_speaking"
                && num(e, "speech_duration_ms").unwrap_or(0.0) >= t.dropped_utterance_min_speech_ms
        })
        .map(|e| e.at_ms)
        .collect();
    let any_words = user_turns.iter().any(|t| has_words(&t.content))
        || s.events.iter().any(|e| {
            e.event_type == "user_transcript" && text(e, "transcript").is_some_and(has_words)
        });
    let spoke = !user_turns.is_empty() || !spoke_ms.is_empty();
    let first_speech = spoke_ms
        .first()
        .copied()
        .or_else(|| user_turns.first().and_then(|t| t.end_ms));
    let decidable =
        first_speech.is_some_and(|at| decided(s, at as f64 + t.dropped_utterance_window_ms));
    if spoke && !any_words && decidable {
        out.push(
            issue("stt_total_failure", Severity::Critical, format!("STT total failure: {} user turn(s), {} VAD utterance(s), no words transcribed", user_turns.len(), spoke_ms.len()))
                .at(first_speech, user_turns.first().map(|t| t.turn_index))
                .detail("Every user turn is empty although the user spoke. Check the STT provider's status, credentials and the audio format it receives.")
                .evidence(json!({"user_turns": user_turns.len(), "empty_user_turns": user_turns.len(), "vad_utterances": spoke_ms.len()})),
        );
    } else if let Some(e) = fatal {
        out.push(
            issue("stt_total_failure", Severity::Critical, format!("STT failed unrecoverably at {}: {}", clock(e.at_ms), text(e, "message").unwrap_or("no message")))
                .at(Some(e.at_ms), e.turn_index)
                .detail("The STT component reported an unrecoverable error: nothing the user said after it was transcribed.")
                .evidence(json!({"event_seq": e.seq, "message": text(e, "message"), "recoverable": false})),
        );
    }
    out
}

/// critical: the user said something and the call ended without an agent turn after it.
pub fn agent_no_response(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    if !s.session.is_final || s.session.was_transferred == Some(true) {
        return Vec::new();
    }
    let last_agent = s
        .turns
        .iter()
        .filter(|t| !is_user(t))
        .map(|t| t.turn_index)
        .max();
    s.turns
        .iter()
        .find(|t| is_user(t) && has_words(&t.content) && last_agent.is_none_or(|a| t.turn_index > a))
        .map(|t| {
            issue("agent_no_response", Severity::Critical, format!("Agent did not respond to turn {} before the call ended", t.turn_index))
                .at(t.end_ms.or(t.start_ms), Some(t.turn_index))
                .detail(format!("The user said {:?} and got no answer. Check the LLM and TTS events around this time.", t.content))
                .evidence(json!({"turn_index": t.turn_index, "user_text": t.content, "close_reason": s.session.close_reason}))
        })
        .into_iter()
        .collect()
}

const ERROR_TYPES: [&str; 4] = ["stt_error", "llm_error", "tts_error", "error"];

/// critical: an unrecoverable component error, or the session ended with an error.
pub fn pipeline_error(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    let mut out: Vec<Issue> = s
        .events
        .iter()
        .filter(|e| ERROR_TYPES.contains(&e.event_type.as_str()) && flag(e, "recoverable") != Some(true))
        .map(|e| {
            let message = text(e, "message").unwrap_or("no message");
            issue("pipeline_error", Severity::Critical, format!("{} at {}: {message}", e.event_type, clock(e.at_ms)))
                .at(Some(e.at_ms), e.turn_index)
                .detail("A pipeline component failed without recovering.")
                .evidence(json!({"event_type": e.event_type, "event_seq": e.seq, "message": message, "recoverable": flag(e, "recoverable")}))
        })
        .collect();
    if let Some(err) = s.session.error.as_deref().filter(|e| has_words(e)) {
        out.push(
            issue(
                "pipeline_error",
                Severity::Critical,
                format!("The session ended with an error: {err}"),
            )
            .detail("The agent reported this error in the session outcome.")
            .evidence(json!({"outcome_error": err, "close_reason": s.session.close_reason})),
        );
    }
    out
}

/// info: a component error the pipeline recovered from.
pub fn recovered_pipeline_error(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    s.events
        .iter()
        .filter(|e| {
            ERROR_TYPES.contains(&e.event_type.as_str()) && flag(e, "recoverable") == Some(true)
        })
        .map(|e| {
            let message = text(e, "message").unwrap_or("no message");
            issue(
                "recovered_pipeline_error",
                Severity::Info,
                format!(
                    "{} at {} (recovered): {message}",
                    e.event_type,
                    clock(e.at_ms)
                ),
            )
            .at(Some(e.at_ms), e.turn_index)
            .evidence(json!({"event_type": e.event_type, "event_seq": e.seq, "message": message}))
        })
        .collect()
}

/// The latency components of the exchange that ends with `turn`: its own fields, and for those it
/// lacks, the preceding user turn's (transcription and end of turn are measured on user turns).
fn components(s: &Snapshot<'_>, turn: &turns::Model) -> [(&'static str, Option<f64>); 4] {
    let prev_user = s
        .turns
        .iter()
        .filter(|t| is_user(t) && t.turn_index < turn.turn_index)
        .max_by_key(|t| t.turn_index);
    let pick = |own: Option<f64>, f: fn(&turns::Model) -> Option<f64>| {
        own.or_else(|| prev_user.and_then(f))
    };
    [
        (
            "end_of_turn",
            pick(turn.end_of_turn_delay_ms, |t| t.end_of_turn_delay_ms),
        ),
        (
            "transcription",
            pick(turn.transcription_delay_ms, |t| t.transcription_delay_ms),
        ),
        ("llm_ttft", turn.llm_ttft_ms),
        ("tts_ttfb", turn.tts_ttfb_ms),
    ]
}

fn component_label(c: &str) -> &'static str {
    match c {
        "end_of_turn" => "end-of-turn detection",
        "transcription" => "transcription",
        "llm_ttft" => "LLM time to first token",
        _ => "TTS time to first byte",
    }
}

/// warning: end of user speech to first agent audio at or above the threshold, naming the dominant
/// component.
pub fn high_e2e_latency(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    s.turns
        .iter()
        .filter_map(|turn| {
            let e2e = turn.e2e_latency_ms.filter(|v| *v >= t.high_e2e_latency_ms)?;
            let comps = components(s, turn);
            let dominant = comps.iter().filter_map(|(n, v)| Some((*n, (*v)?))).max_by(|a, b| a.1.total_cmp(&b.1));
            let why = dominant.map_or(String::new(), |(n, v)| format!(" (mostly {}: {})", component_label(n), ms(v)));
            let evidence: serde_json::Map<String, Value> = comps.iter().map(|(n, v)| (format!("{n}_ms"), json!(v))).collect();
            Some(
                issue("high_e2e_latency", Severity::Warning, format!("End-to-end latency {} at turn {}{why}", ms(e2e), turn.turn_index))
                    .at(turn.start_ms, Some(turn.turn_index))
                    .detail("Users notice answers slower than about 1.5 s. Work on the dominant component first.")
                    .evidence(json!({"e2e_latency_ms": e2e, "threshold_ms": t.high_e2e_latency_ms, "dominant": dominant.map(|d| d.0), "components": evidence})),
            )
        })
        .collect()
}

fn slow_component(
    s: &Snapshot<'_>,
    code: &'static str,
    what: &str,
    threshold: f64,
    get: fn(&turns::Model) -> Option<f64>,
    advice: &str,
) -> Vec<Issue> {
    s.turns
        .iter()
        .filter_map(|turn| {
            let v = get(turn).filter(|v| *v >= threshold)?;
            Some(
                issue(
                    code,
                    Severity::Warning,
                    format!("{what} {} at turn {}", ms(v), turn.turn_index),
                )
                .at(turn.start_ms, Some(turn.turn_index))
                .detail(advice.to_string())
                .evidence(json!({"value_ms": v, "threshold_ms": threshold})),
            )
        })
        .collect()
}

/// warning: LLM time to first token at or above the threshold.
pub fn slow_llm_ttft(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    slow_component(
        s,
        "slow_llm_ttft",
        "LLM time to first token",
        t.slow_llm_ttft_ms,
        |t| t.llm_ttft_ms,
        "Check the model, prompt length and provider region; consider a faster model for the first sentence.",
    )
}

/// warning: TTS time to first byte at or above the threshold.
pub fn slow_tts_ttfb(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    slow_component(
        s,
        "slow_tts_ttfb",
        "TTS time to first byte",
        t.slow_tts_ttfb_ms,
        |t| t.tts_ttfb_ms,
        "Check the TTS provider's streaming mode, voice and region.",
    )
}

/// warning: end of speech to final transcript at or above the threshold.
pub fn slow_transcription(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    slow_component(
        s,
        "slow_transcription",
        "Transcription delay",
        t.slow_transcription_ms,
        |t| t.transcription_delay_ms,
        "Check the STT provider's endpointing and streaming settings.",
    )
}

/// warning: end of speech to end-of-turn decision at or above the threshold.
pub fn slow_end_of_turn(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    slow_component(
        s,
        "slow_end_of_turn",
        "End-of-turn delay",
        t.slow_end_of_turn_ms,
        |t| t.end_of_turn_delay_ms,
        "Tune the VAD silence duration or the turn detector's threshold.",
    )
}

fn speech_level(seg: &audio_segments::Model) -> Option<(f64, Vec<(i64, f64)>)> {
    let levels = seg.speech_levels.as_ref()?;
    let overall = levels.get("overall_dbfs")?.as_f64()?;
    let turns = levels
        .get("turns")?
        .as_array()?
        .iter()
        .filter_map(|t| Some((t.get("turn_index")?.as_i64()?, t.get("dbfs")?.as_f64()?)))
        .collect();
    Some((overall, turns))
}

/// warning: over the user's speech, the audio after noise suppression is much quieter than before:
/// speech was removed, not just noise.
pub fn rnnoise_over_attenuation(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    let find = |ty: &str| {
        s.segments
            .iter()
            .find(|g| g.segment_type == ty && g.status == audio_segments::Status::Stored)
            .and_then(speech_level)
    };
    let (Some((pre, pre_turns)), Some((post, post_turns))) =
        (find("full_pre_rnnoise"), find("full_post_rnnoise"))
    else {
        return Vec::new();
    };
    let attenuation = pre - post;
    if attenuation < t.over_attenuation_db {
        return Vec::new();
    }
    let mut per_turn: Vec<(i64, f64)> = pre_turns
        .iter()
        .filter_map(|(i, p)| {
            post_turns
                .iter()
                .find(|(j, _)| j == i)
                .map(|(_, q)| (*i, p - q))
        })
        .collect();
    per_turn.sort_by(|a, b| b.1.total_cmp(&a.1));
    let worst = per_turn.first().copied();
    let worst_turn = worst.and_then(|(i, _)| s.turns.iter().find(|t| t.turn_index == i));
    vec![
        issue("rnnoise_over_attenuation", Severity::Warning, format!("Noise suppression lowered the user's speech by {attenuation:.1} dB"))
            .at(worst_turn.and_then(|t| t.start_ms), worst.map(|w| w.0))
            .detail("Over the user's turns the post-suppression audio is much quieter than the input: speech is being removed, which causes dropped or partial transcripts. Compare the pre and post renditions of the worst turn; lower the suppression strength or disable it for this channel.")
            .evidence(json!({"pre_speech_dbfs": pre, "post_speech_dbfs": post, "attenuation_db": attenuation, "threshold_db": t.over_attenuation_db,
                "per_turn_attenuation_db": per_turn.iter().map(|(i, d)| json!({"turn_index": i, "attenuation_db": d})).collect::<Vec<_>>()})),
    ]
}

/// warning: samples at or near full scale in more than a small fraction, or a full-scale peak with
/// runs of clipped samples.
pub fn clipping(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    s.segments
        .iter()
        .filter(|g| g.status == audio_segments::Status::Stored)
        .filter_map(|g| {
            let ratio = g.clipped_ratio?;
            let runs = g.clip_runs.unwrap_or(0);
            let peak = g.peak_dbfs;
            let by_ratio = ratio >= t.clipped_ratio;
            let by_peak = peak.is_some_and(|p| p >= t.clipping_peak_dbfs) && runs > 0;
            if !(by_ratio || by_peak) {
                return None;
            }
            Some(
                issue("clipping", Severity::Warning, format!("Clipped audio in {} ({:.2} % of samples, {runs} clipping runs)", g.segment_id, ratio * 100.0))
                    .at(g.offset_ms, g.turn_index)
                    .detail("The signal hit full scale: distortion hurts recognition. Lower the input gain or the AGC target.")
                    .evidence(json!({"segment_id": g.segment_id, "segment_type": g.segment_type, "clipped_ratio": ratio, "clip_runs": runs, "peak_dbfs": peak,
                        "threshold_ratio": t.clipped_ratio, "threshold_peak_dbfs": t.clipping_peak_dbfs})),
            )
        })
        .collect()
}

/// warning: the audio STT heard has an estimated SNR below the threshold.
pub fn low_snr(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    // What the STT heard: the full post-suppression recording when there is one, else the STT inputs.
    let heard: Vec<&audio_segments::Model> = {
        let post: Vec<_> = s
            .segments
            .iter()
            .filter(|g| {
                g.segment_type == "full_post_rnnoise" && g.status == audio_segments::Status::Stored
            })
            .collect();
        if post.is_empty() {
            s.segments
                .iter()
                .filter(|g| {
                    g.segment_type == "stt_input" && g.status == audio_segments::Status::Stored
                })
                .collect()
        } else {
            post
        }
    };
    heard
        .into_iter()
        .filter_map(|g| {
            let snr = g.snr_estimate?;
            let duration = g.decoded_duration_ms.unwrap_or(0.0);
            if snr >= t.low_snr_db || duration < t.low_snr_min_duration_ms {
                return None;
            }
            Some(
                issue("low_snr", Severity::Warning, format!("Low SNR in {}: {snr:.1} dB", g.segment_id))
                    .at(g.offset_ms, g.turn_index)
                    .detail("Under about 10 dB of SNR recognition degrades. Check the caller's environment, the microphone path and noise suppression.")
                    .evidence(json!({"segment_id": g.segment_id, "segment_type": g.segment_type, "snr_db": snr, "threshold_db": t.low_snr_db})),
            )
        })
        .collect()
}

/// warning: a tool call returned an error.
pub fn tool_call_error(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    let mut out: Vec<Issue> = s
        .turns
        .iter()
        .flat_map(|turn| {
            turn.tool_calls.as_ref().and_then(Value::as_array).into_iter().flatten().filter_map(move |call| {
                let err = call.get("error")?.as_str().filter(|e| has_words(e))?;
                let name = call.get("name").and_then(Value::as_str).unwrap_or("?");
                Some(
                    issue("tool_call_error", Severity::Warning, format!("Tool {name} failed at turn {}: {err}", turn.turn_index))
                        .at(turn.start_ms, Some(turn.turn_index))
                        .evidence(json!({"tool": name, "error": err, "arguments": call.get("arguments"), "duration_ms": call.get("duration_ms")})),
                )
            })
        })
        .collect();
    let from_events: Vec<Issue> = s
        .events
        .iter()
        .filter(|e| e.event_type == "tool_call")
        .filter_map(|e| {
            let err = text(e, "error").filter(|e| has_words(e))?;
            let name = text(e, "name").unwrap_or("?");
            // Already reported from the turn's tool_calls?
            if out
                .iter()
                .any(|i| i.turn_index == e.turn_index && i.evidence["tool"] == name)
            {
                return None;
            }
            Some(
                issue(
                    "tool_call_error",
                    Severity::Warning,
                    format!("Tool {name} failed at {}: {err}", clock(e.at_ms)),
                )
                .at(Some(e.at_ms), e.turn_index)
                .evidence(json!({"tool": name, "error": err, "event_seq": e.seq})),
            )
        })
        .collect();
    out.extend(from_events);
    out
}

/// warning: a user turn whose transcript is empty while STT works for the rest of the call.
pub fn empty_user_turn(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    let users: Vec<&turns::Model> = s.turns.iter().filter(|t| is_user(t)).collect();
    if !users.iter().any(|t| has_words(&t.content)) {
        return Vec::new(); // that is stt_total_failure
    }
    users
        .into_iter()
        .filter(|t| !has_words(&t.content))
        .map(|t| {
            issue("empty_user_turn", Severity::Warning, format!("User turn {} has an empty transcript", t.turn_index))
                .at(t.start_ms, Some(t.turn_index))
                .detail("STT returned nothing for this utterance. Replay its renditions through other providers.")
                .evidence(json!({"turn_index": t.turn_index, "start_ms": t.start_ms, "end_ms": t.end_ms, "stt_confidence": t.stt_confidence}))
        })
        .collect()
}

/// info: speech-like audio the VAD rejected.
pub fn near_miss_speech(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    let mut out: Vec<Issue> = s
        .events
        .iter()
        .filter(|e| e.event_type == "near_miss")
        .map(|e| {
            let p = num(e, "max_probability");
            issue("near_miss_speech", Severity::Info, format!("Near-miss speech at {} (VAD probability {})", clock(e.at_ms), p.map_or("?".into(), |p| format!("{p:.2}"))))
                .at(Some(e.at_ms), e.turn_index)
                .detail("The VAD saw speech-like audio below its threshold. If the user was talking, lower the VAD threshold.")
                .evidence(json!({"max_probability": p, "duration_ms": num(e, "duration_ms"), "event_seq": e.seq}))
        })
        .collect();
    if out.is_empty() {
        out.extend(
            s.segments
                .iter()
                .filter(|g| g.segment_type == "near_miss")
                .map(|g| {
                    issue(
                        "near_miss_speech",
                        Severity::Info,
                        format!("Near-miss audio kept for review: {}", g.segment_id),
                    )
                    .at(g.offset_ms, g.turn_index)
                    .evidence(json!({"segment_id": g.segment_id, "duration_ms": g.duration_ms}))
                }),
        );
    }
    out
}

/// info: a user turn transcribed with low confidence.
pub fn low_confidence_turn(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    s.turns
        .iter()
        .filter(|turn| is_user(turn))
        .filter_map(|turn| {
            let c = turn.stt_confidence.filter(|c| *c < t.low_confidence)?;
            Some(
                issue("low_confidence_turn", Severity::Info, format!("Low STT confidence {c:.2} at turn {}", turn.turn_index))
                    .at(turn.start_ms, Some(turn.turn_index))
                    .evidence(json!({"stt_confidence": c, "threshold": t.low_confidence, "transcript": turn.content})),
            )
        })
        .collect()
}

/// info: the call was transferred.
pub fn transferred(s: &Snapshot<'_>, _t: &Thresholds) -> Vec<Issue> {
    let event = s.events.iter().find(|e| e.event_type == "transfer");
    if s.session.was_transferred != Some(true) && event.is_none() {
        return Vec::new();
    }
    let target = event.and_then(|e| text(e, "target"));
    vec![
        issue(
            "transferred",
            Severity::Info,
            format!(
                "Call transferred{}",
                target.map_or(String::new(), |t| format!(" to {t}"))
            ),
        )
        .at(event.map(|e| e.at_ms), event.and_then(|e| e.turn_index))
        .evidence(json!({"target": target, "close_reason": s.session.close_reason})),
    ]
}

/// info: nobody spoke for a long stretch between turns.
pub fn long_silence(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    let mut spans: Vec<(i64, i64, i64)> = s
        .turns
        .iter()
        .filter_map(|turn| {
            Some((
                turn.start_ms?,
                turn.end_ms.unwrap_or(turn.start_ms?),
                turn.turn_index,
            ))
        })
        .collect();
    spans.sort_unstable();
    let mut out = Vec::new();
    let mut spoken_until: Option<i64> = None;
    for (start, end, index) in spans {
        if let Some(until) = spoken_until {
            let gap = start - until;
            if gap as f64 >= t.long_silence_ms {
                out.push(
                    issue("long_silence", Severity::Info, format!("{:.1} s of silence before turn {index}", gap as f64 / 1000.0))
                        .at(Some(until), Some(index))
                        .evidence(json!({"silence_ms": gap, "from_ms": until, "to_ms": start, "threshold_ms": t.long_silence_ms})),
                );
            }
        }
        spoken_until = Some(spoken_until.map_or(end, |u| u.max(end)));
    }
    out
}

/// info: the user barged in over the agent many times.
pub fn frequent_interruptions(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    let events: Vec<i64> = s
        .events
        .iter()
        .filter(|e| e.event_type == "interruption")
        .map(|e| e.at_ms)
        .collect();
    let turns = s
        .turns
        .iter()
        .filter(|t| t.interrupted == Some(true))
        .count();
    let n = events.len().max(turns);
    if n < t.frequent_interruptions as usize || n == 0 {
        return Vec::new();
    }
    vec![
        issue("frequent_interruptions", Severity::Info, format!("{n} interruptions in one call"))
            .at(events.first().copied(), None)
            .detail("Users barging in often suggests answers that are too long or off target.")
            .evidence(json!({"interruptions": n, "interruption_events": events.len(), "interrupted_turns": turns, "threshold": t.frequent_interruptions})),
    ]
}

/// The call's conversation metrics from its timed turns (`user` is the customer, `assistant` the
/// agent); dead air listed from `dead_air_ms`.
fn conversation(s: &Snapshot<'_>, t: &Thresholds) -> crate::conversation::ConversationMetrics {
    use crate::conversation::{AGENT, CUSTOMER, Input, Span};
    let input = Input::from_turns(s.turns.iter().filter_map(|turn| {
        let (start, end) = (turn.start_ms?, turn.end_ms?);
        let role = if is_user(turn) { CUSTOMER } else { AGENT };
        Some((
            role.to_string(),
            Span {
                start_ms: start,
                end_ms: end,
            },
            turn.content.split_whitespace().count(),
        ))
    }));
    crate::conversation::compute(&input, t.dead_air_ms.round() as i64)
}

/// The turn that starts at `at_ms`, if one does.
fn turn_at(s: &Snapshot<'_>, at_ms: i64) -> Option<i64> {
    s.turns
        .iter()
        .find(|t| t.start_ms == Some(at_ms))
        .map(|t| t.turn_index)
}

/// warning: a stretch with nobody speaking (dead air), from the call's timed turns.
pub fn dead_air(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    conversation(s, t)
        .silences
        .iter()
        .map(|g| {
            issue("dead_air", Severity::Warning, format!("{:.1} s of dead air at {}", g.len() as f64 / 1000.0, clock(g.start_ms)))
                .at(Some(g.start_ms), turn_at(s, g.end_ms))
                .detail("Nobody spoke: a caller on a silent line often thinks the call dropped.")
                .evidence(json!({"silence_ms": g.len(), "from_ms": g.start_ms, "to_ms": g.end_ms, "threshold_ms": t.dead_air_ms}))
        })
        .collect()
}

/// warning: one party spoke over the other for a while.
pub fn talk_over(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    conversation(s, t)
        .overlaps
        .iter()
        .filter(|o| (o.end_ms - o.start_ms) as f64 >= t.talk_over_ms)
        .map(|o| {
            let ms = o.end_ms - o.start_ms;
            issue("talk_over", Severity::Warning, format!("{} talked over the {} for {:.1} s at {}", o.by, o.over, ms as f64 / 1000.0, clock(o.start_ms)))
                .at(Some(o.start_ms), turn_at(s, o.start_ms))
                .evidence(json!({"overlap_ms": ms, "by": o.by, "over": o.over, "from_ms": o.start_ms, "to_ms": o.end_ms, "threshold_ms": t.talk_over_ms}))
        })
        .collect()
}

/// info: one party spoke unbroken for a long time.
pub fn long_monologue(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    let mut out = Vec::new();
    for turn in s.turns {
        let (Some(start), Some(end)) = (turn.start_ms, turn.end_ms) else {
            continue;
        };
        let ms = end - start;
        if (ms as f64) < t.long_monologue_ms {
            continue;
        }
        let who = if is_user(turn) { "customer" } else { "agent" };
        out.push(
            issue("long_monologue", Severity::Info, format!("the {who} spoke for {:.0} s without a break", ms as f64 / 1000.0))
                .at(Some(start), Some(turn.turn_index))
                .detail("Long monologues lose the listener; Gong's benchmark for a good call is under a minute.")
                .evidence(json!({"monologue_ms": ms, "role": who, "from_ms": start, "to_ms": end, "threshold_ms": t.long_monologue_ms})),
        );
    }
    out
}

/// warning: the agent took long to start answering the customer.
pub fn slow_response(s: &Snapshot<'_>, t: &Thresholds) -> Vec<Issue> {
    conversation(s, t)
        .response_gaps
        .iter()
        .filter(|g| (g.end_ms - g.start_ms) as f64 >= t.slow_response_ms)
        .map(|g| {
            let ms = g.end_ms - g.start_ms;
            issue("slow_response", Severity::Warning, format!("the agent took {:.1} s to answer at {}", ms as f64 / 1000.0, clock(g.start_ms)))
                .at(Some(g.start_ms), turn_at(s, g.end_ms))
                .evidence(json!({"response_gap_ms": ms, "customer_end_ms": g.start_ms, "agent_start_ms": g.end_ms, "threshold_ms": t.slow_response_ms}))
        })
        .collect()
}
