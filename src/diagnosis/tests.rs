//! Rule tests: each rule fires at its threshold, stays quiet just on the other side of it, and stays
//! quiet on clean, realistic calls (the simulator's, with real synthesized audio measured as ingest
//! measures it).

use super::{Diagnosis, Snapshot, Thresholds, diagnose};
use crate::audio::{Span, analyze_wav_spans};
use crate::ingest::models::{event_model, segment_model, session_model, turn_model};
use crate::ingest::persist::SegmentRow;
use crate::ingest::pipeline::SegmentStatus;
use crate::ingest::{SessionReport, decode_report};
use crate::produce::{ProduceOptions, generate_call};
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, session_events as ev,
};
use serde_json::json;
use uuid::Uuid;

/// A session as the rules see it, built like ingest builds it.
#[derive(Clone)]
struct Call {
    session: cs::Model,
    turns: Vec<ct::Model>,
    events: Vec<ev::Model>,
    segments: Vec<seg::Model>,
}

fn from_report(r: &SessionReport, audio: &[(String, Vec<u8>)]) -> Call {
    let session = session_model(r);
    let turns = r.turns.iter().map(|t| turn_model(t, r.seq)).collect();
    let events = r.events.iter().map(|e| event_model(e, r.seq)).collect();
    let spans: Vec<Span> = r
        .turns
        .iter()
        .filter(|t| t.role.as_str() == "user")
        .filter_map(|t| Some((t.index, t.start_ms?, t.end_ms?)))
        .collect();
    let segments = r
        .audio_segments
        .iter()
        .map(|g| {
            let bytes = &audio
                .iter()
                .find(|(k, _)| *k == format!("audio:{}", g.segment_id))
                .expect("audio field")
                .1;
            let full = g.segment_type.as_str().starts_with("full_");
            let (m, levels) = analyze_wav_spans(bytes, if full { &spans } else { &[] })
                .expect("simulated audio decodes");
            segment_model(&SegmentRow {
                segment_id: g.segment_id.clone(),
                segment_type: g.segment_type.as_str(),
                turn_index: g.turn_index,
                offset_ms: g.offset_ms,
                duration_ms: g.duration_ms,
                s3_key: Some("k".into()),
                bucket: None,
                source: "field",
                size_bytes: Some(bytes.len() as i64),
                metrics: Some(m),
                speech_levels: full.then(|| json!(levels)),
                status: SegmentStatus::Stored,
                error: None,
                report_seq: r.seq,
            })
        })
        .collect();
    Call {
        session,
        turns,
        events,
        segments,
    }
}

/// A clean simulated call (final report) with its audio measured.
fn clean(seed: u64) -> Call {
    let opts = ProduceOptions {
        calls: 1,
        partials: 0,
        audio: true,
        gzip: false,
        concurrency: 1,
        seed,
        call_prefix: "t".into(),
        ..Default::default()
    };
    let entry = generate_call(0, &opts).pop().expect("a final report");
    from_report(&decode_report(&entry.payload).expect("valid"), &entry.audio)
}

impl Call {
    fn run_with(&self, t: &Thresholds) -> Diagnosis {
        diagnose(
            &Snapshot {
                session: &self.session,
                turns: &self.turns,
                events: &self.events,
                segments: &self.segments,
            },
            t,
        )
    }
    fn run(&self) -> Diagnosis {
        self.run_with(&Thresholds::default())
    }
    fn codes(&self) -> Vec<&'static str> {
        self.run().issues.iter().map(|i| i.code).collect()
    }
    fn has(&self, code: &str) -> bool {
        self.codes().contains(&code)
    }
    fn user(&mut self, n: usize) -> &mut ct::Model {
        self.turns
            .iter_mut()
            .filter(|t| t.role == "user")
            .nth(n)
            .expect("user turn")
    }
    fn agent(&mut self, n: usize) -> &mut ct::Model {
        self.turns
            .iter_mut()
            .filter(|t| t.role == "assistant")
            .nth(n)
            .expect("agent turn")
    }
    fn event(&mut self, event_type: &str, at_ms: i64, data: serde_json::Value) {
        let seq = self.events.len() as i64 + 1000;
        self.events.push(ev::Model {
            session_id: Uuid::nil(),
            seq,
            event_type: event_type.into(),
            at_ms,
            turn_index: None,
            data: Some(data),
            report_seq: 0,
        });
    }
    fn segment(&mut self, ty: &str) -> &mut seg::Model {
        self.segments
            .iter_mut()
            .find(|g| g.segment_type == ty)
            .expect("segment")
    }
    fn end_ms(&self) -> i64 {
        self.turns
            .iter()
            .filter_map(|t| t.end_ms)
            .max()
            .unwrap_or(0)
    }
}

