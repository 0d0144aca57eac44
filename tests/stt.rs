//! Each provider client against its loopback fake: the wire format, typed errors with the
//! provider's message, retries of 429/5xx honouring Retry-After, no retry of 4xx, timeouts, malformed
//! answers, the process-wide concurrency bound — and the fakes refusing what the real APIs refuse.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::audio::encode_wav_i16;
use call_insights::stt::{
    ProviderConfig, ProviderId, SttConfig, SttErrorKind, SttProviders, SttRequest,
};
use std::time::Duration;
use testkit::stt::{FakeProvider, Fault};

fn tone_request(ms: usize) -> SttRequest {
    let s: Vec<f32> = (0..16 * ms).map(|i| 0.3 * (i as f32 * 0.1).sin()).collect();
    SttRequest {
        wav: encode_wav_i16(&s, 16000).into(),
        language: Some("en".into()),
    }
}

fn client(config: ProviderConfig) -> call_insights::stt::BoundedProvider {
    SttProviders::from_config(&SttConfig {
        providers: vec![config],
        language: Some("en".into()),
    })
    .unwrap()
    .all()[0]
        .clone()
}

async fn all_fakes() -> Vec<FakeProvider> {
    FakeProvider::start_all().await.unwrap()
}

#[tokio::test]
async fn each_client_speaks_its_providers_wire_format() {
    for fake in all_fakes().await {
        fake.set_transcript("Book me a table for two.");
        let t = client(fake.config()).transcribe(&tone_request(800)).await;
        let t = t.unwrap_or_else(|e| panic!("{}: {e}", fake.id()));
        assert_eq!(t.provider, fake.id());
        assert_eq!(t.transcript, "Book me a table for two.");
        assert_eq!(t.attempts, 1);
        assert!(t.latency_ms >= t.time_to_headers_ms && t.total_ms >= t.latency_ms - 1e-6);
        // gpt-4o-transcribe answers `json` (text + token logprobs): no word timings.
        let want_words = if fake.id() == ProviderId::Openai {
            0
        } else {
            6
        };
        assert_eq!(
            t.words.len(),
            want_words,
            "{}: words with timings",
            fake.id()
        );
        assert!(
            t.words
                .iter()
                .all(|w| w.start_s.is_some() && w.end_s.is_some())
        );
        let expected_confidence = match fake.id() {
            ProviderId::Cartesia => None,
            _ => Some(0.9),
        };
        assert_eq!(
            t.confidence.map(|c| (c.value * 1e9).round() / 1e9),
            expected_confidence,
            "{}",
            fake.id()
        );
        let paths: Vec<String> = fake
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let want: Vec<&str> = match fake.id() {
            ProviderId::Groq => vec!["POST /openai/v1/audio/transcriptions"],
            ProviderId::Deepgram => vec!["POST /v1/listen"],
            ProviderId::Cartesia => vec!["POST /stt"],
            ProviderId::Elevenlabs => vec!["POST /v1/speech-to-text"],
            ProviderId::Openai => vec!["POST /v1/audio/transcriptions"],
            ProviderId::Gladia => vec!["POST /v2/upload", "POST /v2/pre-recorded"],
            ProviderId::Assemblyai => unreachable!("not a clip replay provider"),
        };
        assert_eq!(&paths[..want.len()], want.as_slice(), "{}", fake.id());
        if fake.id() == ProviderId::Gladia {
            assert!(
                paths[2..]
                    .iter()
                    .all(|p| p.starts_with("GET /v2/pre-recorded/"))
            );
            let phases = t.phases.unwrap();
            assert!(phases.polls >= 1);
        }
    }
}

