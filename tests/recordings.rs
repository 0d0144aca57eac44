//! Recordings end to end: a call synthesised with espeak-ng on two channels with planted timings (a
//! 15 s silence, a 2 s talk-over, a 65 s agent monologue, a 3.5 s slow answer) uploaded through the API,
//! transcribed by loopback fakes of each provider (which hear the audio they are sent), turned into a
//! session with turns, conversation metrics and diagnosis; formats, mono diarization, bad files,
//! Twilio's callback (signature, redelivery, media not ready, no dual file), re-transcription with
//! versions, the channel map, provider faults and erasure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use call_insights::recordings::pipeline::RunResult;
use call_insights::stt::ProviderId;
use common::recording_fakes::{FakeTranscriber, FakeTwilio, Fault};
use common::{Db, Store};
use serde_json::{Value, json};
use std::path::PathBuf;

use common::recorded_call::{AGENT, CUSTOMER, Call, RATE, ms_of, scripted_call};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rec-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn spawn(
    db: Db,
    store: Store,
    fakes: &[&FakeTranscriber],
    provider: &str,
) -> common::TestEnv {
    let configs: Vec<_> = fakes.iter().map(|f| f.config()).collect();
    let provider = provider.to_string();
    common::spawn_with(db, store, move |c| {
        c.stt.providers = configs;
        c.recording_provider = provider;
        c.recording_lease_ms = 2_000;
    })
    .await
}

async fn upload(
    base: &str,
    bytes: Vec<u8>,
    name: &str,
    mime: &str,
    metadata: Value,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str(mime)
                .unwrap(),
        )
        .text("metadata", metadata.to_string());
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/recordings"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(method: reqwest::Method, base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn work(env: &common::TestEnv) -> Vec<RunResult> {
    env.app
        .recording_worker()
        .process_available()
        .await
        .unwrap()
}

fn near(got: i64, want: i64, what: &str) {
    assert!(
        (got - want).abs() <= 100,
        "{what}: got {got} ms, the script says {want} ms"
    );
}

/// Checks every metric against the script of `scripted_call(true)`.
fn assert_metrics_match(m: &Value, call: &Call) {
    let (_, _, c2_end) = call.line(3);
    let (_, a3_start, a3_end) = call.line(4);
    let (_, c3_start, _) = call.line(5);
    let talk = |party: usize| -> i64 {
        call.lines
            .iter()
            .filter(|l| l.0 == party)
            .map(|l| l.2 - l.1)
            .sum()
    };
    near(
        m["talk_time_ms"]["agent"].as_i64().unwrap(),
        talk(AGENT),
        "agent talk time",
    );
    near(
        m["talk_time_ms"]["customer"].as_i64().unwrap(),
        talk(CUSTOMER),
        "customer talk time",
    );
    let ratio = talk(AGENT) as f64 / (talk(AGENT) + talk(CUSTOMER)) as f64;
    assert!(
        (m["talk_ratio"]["agent"].as_f64().unwrap() - ratio).abs() < 0.01,
        "{m}"
    );
    near(
        m["longest_monologue_ms"]["agent"].as_i64().unwrap(),
        a3_end - a3_start,
        "longest agent monologue",
    );
    assert_eq!(m["interruptions"]["customer"]["count"], 1, "{m}");
    near(
        m["interruptions"]["customer"]["ms"].as_i64().unwrap(),
        a3_end - c3_start,
        "talk-over",
    );
    assert!(m["interruptions"].get("agent").is_none(), "{m}");
    let silences = m["silences"].as_array().unwrap();
    assert_eq!(silences.len(), 1, "one silence of 10 s or more: {m}");
    near(
        silences[0]["start_ms"].as_i64().unwrap(),
        c2_end,
        "silence start",
    );
    near(
        silences[0]["end_ms"].as_i64().unwrap(),
        a3_start,
        "silence end",
    );
    near(m["dead_air_ms"].as_i64().unwrap(), 15_000, "dead air");
    // Customer → agent gaps: 3.5 s, 15 s (the silence), 0.8 s.
    near(
        m["response_gap_ms"]["p50"].as_i64().unwrap(),
        3_500,
        "response gap p50",
    );
    near(
        m["response_gap_ms"]["max"].as_i64().unwrap(),
        15_000,
        "response gap max",
    );
    assert_eq!(m["response_gap_ms"]["count"], 3);
    assert!(
        m["words_per_minute"]["agent"].as_f64().unwrap() > 100.0,
        "{m}"
    );
    assert_eq!(m["overlap"], "exact");
}