/// Asserts `code` fires after `at` and not after `under` (each applied to a fresh clean call).
fn boundary(code: &str, at: impl Fn(&mut Call), under: impl Fn(&mut Call)) {
    let mut fires = clean(1);
    at(&mut fires);
    assert!(
        fires.has(code),
        "{code} should fire at its threshold: {:?}",
        fires.run().issues
    );
    let mut quiet = clean(1);
    under(&mut quiet);
    assert!(
        !quiet.has(code),
        "{code} should stay quiet just inside the threshold: {:?}",
        quiet.run().issues
    );
}

#[test]
fn clean_realistic_calls_have_no_issues_at_all() {
    for seed in 1..=20 {
        let call = clean(seed);
        assert!(call.segments.len() >= 8, "audio measured");
        let d = call.run();
        assert!(d.issues.is_empty(), "seed {seed}: {:#?}", d.issues);
        assert!(!d.has_issues && d.summary.is_none());
    }
}

#[test]
fn dropped_utterance() {
    let at = |c: &mut Call| {
        let t = c.end_ms() + 1000;
        c.event(
            "user_stopped_speaking",
            t,
            json!({"speech_duration_ms": 700}),
        );
    };
    boundary("dropped_utterance", at, |c| {
        let t = c.end_ms() + 1000;
        c.event(
            "user_stopped_speaking",
            t,
            json!({"speech_duration_ms": 699}),
        );
    });
    // A transcript at the edge of the window counts; just past it does not.
    boundary(
        "dropped_utterance",
        |c| {
            at(c);
            let t = c.end_ms() + 1000 + 5001;
            c.event(
                "user_transcript",
                t,
                json!({"final": true, "transcript": "late words"}),
            );
        },
        |c| {
            at(c);
            let t = c.end_ms() + 1000 + 5000;
            c.event(
                "user_transcript",
                t,
                json!({"final": true, "transcript": "words"}),
            );
        },
    );
    // On a partial report an utterance still inside its window is not judged yet.
    let mut partial = clean(1);
    partial.session.is_final = false;
    at(&mut partial);
    assert!(!partial.has("dropped_utterance"));
}

#[test]
fn stt_total_failure() {
    boundary(
        "stt_total_failure",
        |c| {
            c.turns
                .iter_mut()
                .filter(|t| t.role == "user")
                .for_each(|t| t.content = " ".into());
            c.events.retain(|e| e.event_type != "user_transcript");
        },
        |c| {
            c.turns
                .iter_mut()
                .filter(|t| t.role == "user")
                .skip(1)
                .for_each(|t| t.content.clear());
            c.events.retain(|e| e.event_type != "user_transcript");
        },
    );
    boundary(
        "stt_total_failure",
        |c| {
            c.event(
                "stt_error",
                5000,
                json!({"message": "socket closed", "recoverable": false}),
            )
        },
        |c| {
            c.event(
                "stt_error",
                5000,
                json!({"message": "retrying", "recoverable": true}),
            )
        },
    );
}

#[test]
fn agent_no_response() {
    let add_user_turn = |c: &mut Call| {
        let end = c.end_ms();
        let mut t = c.user(0).clone();
        t.turn_index = c.turns.len() as i64;
        (t.start_ms, t.end_ms) = (Some(end + 500), Some(end + 1500));
        c.turns.push(t);
    };
    boundary("agent_no_response", add_user_turn, |c| {
        add_user_turn(c);
        c.session.was_transferred = Some(true);
    });
}