#[tokio::test]
async fn whisper_family_models_on_openai_compatible_servers_get_verbose_json() {
    let fake = FakeProvider::start(ProviderId::Openai).await.unwrap();
    fake.set_transcript("one two three");
    let mut config = fake.config();
    config.model = "whisper-1".into();
    let t = client(config).transcribe(&tone_request(600)).await.unwrap();
    assert_eq!(t.words.len(), 3);
    assert_eq!(t.language.as_deref(), Some("en"));
    assert_eq!(
        t.confidence.unwrap().source,
        call_insights::stt::ConfidenceSource::SegmentLogprob
    );
    let r = &fake.requests()[0];
    assert!(
        r.values
            .contains(&("response_format".into(), "verbose_json".into())),
        "{r:?}"
    );
    assert!(!r.fields.contains(&"include[]".to_string()));
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_with_the_providers_message_and_no_retry() {
    for fake in all_fakes().await {
        let mut config = fake.config();
        config.api_key = "wrong".into();
        let e = client(config)
            .transcribe(&tone_request(300))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status, e.attempts),
            (SttErrorKind::Auth, Some(401), 1),
            "{e}"
        );
        assert!(
            e.message.contains("invalid"),
            "the provider's own message: {e}"
        );
        assert_eq!(
            fake.requests().len(),
            1,
            "{}: 401 is never retried",
            fake.id()
        );
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_wait_the_provider_asked_for() {
    let fakes = all_fakes().await;
    let runs = fakes.iter().map(|fake| async move {
        let wait = Duration::from_millis(if fake.id() == ProviderId::Openai {
            300
        } else {
            1000
        });
        fake.push_fault(Fault::RateLimited { retry_after: wait });
        let t = client(fake.config())
            .transcribe(&tone_request(300))
            .await
            .unwrap();
        assert_eq!(t.attempts, 2, "{}", fake.id());
        let r = fake.requests();
        assert_eq!(r[0].status, 429);
        let gap = r[1].received - r[0].received;
        assert!(
            gap >= wait,
            "{}: retried after {gap:?}, asked for {wait:?}",
            fake.id()
        );
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn server_errors_and_unhinted_429s_are_retried_with_backoff_client_errors_never() {
    for fake in all_fakes().await {
        fake.push_fault(Fault::ServerError);
        fake.push_fault(Fault::RateLimitedNoHint);
        let t = client(fake.config())
            .transcribe(&tone_request(300))
            .await
            .unwrap();
        assert_eq!(t.attempts, 3, "{}", fake.id());
        for (status, kind) in [
            (400, SttErrorKind::BadRequest),
            (422, SttErrorKind::BadRequest),
            (403, SttErrorKind::Auth),
        ] {
            let before = fake.requests().len();
            fake.push_fault(Fault::Status(status));
            let e = client(fake.config())
                .transcribe(&tone_request(300))
                .await
                .unwrap_err();
            assert_eq!(
                (e.kind, e.status, e.attempts),
                (kind, Some(status), 1),
                "{}: {e}",
                fake.id()
            );
            assert_eq!(
                fake.requests().len(),
                before + 1,
                "{}: {status} is not retried",
                fake.id()
            );
        }
        for _ in 0..4 {
            fake.push_fault(Fault::ServerError);
        }
        let e = client(fake.config())
            .transcribe(&tone_request(300))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status, e.attempts),
            (SttErrorKind::Server, Some(503), 4),
            "{e}"
        );
        assert!(!e.message.is_empty());
    }
}

#[tokio::test]
async fn malformed_answers_and_slow_providers_are_typed_errors() {
    for fake in all_fakes().await {
        fake.push_fault(Fault::Malformed);
        let e = client(fake.config())
            .transcribe(&tone_request(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SttErrorKind::Malformed, "{}: {e}", fake.id());
        fake.push_fault(Fault::Slow(Duration::from_secs(3)));
        let mut config = fake.config();
        config.timeout = Duration::from_millis(300);
        let e = client(config)
            .transcribe(&tone_request(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SttErrorKind::Timeout, "{}: {e}", fake.id());
    }
}

#[tokio::test]
async fn a_connection_reset_mid_answer_is_retried_like_a_5xx() {
    for fake in all_fakes().await {
        fake.set_transcript("hello there");
        fake.push_fault(Fault::Reset);
        let before = fake.requests().len();
        let t = client(fake.config())
            .transcribe(&tone_request(300))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", fake.id()));
        assert_eq!(t.transcript, "hello there", "{}", fake.id());
        assert!(
            fake.requests().len() > before + 1 || t.attempts == 2,
            "{}: the reset attempt was retried",
            fake.id()
        );
        // Without retries left, the reset is a network error naming the cause.
        fake.push_fault(Fault::Reset);
        let mut config = fake.config();
        config.retry.max_retries = 0;
        let e = client(config)
            .transcribe(&tone_request(300))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.attempts),
            (SttErrorKind::Network, 1),
            "{}: {e}",
            fake.id()
        );
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_a_network_error() {
    let mut config = ProviderConfig::new(ProviderId::Groq, "k", "http://127.0.0.1:9");
    config.retry.max_retries = 1;
    config.retry.base_delay = Duration::from_millis(5);
    let e = client(config)
        .transcribe(&tone_request(100))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.attempts), (SttErrorKind::Network, 2), "{e}");
}

#[tokio::test]
async fn the_process_wide_bound_keeps_calls_within_the_providers_concurrency() {
    let fake = FakeProvider::start(ProviderId::Cartesia).await.unwrap();
    fake.set_latency(Duration::from_millis(50));
    // The fake answers 429 to a third concurrent request; the client must never send one.
    fake.set_concurrency_limit(2);
    let mut config = fake.config();
    config.concurrency = 2;
    config.retry.max_retries = 0;
    let provider = client(config);
    let request = tone_request(200);
    let calls = (0..8).map(|_| provider.transcribe(&request));
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert!(fake.requests().iter().all(|r| r.status == 200));
    assert_eq!(fake.transcriptions(), 8);
}

/// Raw requests that drift from each real API, which the fakes must refuse.
#[tokio::test]
async fn the_fakes_refuse_what_the_real_apis_refuse() {
    use reqwest::multipart::{Form, Part};
    let fakes = all_fakes().await;
    let f = |id: ProviderId| fakes.iter().find(|f| f.id() == id).unwrap();
    let wav = || {
        Part::bytes(encode_wav_i16(&[0.1; 1600], 16000))
            .file_name("turn.wav")
            .mime_str("audio/wav")
            .unwrap()
    };
    let http = reqwest::Client::new();
    let groq = f(ProviderId::Groq);
    let url = format!("{}/openai/v1/audio/transcriptions", groq.base_url());
    let send = |form: Form, auth: &str| {
        http.post(&url)
            .header("authorization", auth.to_string())
            .multipart(form)
            .send()
    };
    let bearer = format!("Bearer {}", groq.api_key());
    // Array field without brackets.
    let r = send(
        Form::new()
            .part("file", wav())
            .text("model", "m")
            .text("response_format", "verbose_json")
            .text("timestamp_granularities", "word"),
        &bearer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("timestamp_granularities"));
    // No file extension, missing model, wrong auth scheme.
    let r = send(
        Form::new()
            .part(
                "file",
                Part::bytes(encode_wav_i16(&[0.1; 1600], 16000)).file_name("turn"),
            )
            .text("model", "m"),
        &bearer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = send(Form::new().part("file", wav()), &bearer)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = send(
        Form::new().part("file", wav()).text("model", "m"),
        &format!("Token {}", groq.api_key()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // Deepgram: Token scheme and an audio content type.
    let dg = f(ProviderId::Deepgram);
    let listen = format!("{}/v1/listen?model=nova-3", dg.base_url());
    let body = encode_wav_i16(&[0.1; 1600], 16000);
    let r = http
        .post(&listen)
        .bearer_auth(dg.api_key())
        .header("content-type", "audio/wav")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&listen)
        .header("authorization", format!("Token {}", dg.api_key()))
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = http
        .post(format!("{}/v1/listen", dg.base_url()))
        .header("authorization", format!("Token {}", dg.api_key()))
        .header("content-type", "audio/wav")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "model is required");
    // ElevenLabs: `model_id`, not `model`.
    let el = f(ProviderId::Elevenlabs);
    let r = http
        .post(format!("{}/v1/speech-to-text", el.base_url()))
        .header("xi-api-key", el.api_key())
        .multipart(Form::new().part("file", wav()).text("model", "scribe_v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Cartesia: the version header is required.
    let ca = f(ProviderId::Cartesia);
    let r = http
        .post(format!("{}/stt", ca.base_url()))
        .bearer_auth(ca.api_key())
        .multipart(Form::new().part("file", wav()).text("model", "ink-whisper"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Gladia: the upload field is `audio`; a job needs an uploaded URL.
    let gl = f(ProviderId::Gladia);
    let r = http
        .post(format!("{}/v2/upload", gl.base_url()))
        .header("x-gladia-key", gl.api_key())
        .multipart(Form::new().part("file", wav()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/v2/pre-recorded", gl.base_url()))
        .header("x-gladia-key", gl.api_key())
        .json(&serde_json::json!({"audio_url": "https://elsewhere/x.wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // OpenAI: verbose_json is not available for gpt-4o models; unknown paths are 404.
    let oa = f(ProviderId::Openai);
    let r = http
        .post(format!("{}/audio/transcriptions", oa.base_url()))
        .bearer_auth(oa.api_key())
        .multipart(
            Form::new()
                .part("file", wav())
                .text("model", "gpt-4o-transcribe")
                .text("response_format", "verbose_json"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/audio/translations", oa.base_url()))
        .bearer_auth(oa.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