async fn a_recorded_call_becomes_a_session_with_turns_metrics_and_diagnosis(db: Db, store: Store) {
    let call = scripted_call(true);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let env = spawn(db, store, &[&fake], "deepgram").await;
    let base = env.serve_api().await;
    let path = tmp("call.wav");
    call.stereo_wav(&path);
    let bytes = std::fs::read(&path).unwrap();
    let meta = json!({"call_id": "rec-call-1", "agent_id": "support-line", "started_at": "2026-12-03T09:00:00Z"});
    let (status, accepted) =
        upload(&base, bytes.clone(), "call.wav", "audio/wav", meta.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["recording_id"].as_str().unwrap().to_string();

    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        (r["channels"].as_i64(), r["sample_rate"].as_i64()),
        (Some(2), Some(22050))
    );
    assert_eq!(r["codec"], "pcm_s16le");
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r["sha256"], sha);
    assert_eq!(r["size_bytes"], bytes.len());
    assert_eq!(r["transcript_version"], 1);
    assert_eq!(r["transcripts"][0]["provider"], "deepgram");
    let total = ms_of(call.channels.iter().map(Vec::len).max().unwrap() + (RATE / 2) as usize);
    assert_eq!(r["duration_ms"].as_i64().unwrap(), total);
    assert_metrics_match(&r["conversation_metrics"], &call);
    let session = r["session_id"].as_str().unwrap().to_string();

    // The session: like any call, with the recording's metrics.
    let (_, s) = get(&base, &format!("/api/v1/sessions/{session}")).await;
    assert_eq!(s["call_id"], "rec-call-1");
    assert_eq!(s["channel_type"], "recording");
    assert_eq!(s["is_final"], true);
    assert_eq!(s["recording_id"], id);
    assert_eq!(s["started_at"], "2026-12-03T09:00:00Z");
    assert_metrics_match(&s["conversation_metrics"], &call);
    let (_, conv) = get(&base, &format!("/api/v1/sessions/{session}/conversation")).await;
    let turns = conv["turns"].as_array().unwrap();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    for (t, line) in turns.iter().zip(&call.lines) {
        near(t["start_ms"].as_i64().unwrap(), line.1, "turn start");
        near(t["end_ms"].as_i64().unwrap(), line.2, "turn end");
        assert_eq!(t["content"], line.3);
    }
    let (_, diag) = get(&base, &format!("/api/v1/sessions/{session}/diagnosis")).await;
    let codes: Vec<&str> = diag["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for code in ["dead_air", "talk_over", "long_monologue", "slow_response"] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }
    let talk_over = diag["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "talk_over")
        .unwrap();
    near(
        talk_over["evidence"]["overlap_ms"].as_i64().unwrap(),
        2_000,
        "talk-over evidence",
    );

    // The original, byte for byte; the same bytes again are the same recording.
    let audio = reqwest::get(format!("{base}/api/v1/recordings/{id}/audio"))
        .await
        .unwrap();
    let audio = if audio.status().as_u16() == 307 {
        let to = audio.headers()["location"].to_str().unwrap().to_string();
        reqwest::get(to).await.unwrap().bytes().await.unwrap()
    } else {
        assert_eq!(audio.headers()["content-type"], "audio/wav");
        audio.bytes().await.unwrap()
    };
    assert_eq!(audio.as_ref(), bytes.as_slice());
    let (status, again) = upload(&base, bytes, "again.wav", "audio/wav", meta).await;
    assert_eq!(
        (
            status,
            again["recording_id"].as_str(),
            again["duplicate"].as_bool()
        ),
        (200, Some(id.as_str()), Some(true))
    );
    let (_, list) = get(&base, "/api/v1/recordings?status=completed").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    env.cleanup().await;
}

/// Decoding does not depend on the database or the store: one stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_call_as_mu_law_mp3_flac_and_opus_gives_the_same_turns() {
    let (db, store) = (Db::Sqlite, Store::Fs);
    let call = scripted_call(true);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let env = spawn(db, store, &[&fake], "deepgram").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let mut ids = Vec::new();
    for (ext, mime, args) in [
        ("wav", "audio/wav", vec!["-e", "u-law"]),
        ("mp3", "audio/mpeg", vec!["-C", "128"]),
        ("flac", "audio/flac", vec![]),
        ("ogg", "audio/ogg", vec![]),
        // Ogg/Opus, as LiveKit's recorder writes it (opus-tools' encoder).
        ("opus", "audio/ogg", vec!["--bitrate", "32"]),
    ] {
        let out = wav.with_file_name(format!("call-{ext}.{ext}"));
        let mut cmd = if ext == "opus" {
            let mut c = std::process::Command::new("opusenc");
            c.arg("--quiet").args(&args).arg(&wav).arg(&out);
            c
        } else {
            let mut c = std::process::Command::new("sox");
            c.arg(&wav).args(&args).arg(&out);
            c
        };
        assert!(
            cmd.status().expect("sox and opusenc installed").success(),
            "encode {ext}"
        );
        let (status, a) = upload(
            &base,
            std::fs::read(&out).unwrap(),
            &format!("call.{ext}"),
            mime,
            json!({"call_id": format!("fmt-{ext}")}),
        )
        .await;
        assert_eq!(status, 202, "{a}");
        ids.push((ext, a["recording_id"].as_str().unwrap().to_string()));
    }
    let results = work(&env).await;
    assert!(
        results.iter().all(|r| *r == RunResult::Completed),
        "{results:?}"
    );
    for (ext, id) in ids {
        let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
        assert_eq!(r["status"], "completed", "{ext}: {r}");
        let codec = r["codec"].as_str().unwrap();
        assert_eq!(
            codec,
            match ext {
                "wav" => "pcm_mulaw",
                "ogg" => "vorbis",
                e => e,
            },
            "{ext}"
        );
        assert_metrics_match(&r["conversation_metrics"], &call);
        let (_, conv) = get(
            &base,
            &format!(
                "/api/v1/sessions/{}/conversation",
                r["session_id"].as_str().unwrap()
            ),
        )
        .await;
        let turns = conv["turns"].as_array().unwrap();
        assert_eq!(turns.len(), call.lines.len(), "{ext}");
        for (t, line) in turns.iter().zip(&call.lines) {
            near(
                t["start_ms"].as_i64().unwrap(),
                line.1,
                &format!("{ext} turn start"),
            );
            assert_eq!(
                t["role"],
                if line.0 == AGENT { "assistant" } else { "user" }
            );
        }
    }
    env.cleanup().await;
}

