//! The STT replay layer end to end: a session ingested with its audio (real database, real S3 server
//! or folder) is replayed through all six fake providers, giving the full grid
//! turns × renditions × providers — missing renditions and provider errors in their cells.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::audio::{RenditionKind, encode_wav_i16};
use call_insights::stt::{ConfidenceSource, ProviderId, SttConfig, SttErrorKind, SttProviders};
use call_insights::stt_replay::replay::{
    RenditionStatus, ReplayOptions, ResultStatus, SessionReplay, replay_session,
};
use common::calls::*;
use common::*;
use serde_json::json;
use testkit::stt::FakeProvider;

on_both_stacks!(replaying_a_session_fills_the_whole_grid);

/// `call-insights replay <session>` as an operator runs it: providers from `INSIGHTS_<PROVIDER>_*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_command_prints_the_grid_for_the_configured_providers() {
    let env = spawn(Db::Sqlite, Store::Fs).await;
    let mut r = report("cli-call", 0, true, 2);
    r["turns"][0]["content"] = json!(TURNS[0].3);
    r["turns"][0]["start_ms"] = json!(TURNS[0].1);
    r["turns"][0]["end_ms"] = json!(TURNS[0].1 + TURNS[0].2);
    r["audio_segments"] = json!([
        {"segment_id": "stt-0", "segment_type": "stt_input", "turn_index": 0, "offset_ms": 500, "audio": {"field": "audio:stt-0"}},
    ]);
    env.publish_fields(&[
        ("payload", &serde_json::to_vec(&r).unwrap()),
        ("audio:stt-0", &encode_wav_i16(&tone(1200, 0.2), 16000)),
    ])
    .await;
    env.drain(&mut env.consumer()).await;
    let session = env.session("cli-call").await.unwrap();
    let groq = FakeProvider::start(ProviderId::Groq).await.unwrap();
    let gladia = FakeProvider::start(ProviderId::Gladia).await.unwrap();
    for f in [&groq, &gladia] {
        f.set_transcript(TURNS[0].3);
    }
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_call-insights"));
    cmd.env_clear()
        .envs(env.service_env())
        .env("INSIGHTS_GROQ_API_KEY", groq.api_key())
        .env("INSIGHTS_GROQ_BASE_URL", groq.base_url())
        .env("INSIGHTS_GLADIA_API_KEY", gladia.api_key())
        .env("INSIGHTS_GLADIA_BASE_URL", gladia.base_url())
        .env("INSIGHTS_GLADIA_POLL_MS", "20")
        .args(["replay", &session.id.to_string()]);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grid: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let providers: Vec<&str> = grid["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, vec!["groq", "gladia"]);
    let stt_input = &grid["turns"][0]["renditions"][2];
    assert_eq!(stt_input["rendition"], "stt_input");
    assert_eq!(
        stt_input["results"][1]["transcription"]["transcript"],
        TURNS[0].3
    );
    assert_eq!(stt_input["results"][1]["wer_vs_original"]["wer"], 0.0);
    assert_eq!(grid["turns"][0]["renditions"][0]["status"], "missing");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("groq wer 0.00 | gladia wer 0.00"),
        "{summary}"
    );
    // An unknown provider is refused with its name.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_call-insights"))
        .env_clear()
        .envs(env.service_env())
        .args(["replay", &session.id.to_string(), "--providers", "whisperx"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("whisperx"));
    env.cleanup().await;
}