#[test]
fn pipeline_error_and_recovered_errors() {
    boundary(
        "pipeline_error",
        |c| {
            c.event(
                "llm_error",
                4000,
                json!({"message": "rate limited", "recoverable": false}),
            )
        },
        |c| {
            c.event(
                "llm_error",
                4000,
                json!({"message": "rate limited", "recoverable": true}),
            )
        },
    );
    boundary(
        "pipeline_error",
        |c| c.session.error = Some("tts crashed".into()),
        |c| c.session.error = Some("".into()),
    );
    boundary(
        "recovered_pipeline_error",
        |c| {
            c.event(
                "tts_error",
                4000,
                json!({"message": "retry", "recoverable": true}),
            )
        },
        |c| {
            c.event(
                "tts_error",
                4000,
                json!({"message": "fatal", "recoverable": false}),
            )
        },
    );
}

#[test]
fn high_e2e_latency_names_the_dominant_component() {
    boundary(
        "high_e2e_latency",
        |c| c.agent(1).e2e_latency_ms = Some(1500.0),
        |c| c.agent(1).e2e_latency_ms = Some(1499.9),
    );
    let mut c = clean(1);
    c.agent(0).e2e_latency_ms = Some(2400.0);
    c.agent(0).llm_ttft_ms = Some(1700.0);
    let d = c.run();
    let i = d
        .issues
        .iter()
        .find(|i| i.code == "high_e2e_latency")
        .expect("fires");
    assert_eq!(i.evidence["dominant"], "llm_ttft");
    assert!(i.title.contains("LLM time to first token"), "{}", i.title);
    assert_eq!(i.turn_index, Some(c.agent(0).turn_index));
}

#[test]
fn slow_components() {
    boundary(
        "slow_llm_ttft",
        |c| c.agent(0).llm_ttft_ms = Some(1000.0),
        |c| c.agent(0).llm_ttft_ms = Some(999.9),
    );
    boundary(
        "slow_tts_ttfb",
        |c| c.agent(0).tts_ttfb_ms = Some(500.0),
        |c| c.agent(0).tts_ttfb_ms = Some(499.9),
    );
    boundary(
        "slow_transcription",
        |c| c.user(0).transcription_delay_ms = Some(500.0),
        |c| c.user(0).transcription_delay_ms = Some(499.9),
    );
    boundary(
        "slow_end_of_turn",
        |c| c.user(0).end_of_turn_delay_ms = Some(1000.0),
        |c| c.user(0).end_of_turn_delay_ms = Some(999.9),
    );
}

fn set_speech_levels(c: &mut Call, pre: f64, post: f64) {
    c.segment("full_pre_rnnoise").speech_levels =
        Some(json!({"overall_dbfs": pre, "turns": [{"turn_index": 0, "dbfs": pre}]}));
    c.segment("full_post_rnnoise").speech_levels =
        Some(json!({"overall_dbfs": post, "turns": [{"turn_index": 0, "dbfs": post}]}));
}

#[test]
fn rnnoise_over_attenuation() {
    boundary(
        "rnnoise_over_attenuation",
        |c| set_speech_levels(c, -20.0, -30.0),
        |c| set_speech_levels(c, -20.0, -29.9),
    );
    let mut c = clean(1);
    set_speech_levels(&mut c, -18.0, -34.5);
    let i = c
        .run()
        .issues
        .into_iter()
        .find(|i| i.code == "rnnoise_over_attenuation")
        .expect("fires");
    assert_eq!(i.evidence["attenuation_db"], 16.5);
    assert_eq!(i.turn_index, Some(0));
}