/// Every provider, in its own wire format, gives the same turns; one diarized mono call too.
async fn every_provider_transcribes_with_speakers(db: Db, store: Store) {
    let call = scripted_call(true);
    let quiet = scripted_call(false);
    let fakes = [
        FakeTranscriber::start(ProviderId::Deepgram, quiet.script()).await,
        FakeTranscriber::start(ProviderId::Assemblyai, call.script()).await,
        FakeTranscriber::start(ProviderId::Gladia, call.script()).await,
        FakeTranscriber::start(ProviderId::Elevenlabs, call.script()).await,
        FakeTranscriber::start(ProviderId::Openai, call.script()).await,
    ];
    let refs: Vec<&FakeTranscriber> = fakes.iter().collect();
    let env = spawn(db, store, &refs, "deepgram").await;
    let base = env.serve_api().await;
    let stereo = tmp("call.wav");
    call.stereo_wav(&stereo);
    let mut ids = Vec::new();
    for p in ["assemblyai", "gladia", "elevenlabs", "openai"] {
        // The same bytes under four tenants: four recordings.
        let bytes = std::fs::read(&stereo).unwrap();
        let (status, a) = upload(
            &base,
            bytes,
            "call.wav",
            "audio/wav",
            json!({"call_id": format!("prov-{p}"), "provider": p, "tenant_id": p}),
        )
        .await;
        assert_eq!(status, 202, "{p}: {a}");
        ids.push((
            p,
            a["recording_id"].as_str().unwrap().to_string(),
            &call,
            true,
        ));
    }
    // Mono, diarized by Deepgram: the speaker heard first (the agent) takes the first role.
    let mono = tmp("mono.wav");
    quiet.mono_wav(&mono);
    let (status, a) = upload(
        &base,
        std::fs::read(&mono).unwrap(),
        "mono.wav",
        "audio/wav",
        json!({"call_id": "mono", "channels": ["agent", "customer"]}),
    )
    .await;
    assert_eq!(status, 202, "{a}");
    ids.push((
        "deepgram-mono",
        a["recording_id"].as_str().unwrap().to_string(),
        &quiet,
        false,
    ));
    let results = work(&env).await;
    assert!(
        results.iter().all(|r| *r == RunResult::Completed),
        "{results:?}"
    );
    for (p, id, script, stereo) in ids {
        let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
        assert_eq!(r["status"], "completed", "{p}: {r}");
        let (_, conv) = get(
            &base,
            &format!(
                "/api/v1/sessions/{}/conversation",
                r["session_id"].as_str().unwrap()
            ),
        )
        .await;
        let roles: Vec<&str> = conv["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["role"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = script
            .lines
            .iter()
            .map(|l| if l.0 == AGENT { "assistant" } else { "user" })
            .collect();
        assert_eq!(roles, want, "{p}");
        for (t, line) in conv["turns"].as_array().unwrap().iter().zip(&script.lines) {
            near(
                t["start_ms"].as_i64().unwrap(),
                line.1,
                &format!("{p} turn start"),
            );
        }
        assert_eq!(
            r["conversation_metrics"]["overlap"],
            if stereo { "exact" } else { "indicative" },
            "{p}"
        );
        if stereo {
            assert_metrics_match(&r["conversation_metrics"], script);
        }
    }
    // OpenAI-compatible servers got one request per channel, each a mono WAV.
    let openai = fakes[4].requests();
    assert_eq!(
        openai
            .iter()
            .filter(|r| r.starts_with("POST /v1/audio/transcriptions"))
            .count(),
        2,
        "{openai:?}"
    );
    env.cleanup().await;
}

async fn bad_files_fail_with_a_reason_and_touch_nothing_else(db: Db, store: Store) {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let env = spawn(db, store, &[&fake], "deepgram").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let good = std::fs::read(&wav).unwrap();
    let truncated = good[..good.len() / 3].to_vec();
    let (_, t) = upload(
        &base,
        truncated,
        "cut.wav",
        "audio/wav",
        json!({"call_id": "cut"}),
    )
    .await;
    let (_, x) = upload(
        &base,
        b"Meeting notes: call the customer back on Monday.".to_vec(),
        "notes.wav",
        "audio/wav",
        json!({"call_id": "notes"}),
    )
    .await;
    let (_, g) = upload(
        &base,
        good,
        "call.wav",
        "audio/wav",
        json!({"call_id": "good"}),
    )
    .await;
    let (status, e) = upload(&base, Vec::new(), "empty.wav", "audio/wav", json!({})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );
    let (status, e) = upload(
        &base,
        vec![1, 2, 3],
        "x.wav",
        "audio/wav",
        json!({"provider": "whisperx"}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("whisperx"), "{e}");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/recordings"))
        .body("x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    work(&env).await;
    let (_, t) = get(
        &base,
        &format!("/api/v1/recordings/{}", t["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("truncated"), "{t}");
    assert!(t["session_id"].is_null());
    let (_, x) = get(
        &base,
        &format!("/api/v1/recordings/{}", x["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(x["status"], "failed");
    assert!(
        x["error"].as_str().unwrap().contains("not an audio file"),
        "{x}"
    );
    let (_, g) = get(
        &base,
        &format!("/api/v1/recordings/{}", g["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(g["status"], "completed", "{g}");
    assert_eq!(env.count("call_sessions").await, 1);
    assert_eq!(fake.transcriptions(), 1, "bad files never reach a provider");
    env.cleanup().await;
}

async fn provider_faults_are_retried_or_fail_clearly(db: Db, store: Store) {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Assemblyai, call.script()).await;
    let env = spawn(db, store, &[&fake], "assemblyai").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let bytes = std::fs::read(&wav).unwrap();
    // A 429 and a 503 on the upload are retried inside the run (the STT layer's policy).
    fake.push_fault(Fault::Status(429));
    fake.push_fault(Fault::Status(503));
    let (_, a) = upload(
        &base,
        bytes.clone(),
        "call.wav",
        "audio/wav",
        json!({"call_id": "retried"}),
    )
    .await;
    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    let (_, a) = get(
        &base,
        &format!("/api/v1/recordings/{}", a["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(a["status"], "completed", "{a}");
    // An answer in the wrong shape fails the transcript, with the reason, and the recording with it.
    fake.push_fault(Fault::Malformed);
    let mut other = bytes.clone();
    other.extend([0, 0, 0, 0]);
    let (_, b) = upload(
        &base,
        other,
        "call2.wav",
        "audio/wav",
        json!({"call_id": "malformed"}),
    )
    .await;
    let results = work(&env).await;
    assert!(
        matches!(&results[..], [RunResult::Failed(why)] if why.contains("upload_url")),
        "{results:?}"
    );
    let (_, b) = get(
        &base,
        &format!("/api/v1/recordings/{}", b["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(b["status"], "failed");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("transcription failed"),
        "{b}"
    );
    assert_eq!(b["transcripts"][0]["status"], "failed");
    // Server errors past the retries send the recording back for later, not to failure.
    for _ in 0..8 {
        fake.push_fault(Fault::Status(500));
    }
    let mut third = bytes;
    third.extend([0, 0, 0, 0, 0, 0, 0, 0]);
    let (_, c) = upload(
        &base,
        third,
        "call3.wav",
        "audio/wav",
        json!({"call_id": "later"}),
    )
    .await;
    let results = work(&env).await;
    assert!(
        matches!(&results[..], [RunResult::Retrying(_)]),
        "{results:?}"
    );
    let (_, c) = get(
        &base,
        &format!("/api/v1/recordings/{}", c["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(c["status"], "transcribing");
    assert!(c["error"].as_str().unwrap().starts_with("retrying:"), "{c}");
    env.cleanup().await;
}

async fn retranscription_makes_versions_and_the_record_and_roles_can_change(db: Db, store: Store) {
    let call = scripted_call(true);
    let dg = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    // Gladia hears a different last line: a version that differs from the first.
    let mut other = call.script();
    if let Some(last) = other.last_mut() {
        last.text = "It should be working again by five tonight".into();
    }
    let gl = FakeTranscriber::start(ProviderId::Gladia, other).await;
    let env = spawn(db, store, &[&dg, &gl], "deepgram").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let (_, a) = upload(
        &base,
        std::fs::read(&wav).unwrap(),
        "call.wav",
        "audio/wav",
        json!({"call_id": "versions"}),
    )
    .await;
    let id = a["recording_id"].as_str().unwrap().to_string();
    work(&env).await;
    let (status, v) = send(
        reqwest::Method::POST,
        &base,
        &format!("/api/v1/recordings/{id}/transcripts"),
        json!({"provider": "gladia"}),
    )
    .await;
    assert_eq!(
        (status, v["version"].as_i64(), v["status"].as_str()),
        (202, Some(2), Some("queued")),
        "{v}"
    );
    let (status, e) = send(
        reqwest::Method::POST,
        &base,
        &format!("/api/v1/recordings/{id}/transcripts"),
        json!({"provider": "elevenlabs"}),
    )
    .await;
    assert_eq!(status, 409, "no key for that one here: {e}");
    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    let (_, list) = get(&base, &format!("/api/v1/recordings/{id}/transcripts")).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (
            items[0]["of_record"].as_bool(),
            items[0]["wer_vs_record"].as_f64()
        ),
        (Some(true), Some(0.0))
    );
    let wer = items[1]["wer_vs_record"].as_f64().unwrap();
    assert!(wer > 0.0 && wer < 0.1, "a few words differ: {wer}");
    assert_eq!(items[1]["provider"], "gladia");
    // The session still reads version 1 …
    let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
    let session = r["session_id"].as_str().unwrap().to_string();
    let last_turn = |conv: &Value| {
        conv["turns"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, conv) = get(&base, &format!("/api/v1/sessions/{session}/conversation")).await;
    assert_eq!(
        last_turn(&conv),
        "It should be fixed by five this afternoon"
    );
    // … until version 2 is made the transcript of record.
    let (status, _) = send(
        reqwest::Method::PUT,
        &base,
        &format!("/api/v1/recordings/{id}/transcript-of-record"),
        json!({"version": 2}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    let (_, conv) = get(&base, &format!("/api/v1/sessions/{session}/conversation")).await;
    assert_eq!(
        last_turn(&conv),
        "It should be working again by five tonight"
    );
    let (_, list) = get(&base, &format!("/api/v1/recordings/{id}/transcripts")).await;
    assert_eq!(list["transcript_version"], 2);
    call_insights::analytics::worker::process_available(&env.app.analytics, &env.app.db, "t", 10)
        .await
        .unwrap();
    let (_, an) = get(&base, &format!("/api/v1/sessions/{session}/analytics")).await;
    assert_eq!(
        (an["status"].as_str(), an["transcript_version"].as_i64()),
        (Some("completed"), Some(2)),
        "{an}"
    );
    assert_eq!(
        list["items"][0]["wer_vs_record"].as_f64(),
        Some(wer),
        "WER is symmetric here (same length)"
    );
    let (_, one) = get(&base, &format!("/api/v1/recordings/{id}/transcripts/2")).await;
    assert_eq!(one["words"][0]["channel"], 1);
    assert!(
        one["raw"]["result"]["transcription"]["utterances"].is_array(),
        "the provider's raw answer is kept"
    );
    // Roles swapped: the same transcript, the other party in each turn; no new transcription.
    let before = dg.transcriptions() + gl.transcriptions();
    let (status, _) = send(
        reqwest::Method::PUT,
        &base,
        &format!("/api/v1/recordings/{id}/roles"),
        json!({"channels": ["agent", "customer"]}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    assert_eq!(dg.transcriptions() + gl.transcriptions(), before);
    let (_, conv) = get(&base, &format!("/api/v1/sessions/{session}/conversation")).await;
    let roles: Vec<&str> = conv["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "user"
        ]
    );
    let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
    assert_eq!(
        r["conversation_metrics"]["interruptions"]["agent"]["count"], 1,
        "the talk-over is now the agent's"
    );
    let (status, e) = send(
        reqwest::Method::PUT,
        &base,
        &format!("/api/v1/recordings/{id}/roles"),
        json!({"channels": []}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    env.cleanup().await;
}

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-for-tests";

fn twilio_params(recording_sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", ACCOUNT.to_string()),
        ("CallSid", "CA11112222333344445555666677778888".to_string()),
        ("RecordingSid", recording_sid.to_string()),
        (
            "RecordingUrl",
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording_sid}"
            ),
        ),
        ("RecordingStatus", status.to_string()),
        ("RecordingDuration", "104".to_string()),
        ("RecordingChannels", "1".to_string()),
        ("RecordingSource", "DialVerb".to_string()),
        (
            "RecordingStartTime",
            "Thu, 03 Dec 2026 09:00:00 +0000".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn twilio_post(
    base: &str,
    public: &str,
    params: &[(String, String)],
    token: Option<&str>,
) -> (u16, Value) {
    let url = format!("{public}/api/v1/integrations/twilio/recording-status");
    let mut req = reqwest::Client::new()
        .post(format!(
            "{base}/api/v1/integrations/twilio/recording-status"
        ))
        .form(params);
    if let Some(t) = token {
        req = req.header(
            "x-twilio-signature",
            call_insights::recordings::twilio::signature(t, &url, params),
        );
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn twilio_callbacks_are_verified_and_fetch_the_media_once(db: Db, store: Store) {
    let call = scripted_call(false);
    let mono = tmp("mono.wav");
    call.mono_wav(&mono);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    // Twilio has no dual-channel file (400 to RequestedChannels=2) and its media lags: 404 twice.
    let twilio = FakeTwilio::start(
        ACCOUNT,
        TOKEN,
        "RE0001",
        None,
        std::fs::read(&mono).unwrap(),
        2,
    )
    .await;
    let accounts = tmp("twilio.toml");
    std::fs::write(&accounts, format!("[[account]]\nsid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\ntenant_id = \"acme\"\nchannels = [\"agent\", \"customer\"]\n")).unwrap();
    let public = "https://insights.example.com";
    let cfg = fake.config();
    let twilio_base = twilio.base_url();
    let env = common::spawn_with(db, store, move |c| {
        c.stt.providers = vec![cfg];
        c.twilio_accounts_file = Some(accounts);
        c.twilio_api_base_url = twilio_base;
        c.public_base_url = Some(public.into());
        c.api_keys = "operator-key-123=*".into();
        c.twilio_media_retry_ms = 50;
    })
    .await;
    let base = env.serve_api().await;
    let params = twilio_params("RE0001", "completed");
    // Forged, missing, or signed for another URL: 403 and nothing stored.
    let (status, e) = twilio_post(&base, public, &params, Some("not-the-token")).await;
    assert_eq!(status, 403, "{e}");
    let (status, _) = twilio_post(&base, public, &params, None).await;
    assert_eq!(status, 403);
    let (status, _) =
        twilio_post(&base, "https://elsewhere.example.com", &params, Some(TOKEN)).await;
    assert_eq!(status, 403);
    assert_eq!(env.count("recordings").await, 0);
    // Not completed: acknowledged, nothing to do.
    let (status, v) = twilio_post(
        &base,
        public,
        &twilio_params("RE0001", "in-progress"),
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, v["ignored"].as_bool()), (200, Some(true)));
    // Completed, delivered twice: one recording. No API key needed: the signature is the credential.
    let (status, a) = twilio_post(&base, public, &params, Some(TOKEN)).await;
    assert_eq!(status, 202, "{a}");
    let (status, b) = twilio_post(&base, public, &params, Some(TOKEN)).await;
    assert_eq!(
        (status, b["recording_id"].clone(), b["duplicate"].as_bool()),
        (200, a["recording_id"].clone(), Some(true))
    );
    assert_eq!(env.count("recordings").await, 1);
    let results = work(&env).await;
    assert_eq!(results, vec![RunResult::Completed]);
    let reqs = twilio.requests();
    assert!(reqs[0].contains("RequestedChannels=2"), "{reqs:?}");
    assert!(
        reqs.iter().any(|r| !r.contains("RequestedChannels")),
        "fell back to the file that exists: {reqs:?}"
    );
    let key = "Bearer operator-key-123";
    let r: Value = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/recordings/{}",
            a["recording_id"].as_str().unwrap()
        ))
        .header("authorization", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        (
            r["source"].as_str(),
            r["external_id"].as_str(),
            r["tenant_id"].as_str()
        ),
        (Some("twilio"), Some("RE0001"), Some("acme"))
    );
    assert_eq!(r["call_id"], "CA11112222333344445555666677778888");
    assert_eq!(r["channels"], 1);
    assert_eq!(r["channel_roles"], json!(["agent", "customer"]));
    assert_eq!(r["conversation_metrics"]["overlap"], "indicative");
    assert_eq!(r["started_at"], "2026-12-03T09:00:00Z");
    env.cleanup().await;
}

async fn erasing_the_session_erases_the_recording(db: Db, store: Store) {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let env = spawn(db, store, &[&fake], "deepgram").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let (_, a) = upload(
        &base,
        std::fs::read(&wav).unwrap(),
        "call.wav",
        "audio/wav",
        json!({"call_id": "erase-me"}),
    )
    .await;
    let id = a["recording_id"].as_str().unwrap().to_string();
    work(&env).await;
    let (_, r) = get(&base, &format!("/api/v1/recordings/{id}")).await;
    let session = r["session_id"].as_str().unwrap().to_string();
    let r = reqwest::Client::new()
        .delete(format!("{base}/api/v1/sessions/{session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["removed"]["recordings"], 1, "{receipt}");
    assert_eq!(get(&base, &format!("/api/v1/recordings/{id}")).await.0, 404);
    assert_eq!(
        get(&base, &format!("/api/v1/recordings/{id}/audio"))
            .await
            .0,
        404
    );
    assert_eq!(env.count("recording_transcripts").await, 0);
    assert!(
        env.app
            .store
            .get(None, &r_key(&env, &id))
            .await
            .unwrap()
            .is_none(),
        "the original is gone"
    );
    env.cleanup().await;
}

fn r_key(env: &common::TestEnv, id: &str) -> String {
    call_insights::recordings::intake::object_key(
        &env.app.config.s3_prefix,
        "default",
        uuid::Uuid::parse_str(id).unwrap(),
        "wav",
    )
}

/// A replica killed (-9) mid-transcription: another takes the recording over after its lease and
/// finishes it once (one transcript version, one session, one derivation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_transcription_is_taken_over_and_finishes_once() {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    fake.set_latency(std::time::Duration::from_secs(30));
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let base_url = fake.base_url();
    let key = fake.config().api_key;
    let extra = |name: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("INSIGHTS_DEEPGRAM_API_KEY", key.clone()),
            ("INSIGHTS_DEEPGRAM_BASE_URL", base_url.clone()),
            ("INSIGHTS_RECORDING_LEASE_MS", "1500".into()),
            ("INSIGHTS_RECORDING_POLL_MS", "100".into()),
            ("INSIGHTS_CONSUMER_NAME", name.into()),
        ]
    };
    let refs = |v: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { v.clone() };
    let a = refs(&extra("replica-a"));
    let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = env.start_service(&a);
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let api = format!("http://{}", first.http_addr);
    let (status, accepted) = upload(
        &api,
        std::fs::read(&wav).unwrap(),
        "call.wav",
        "audio/wav",
        json!({"call_id": "killed"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["recording_id"].as_str().unwrap().to_string();
    common::eventually(30, "the transcription request in flight", || async {
        fake.requests()
            .iter()
            .any(|r| r.starts_with("POST /v1/listen"))
    })
    .await;
    first.signal("KILL");
    first.wait_exit().await;
    assert_eq!(env.count("call_sessions").await, 0);
    fake.set_latency(std::time::Duration::ZERO);
    let b = refs(&extra("replica-b"));
    let b: Vec<(&str, &str)> = b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let second = env.start_service(&b);
    let api = format!("http://{}", second.http_addr);
    common::eventually(
        60,
        "the recording completed by the second replica",
        || async {
            get(&api, &format!("/api/v1/recordings/{id}")).await.1["status"] == "completed"
        },
    )
    .await;
    assert_eq!(env.count("recording_transcripts").await, 1);
    assert_eq!(env.count("call_sessions").await, 1);
    let rows = env
        .rows("SELECT derivation_seq, attempts, claimed_by FROM recordings")
        .await;
    assert_eq!(rows[0]["derivation_seq"], 1, "{rows:?}");
    assert_eq!(
        rows[0]["attempts"], 2,
        "started by each replica once: {rows:?}"
    );
    assert!(second.log_lines("recording analysed") >= 1);
    drop(second);
    env.cleanup().await;
}

/// An upload over `INSIGHTS_RECORDING_MAX_BYTES` is refused with 413 and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_is_refused_with_413() {
    let fake = FakeTranscriber::start(ProviderId::Deepgram, Vec::new()).await;
    let cfg = fake.config();
    let env = common::spawn_with(Db::Sqlite, Store::Fs, move |c| {
        c.stt.providers = vec![cfg];
        c.recording_max_bytes = 3 << 20;
    })
    .await;
    let base = env.serve_api().await;
    // Over the API's own 1 MiB body limit, under the recording limit: accepted.
    let (status, a) = upload(&base, vec![7u8; 2 << 20], "big.wav", "audio/wav", json!({})).await;
    assert_eq!(status, 202, "{a}");
    let (status, e) = upload(
        &base,
        vec![7u8; 5 << 20],
        "huge.wav",
        "audio/wav",
        json!({}),
    )
    .await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["code"], "payload_too_large");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("INSIGHTS_RECORDING_MAX_BYTES"),
        "{e}"
    );
    assert_eq!(env.count("recordings").await, 1);
    let spool = env.app.recordings.settings.spool_dir.clone();
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no spooled file left in {}", spool.display());
    env.cleanup().await;
}

async fn imports_attachments_and_tenants(db: Db, store: Store) {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let cfg = fake.config();
    let env = common::spawn_with(db, store, move |c| {
        c.stt.providers = vec![cfg];
        c.api_keys = "acme-key-1234=acme,globex-key-1234=globex,operator-key-1234=*".into();
    })
    .await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let bytes = std::fs::read(&wav).unwrap();
    let client = reqwest::Client::new();
    let post = |key: &'static str, form: reqwest::multipart::Form| {
        client
            .post(format!("{base}/api/v1/recordings"))
            .header("authorization", format!("Bearer {key}"))
            .multipart(form)
            .send()
    };
    let form = |bytes: Vec<u8>, meta: Value| {
        reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name("call.wav"),
            )
            .text("metadata", meta.to_string())
    };
    // An agent already reported this call: the recording attaches to its session as its full-call
    // audio; the agent's turns stay, the recording's metrics are kept.
    env.publish_json(&common::report("agent-call-1", 1, true, 4))
        .await;
    env.drain(&mut env.consumer()).await;
    let agent_session = env.session("agent-call-1").await.unwrap();
    let r = post(
        "acme-key-1234",
        form(bytes.clone(), json!({"call_id": "agent-call-1"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        a["session_id"],
        agent_session.id.to_string(),
        "attached at once"
    );
    // A tenant key writes its own tenant only, and sees only its own recordings.
    let r = post(
        "acme-key-1234",
        form(bytes.clone(), json!({"tenant_id": "globex"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let mut other = bytes.clone();
    other.extend([0, 0]);
    let r = post("globex-key-1234", form(other, json!({})))
        .await
        .unwrap();
    let g: Value = r.json().await.unwrap();
    assert_eq!(
        work(&env).await,
        vec![RunResult::Completed, RunResult::Completed]
    );
    let get_as = |key: &'static str, path: String| {
        let c = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c
                .get(url)
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let id = a["recording_id"].as_str().unwrap();
    let (_, rec) = get_as("acme-key-1234", format!("/api/v1/recordings/{id}")).await;
    assert_eq!(
        (rec["attached"].as_bool(), rec["status"].as_str()),
        (Some(true), Some("completed")),
        "{rec}"
    );
    let (_, conv) = get_as(
        "acme-key-1234",
        format!("/api/v1/sessions/{}/conversation", agent_session.id),
    )
    .await;
    assert_eq!(
        conv["turns"].as_array().unwrap().len(),
        4,
        "the agent's turns stay"
    );
    let (_, s) = get_as(
        "acme-key-1234",
        format!("/api/v1/sessions/{}", agent_session.id),
    )
    .await;
    assert_eq!(s["recording_id"], id);
    assert_eq!(s["conversation_metrics"]["overlap"], "exact");
    assert_eq!(
        env.count("call_sessions").await,
        2,
        "no second session for the attached call"
    );
    let (status, _) = get_as("globex-key-1234", format!("/api/v1/recordings/{id}")).await;
    assert_eq!(status, 404, "another tenant's recording is not there");
    let (_, list) = get_as("globex-key-1234", "/api/v1/recordings".into()).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["recording_id"].as_str())
        .collect();
    assert_eq!(ids, vec![g["recording_id"].as_str().unwrap()]);
    let (_, all) = get_as("operator-key-1234", "/api/v1/recordings".into()).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    // A URL import to a private address is refused by the SSRF guard, with the reason; nothing is queued.
    for url in [
        "http://127.0.0.1:9/call.wav",
        "http://localhost/call.wav",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let r = client
            .post(format!("{base}/api/v1/recordings"))
            .header("authorization", "Bearer operator-key-1234")
            .json(&json!({"url": url, "tenant_id": "acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{url}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("recording URLs must be public"),
            "{e}"
        );
    }
    assert_eq!(env.count("recordings").await, 2);
    env.cleanup().await;
}

/// A URL import from a server the guard allows (private targets allowed, as webhooks are in tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_import_is_fetched_stored_and_analysed() {
    let call = scripted_call(false);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, call.script()).await;
    let cfg = fake.config();
    let env = common::spawn_with(Db::Postgres, Store::S3, move |c| {
        c.stt.providers = vec![cfg];
        c.webhooks.allow_private = true;
    })
    .await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let bytes = std::fs::read(&wav).unwrap();
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let served = bytes.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/calls/call.wav",
            axum::routing::get(move || {
                let b = served.clone();
                async move { ([("content-type", "audio/wav")], b) }
            }),
        );
        let _ = axum::serve(server, app).await;
    });
    let (status, a) = send(
        reqwest::Method::POST,
        &base,
        "/api/v1/recordings",
        json!({"url": format!("http://{addr}/calls/call.wav"), "call_id": "from-url"}),
    )
    .await;
    assert_eq!(status, 202, "{a}");
    assert_eq!(work(&env).await, vec![RunResult::Completed]);
    let (_, r) = get(
        &base,
        &format!("/api/v1/recordings/{}", a["recording_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["source"].as_str(),
            r["file_name"].as_str()
        ),
        (Some("completed"), Some("url"), Some("call.wav")),
        "{r}"
    );
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r["sha256"], sha);
    assert_eq!(r["size_bytes"], bytes.len());
    assert_metrics_match_quiet(&r["conversation_metrics"], &call);
    env.cleanup().await;
}

fn assert_metrics_match_quiet(m: &Value, call: &Call) {
    let talk = |party: usize| -> i64 {
        call.lines
            .iter()
            .filter(|l| l.0 == party)
            .map(|l| l.2 - l.1)
            .sum()
    };
    near(
        m["talk_time_ms"]["agent"].as_i64().unwrap(),
        talk(AGENT),
        "agent talk time",
    );
    near(
        m["talk_time_ms"]["customer"].as_i64().unwrap(),
        talk(CUSTOMER),
        "customer talk time",
    );
    near(m["dead_air_ms"].as_i64().unwrap(), 15_000, "dead air");
}

/// Every provider's fake: a 429 then a 500 are retried to a transcript; an answer in the wrong shape
/// fails the recording with a reason naming what was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_retries_transient_faults_and_names_a_malformed_answer() {
    let call = scripted_call(false);
    let ids = [
        ProviderId::Deepgram,
        ProviderId::Assemblyai,
        ProviderId::Gladia,
        ProviderId::Elevenlabs,
        ProviderId::Openai,
    ];
    let mut fakes = Vec::new();
    for id in ids {
        fakes.push(FakeTranscriber::start(id, call.script()).await);
    }
    let refs: Vec<&FakeTranscriber> = fakes.iter().collect();
    let env = spawn(Db::Sqlite, Store::Fs, &refs, "deepgram").await;
    let base = env.serve_api().await;
    let wav = tmp("call.wav");
    call.stereo_wav(&wav);
    let bytes = std::fs::read(&wav).unwrap();
    for (i, (id, fake)) in ids.iter().zip(&fakes).enumerate() {
        fake.push_fault(Fault::Status(429));
        fake.push_fault(Fault::Status(500));
        let mut ok = bytes.clone();
        ok.extend(vec![0u8; 2 * i + 2]);
        let (status, a) = upload(
            &base,
            ok,
            "call.wav",
            "audio/wav",
            json!({"provider": id.as_str()}),
        )
        .await;
        assert_eq!(status, 202, "{id}: {a}");
        assert_eq!(work(&env).await, vec![RunResult::Completed], "{id}");
        fake.push_fault(Fault::Malformed);
        let mut bad = bytes.clone();
        bad.extend(vec![0u8; 2 * i + 12]);
        let (_, b) = upload(
            &base,
            bad,
            "call.wav",
            "audio/wav",
            json!({"provider": id.as_str()}),
        )
        .await;
        let results = work(&env).await;
        assert!(
            matches!(&results[..], [RunResult::Failed(why)] if why.contains("transcription failed")),
            "{id}: {results:?}"
        );
        let (_, b) = get(
            &base,
            &format!("/api/v1/recordings/{}", b["recording_id"].as_str().unwrap()),
        )
        .await;
        let why = b["transcripts"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            why.contains("Malformed") || why.contains("no "),
            "{id}: a reason: {why}"
        );
    }
    env.cleanup().await;
}

on_both_stacks!(
    imports_attachments_and_tenants,
    a_recorded_call_becomes_a_session_with_turns_metrics_and_diagnosis,
    every_provider_transcribes_with_speakers,
    bad_files_fail_with_a_reason_and_touch_nothing_else,
    provider_faults_are_retried_or_fail_clearly,
    retranscription_makes_versions_and_the_record_and_roles_can_change,
    twilio_callbacks_are_verified_and_fetch_the_media_once,
    erasing_the_session_erases_the_recording,
);