async fn replaying_a_session_fills_the_whole_grid(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let session = ingest_call(&env, "replay-call", "acme").await;
    let fakes = FakeProvider::start_all().await.unwrap();
    script_fakes(&fakes);
    let elevenlabs = &fakes[3];
    assert_eq!(elevenlabs.id(), ProviderId::Elevenlabs);
    elevenlabs.set_fail_when(|a| (said(a) == Some(TURNS[1].3)).then_some(503));
    let stt = SttProviders::from_config(&SttConfig {
        providers: fakes.iter().map(FakeProvider::config).collect(),
        language: Some("en".into()),
    })
    .unwrap();
    let options = ReplayOptions {
        language: Some("en".into()),
        ..ReplayOptions::default()
    };
    let grid: SessionReplay = replay_session(
        &env.app.db,
        env.app.store.clone(),
        &stt,
        session.id,
        &options,
    )
    .await
    .unwrap();

    assert_eq!(grid.call_id, "replay-call");
    assert_eq!(grid.providers.len(), 6);
    assert_eq!(
        grid.turns.iter().map(|t| t.turn_index).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    for turn in &grid.turns {
        let kinds: Vec<RenditionKind> = turn.renditions.iter().map(|r| r.rendition).collect();
        assert_eq!(kinds, RenditionKind::ALL.to_vec());
    }
    // Missing renditions say why and have no cells.
    let last = &grid.turns[2];
    let by_kind = |t: &call_insights::stt_replay::replay::TurnReplay, k: RenditionKind| {
        t.renditions
            .iter()
            .find(|r| r.rendition == k)
            .unwrap()
            .clone()
    };
    let stt_input = by_kind(last, RenditionKind::SttInput);
    assert_eq!(stt_input.status, RenditionStatus::Missing);
    assert!(
        stt_input
            .missing_reason
            .as_deref()
            .unwrap()
            .contains("no stt_input segment for turn 4")
    );
    let post = by_kind(last, RenditionKind::PostRnnoise);
    assert_eq!(post.status, RenditionStatus::Missing);
    assert!(
        post.missing_reason
            .as_deref()
            .unwrap()
            .contains("outside the recording"),
        "{post:?}"
    );
    assert!(post.results.is_empty());

    // Every available rendition has a cell per provider.
    let mut cells = 0;
    for turn in &grid.turns {
        for r in turn
            .renditions
            .iter()
            .filter(|r| r.status == RenditionStatus::Available)
        {
            assert_eq!(
                r.results.len(),
                6,
                "turn {} {:?}",
                turn.turn_index,
                r.rendition
            );
            let clipping = r.clipping.unwrap();
            assert_eq!(clipping.clipped_ratio, 0.0);
            let want_peak = if r.rendition == RenditionKind::SttInput {
                0.2f64
            } else if r.rendition == RenditionKind::PreRnnoise {
                0.3
            } else {
                0.25
            };
            assert!(
                (clipping.peak_dbfs.unwrap() - 20.0 * want_peak.log10()).abs() < 0.1,
                "{clipping:?}"
            );
            let want_ms = TURNS.iter().find(|t| t.0 == turn.turn_index).unwrap().2 as f64;
            assert!((r.duration_ms.unwrap() - want_ms).abs() < 1.0);
            cells += r.results.len();
        }
    }
    assert_eq!(
        cells,
        (3 + 3 + 1) * 6,
        "7 available renditions × 6 providers"
    );

    // Cell contents.
    let first = by_kind(&grid.turns[0], RenditionKind::PreRnnoise);
    let cell = |p: ProviderId| first.results.iter().find(|c| c.provider == p).unwrap();
    let groq = cell(ProviderId::Groq);
    let t = groq.transcription.as_ref().unwrap();
    assert_eq!(t.transcript, TURNS[0].3);
    assert_eq!(t.language.as_deref(), Some("en"), "\"english\" becomes en");
    assert_eq!(
        t.confidence.unwrap().source,
        ConfidenceSource::SegmentLogprob
    );
    assert!((t.confidence.unwrap().value - 0.9).abs() < 1e-9);
    assert!(t.latency_ms > 0.0 && t.request_id.is_some());
    assert_eq!(groq.wer_vs_original.as_ref().unwrap().wer, 0.0);
    let openai = cell(ProviderId::Openai);
    assert_eq!(
        openai.wer_vs_original.as_ref().unwrap().wer,
        0.0,
        "digits normalise like words"
    );
    assert!(openai.wer_vs_original.as_ref().unwrap().raw_wer > 0.0);
    assert_eq!(
        openai
            .transcription
            .as_ref()
            .unwrap()
            .confidence
            .unwrap()
            .source,
        ConfidenceSource::TokenLogprob
    );
    let deepgram = cell(ProviderId::Deepgram);
    let w = deepgram.wer_vs_original.as_ref().unwrap();
    assert_eq!(
        (w.counts.deletions, w.counts.reference_words),
        (1, 10),
        "{w:?}"
    );
    assert!((w.wer - 0.1).abs() < 1e-12);
    assert_eq!(
        deepgram
            .transcription
            .as_ref()
            .unwrap()
            .confidence
            .unwrap()
            .source,
        ConfidenceSource::Reported
    );
    let agreement = deepgram.agreement.as_ref().unwrap();
    assert_eq!(agreement.against.len(), 5);
    assert_eq!(
        agreement.counts.deletions, 5,
        "one word short of each of the five others"
    );
    let eleven = cell(ProviderId::Elevenlabs).transcription.as_ref().unwrap();
    assert_eq!(eleven.language.as_deref(), Some("en"), "\"eng\" becomes en");
    let gladia = cell(ProviderId::Gladia).transcription.as_ref().unwrap();
    let phases = gladia.phases.unwrap();
    assert!(phases.polls >= 1);
    assert!(
        (phases.upload_ms + phases.queue_ms + phases.processing_ms - gladia.latency_ms).abs() < 1.0
    );

    // ElevenLabs failed every rendition of turn 2: an error in each of those cells, retried first.
    for r in grid.turns[1].renditions.iter() {
        let c = r
            .results
            .iter()
            .find(|c| c.provider == ProviderId::Elevenlabs)
            .unwrap();
        assert_eq!(c.status, ResultStatus::Error);
        let e = c.error.as_ref().unwrap();
        assert_eq!(
            (e.kind, e.status, e.attempts),
            (SttErrorKind::Server, Some(503), 4),
            "{e:?}"
        );
        assert!(c.wer_vs_original.is_none());
        assert!(
            r.results
                .iter()
                .filter(|c| c.status == ResultStatus::Ok)
                .count()
                == 5
        );
    }

    // The fakes saw what the real APIs expect.
    let groq_fields = &fakes[0].requests()[0].fields;
    assert_eq!(
        groq_fields,
        &[
            "file",
            "model",
            "response_format",
            "timestamp_granularities[]",
            "timestamp_granularities[]",
            "language"
        ]
    );
    let dg = &fakes[1].requests()[0];
    assert!(
        dg.query.as_deref().unwrap().contains("model=nova-3"),
        "{dg:?}"
    );
    let json = serde_json::to_value(&grid).unwrap();
    assert!(
        json["turns"][0]["renditions"][0]["results"][0]["wer_vs_original"]["alignment"].is_array()
    );
    env.cleanup().await;
}