#[test]
fn rnnoise_over_attenuation_from_real_audio() {
    // Post-suppression audio 20 dB quieter over the user's speech, measured from actual WAV bytes.
    let opts = ProduceOptions {
        calls: 1,
        partials: 0,
        audio: true,
        gzip: false,
        concurrency: 1,
        seed: 3,
        call_prefix: "t".into(),
        ..Default::default()
    };
    let mut entry = generate_call(0, &opts).pop().expect("final");
    for (k, v) in entry
        .audio
        .iter_mut()
        .filter(|(k, _)| k == "audio:full_post_rnnoise")
    {
        let a = crate::audio::decode_wav(v).expect("decodes");
        let quiet: Vec<f32> = a.samples.iter().map(|s| s * 0.1).collect();
        *v = crate::audio::encode_wav_i16(&quiet, a.sample_rate);
        assert!(k.ends_with("post_rnnoise"));
    }
    let call = from_report(&decode_report(&entry.payload).expect("valid"), &entry.audio);
    let i = call
        .run()
        .issues
        .into_iter()
        .find(|i| i.code == "rnnoise_over_attenuation")
        .expect("fires on real audio");
    assert!(
        (i.evidence["attenuation_db"].as_f64().unwrap() - 20.0).abs() < 0.5,
        "{:?}",
        i.evidence
    );
}

#[test]
fn clipping() {
    boundary(
        "clipping",
        |c| c.segment("stt_input").clipped_ratio = Some(0.001),
        |c| c.segment("stt_input").clipped_ratio = Some(0.00099),
    );
    boundary(
        "clipping",
        |c| {
            let g = c.segment("stt_input");
            (g.peak_dbfs, g.clip_runs) = (Some(-0.1), Some(1));
        },
        |c| {
            let g = c.segment("stt_input");
            (g.peak_dbfs, g.clip_runs) = (Some(-0.1), Some(0));
        },
    );
}

#[test]
fn low_snr() {
    boundary(
        "low_snr",
        |c| c.segment("full_post_rnnoise").snr_estimate = Some(9.99),
        |c| c.segment("full_post_rnnoise").snr_estimate = Some(10.0),
    );
}

#[test]
fn tool_call_error() {
    boundary(
        "tool_call_error",
        |c| {
            c.agent(0).tool_calls =
                Some(json!([{"name": "lookup_account", "error": "timeout after 5 s"}]))
        },
        |c| c.agent(0).tool_calls = Some(json!([{"name": "lookup_account", "error": null}])),
    );
}

#[test]
fn empty_user_turn() {
    boundary(
        "empty_user_turn",
        |c| c.user(1).content.clear(),
        |c| c.user(1).content = "ok".into(),
    );
}

#[test]
fn near_miss_speech() {
    boundary(
        "near_miss_speech",
        |c| {
            c.event(
                "near_miss",
                3000,
                json!({"max_probability": 0.42, "duration_ms": 600}),
            )
        },
        |c| c.event("user_started_speaking", 3000, json!({})),
    );
    let mut c = clean(1);
    c.event("near_miss", 3000, json!({"max_probability": 0.42}));
    assert!(c.run().has_near_miss);
}

#[test]
fn low_confidence_turn() {
    boundary(
        "low_confidence_turn",
        |c| c.user(0).stt_confidence = Some(0.5999),
        |c| c.user(0).stt_confidence = Some(0.6),
    );
}

#[test]
fn transferred() {
    boundary(
        "transferred",
        |c| c.session.was_transferred = Some(true),
        |c| c.session.was_transferred = Some(false),
    );
    boundary(
        "transferred",
        |c| c.event("transfer", 9000, json!({"target": "billing"})),
        |_| {},
    );
}

#[test]
fn long_silence() {
    let gap = |ms: i64| {
        move |c: &mut Call| {
            let end = c.end_ms();
            let mut t = c.agent(0).clone();
            t.turn_index = c.turns.len() as i64;
            (t.start_ms, t.end_ms) = (Some(end + ms), Some(end + ms + 1000));
            c.turns.push(t);
        }
    };
    boundary("long_silence", gap(8000), gap(7999));
}

#[test]
fn frequent_interruptions() {
    let n = |k: usize| {
        move |c: &mut Call| (0..k).for_each(|i| c.event("interruption", 1000 * i as i64, json!({})))
    };
    boundary("frequent_interruptions", n(3), n(2));
}

#[test]
fn thresholds_from_a_file_change_what_fires() {
    let mut c = clean(1);
    c.agent(0).e2e_latency_ms = Some(1600.0);
    assert!(c.has("high_e2e_latency"));
    let relaxed = Thresholds::from_toml("t.toml", "high_e2e_latency_ms = 2000").expect("valid");
    assert!(
        !c.run_with(&relaxed)
            .issues
            .iter()
            .any(|i| i.code == "high_e2e_latency")
    );
}

#[test]
fn issues_are_ordered_most_severe_first_and_summarised() {
    let mut c = clean(1);
    c.event(
        "user_stopped_speaking",
        41_000,
        json!({"speech_duration_ms": 1200}),
    );
    c.session.error = Some("tts crashed".into());
    c.agent(0).llm_ttft_ms = Some(1200.0);
    c.user(0).stt_confidence = Some(0.3);
    let d = c.run();
    let sev: Vec<_> = d.issues.iter().map(|i| i.severity).collect();
    let mut sorted = sev.clone();
    sorted.sort();
    assert_eq!(sev, sorted);
    assert!(d.has_issues);
    let agent_at = super::clock(c.agent(0).start_ms.expect("timed"));
    assert_eq!(
        d.summary.as_deref(),
        Some(format!("2 critical, 1 warning: dropped utterance at 00:41; pipeline error; slow LLM first token at {agent_at}").as_str())
    );
}

#[test]
fn every_rule_is_registered_once_with_a_label() {
    let mut codes: Vec<&str> = super::rules::ALL.iter().map(|(c, _)| *c).collect();
    let n = codes.len();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), n);
    assert!(codes.iter().all(|c| super::rules::label(c) != "issue"));
}

/// What `call-insights produce` plants is what diagnosis finds: with every call faulty, each kind of
/// fault shows as its issue; calls are spread over the last week, over intents and agents.
#[test]
fn produced_demo_calls_carry_their_planted_faults_and_spread_over_the_week() {
    let until = chrono::Utc::now();
    let opts = ProduceOptions {
        calls: 60,
        partials: 0,
        audio: false,
        seed: 5,
        days: 7,
        faults: 1.0,
        until: Some(until),
        ..Default::default()
    };
    let mut found = std::collections::BTreeMap::<&str, usize>::new();
    let (mut agents, mut days) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for n in 0..opts.calls {
        let entry = generate_call(n, &opts).pop().expect("final");
        let report = decode_report(&entry.payload).expect("valid");
        assert!(
            report.started_at <= until && report.started_at > until - chrono::Duration::days(7)
        );
        days.insert(report.started_at.date_naive());
        agents.insert(report.agent_id.clone().unwrap_or_default());
        let codes = from_report(&report, &entry.audio).codes();
        let planted = [
            "slow_llm_ttft",
            "pipeline_error",
            "near_miss_speech",
            "dropped_utterance",
        ];
        let hits: Vec<&str> = planted.into_iter().filter(|c| codes.contains(c)).collect();
        assert!(!hits.is_empty(), "call {n} has no planted fault: {codes:?}");
        for h in hits {
            *found.entry(h).or_default() += 1;
        }
    }
    assert_eq!(found.len(), 4, "every kind of fault planted: {found:?}");
    assert!(agents.len() >= 4, "{agents:?}");
    assert!(days.len() >= 5, "{days:?}");
    // With no faults asked for, none is planted.
    let clean = ProduceOptions {
        faults: 0.0,
        ..opts
    };
    for n in 0..20 {
        let entry = generate_call(n, &clean).pop().expect("final");
        let codes =
            from_report(&decode_report(&entry.payload).expect("valid"), &entry.audio).codes();
        assert!(
            !codes
                .iter()
                .any(|c| matches!(*c, "slow_llm_ttft" | "pipeline_error" | "dropped_utterance")),
            "{codes:?}"
        );
    }
}
