//! Loopback fakes for recordings: each transcription provider's batch API in its own wire format
//! (Deepgram, AssemblyAI upload → job → poll, Gladia v2 upload → job → poll, ElevenLabs Scribe,
//! OpenAI-compatible per-channel), and Twilio's media server (Basic auth, 404 while the media is not
//! ready, 400 for a dual-channel request on a mono file).
//!
//! The fakes "hear" the audio they are sent: it is decoded and each channel's speech regions found
//! from its level envelope; the script's utterances are laid over those regions in order, words spread
//! evenly. So timings come from the bytes the service sent, not from the script.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use call_insights::recordings::decode;
use call_insights::stt::{ProviderConfig, ProviderId};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted utterance: who says it (channel on a multi-channel file, speaker on mono).
#[derive(Debug, Clone)]
pub struct Utterance {
    pub party: usize,
    pub text: String,
}

/// A fault the next request gets.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// 200 with a body that is not the provider's shape.
    Malformed,
}

#[derive(Debug, Clone)]
pub struct Word {
    pub text: String,
    pub start: f64,
    pub end: f64,
    pub party: usize,
}

struct State {
    id: ProviderId,
    key: String,
    script: Vec<Utterance>,
    faults: VecDeque<Fault>,
    uploads: HashMap<String, Bytes>,
    jobs: HashMap<String, (Vec<Word>, usize, u32)>,
    requests: Vec<String>,
    latency: Duration,
    transcriptions: u64,
}

pub struct FakeTranscriber {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

fn lock(s: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Speech regions of every channel at sample resolution, in one decoding pass: samples louder than
/// 600 (of 32767), joined across gaps under 600 ms, each at least 150 ms. Milliseconds.
fn all_regions(path: &std::path::Path) -> Vec<Vec<(i64, i64)>> {
    let mut spans: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut rate = 0u32;
    let mut frame = 0usize;
    let r = decode::decode_with(path, None, |block, ch, r| {
        rate = r;
        if spans.len() != ch {
            spans = vec![Vec::new(); ch];
        }
        let join = (f64::from(r) * 0.6) as usize;
        for f in block.chunks_exact(ch) {
            for (c, v) in f.iter().enumerate() {
                if (v.abs() * 32767.0) <= 600.0 {
                    continue;
                }
                match spans[c].last_mut() {
                    Some(last) if frame - last.1 < join => last.1 = frame + 1,
                    _ => spans[c].push((frame, frame + 1)),
                }
            }
            frame += 1;
        }
        Ok(())
    });
    if r.is_err() || rate == 0 {
        return Vec::new();
    }
    let ms = |i: usize| (i as f64 * 1000.0 / f64::from(rate)).round() as i64;
    let min = (f64::from(rate) * 0.15) as usize;
    spans
        .into_iter()
        .map(|c| {
            c.into_iter()
                .filter(|(a, b)| b - a >= min)
                .map(|(a, b)| (ms(a), ms(b)))
                .collect()
        })
        .collect()
}

/// Words the fake hears in `audio`: per channel (channel-separated) or on channel 0 (diarized).
pub fn hear(
    audio: &[u8],
    script: &[Utterance],
    per_channel: bool,
    only_channel: Option<usize>,
) -> (Vec<Word>, usize) {
    let dir = std::env::temp_dir().join(format!("fake-stt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audio");
    std::fs::write(&path, audio).unwrap();
    let regions = all_regions(&path);
    let channels = regions.len();
    if channels == 0 {
        let _ = std::fs::remove_dir_all(&dir);
        return (Vec::new(), 0);
    }
    let mut words = Vec::new();
    let lay = |region: (i64, i64), u: &Utterance, words: &mut Vec<Word>| {
        let ws: Vec<&str> = u.text.split_whitespace().collect();
        let (s, e) = (region.0 as f64 / 1000.0, region.1 as f64 / 1000.0);
        let d = (e - s) / ws.len().max(1) as f64;
        for (i, w) in ws.iter().enumerate() {
            words.push(Word {
                text: w.to_string(),
                start: s + i as f64 * d,
                end: s + (i + 1) as f64 * d,
                party: u.party,
            });
        }
    };
    if per_channel && channels > 1 {
        for (c, heard) in regions.iter().enumerate() {
            let mine: Vec<&Utterance> = script.iter().filter(|u| u.party == c).collect();
            for (r, u) in heard.iter().copied().zip(mine) {
                lay(r, u, &mut words);
            }
        }
    } else if let Some(c) = only_channel {
        let mine: Vec<&Utterance> = script.iter().filter(|u| u.party == c).collect();
        for (r, u) in regions[0].clone().into_iter().zip(mine) {
            let mut u = u.clone();
            u.party = c;
            lay(r, &u, &mut words);
        }
    } else {
        for (r, u) in regions[0].clone().into_iter().zip(script) {
            lay(r, u, &mut words);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    words.sort_by(|a, b| a.start.total_cmp(&b.start));
    (words, channels)
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl FakeTranscriber {
    pub async fn start(id: ProviderId, script: Vec<Utterance>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            id,
            key: format!("{}-test-key", id.as_str()),
            script,
            faults: VecDeque::new(),
            uploads: HashMap::new(),
            jobs: HashMap::new(),
            requests: Vec::new(),
            latency: Duration::ZERO,
            transcriptions: 0,
        }));
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |req: Request| handle(shared.clone(), req))
            .layer(axum::extract::DefaultBodyLimit::max(200 << 20));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTranscriber { addr, state }
    }

    pub fn base_url(&self) -> String {
        match lock(&self.state).id {
            ProviderId::Openai => format!("http://{}/v1", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    pub fn config(&self) -> ProviderConfig {
        let base = self.base_url();
        let s = lock(&self.state);
        let mut c = ProviderConfig::new(s.id, &s.key, &base);
        c.retry.base_delay = Duration::from_millis(20);
        c.retry.max_delay = Duration::from_millis(200);
        c.poll_interval = Duration::from_millis(20);
        c
    }

    pub fn push_fault(&self, f: Fault) {
        lock(&self.state).faults.push_back(f);
    }

    pub fn set_latency(&self, d: Duration) {
        lock(&self.state).latency = d;
    }

    pub fn set_script(&self, script: Vec<Utterance>) {
        lock(&self.state).script = script;
    }

    /// `METHOD path?query` of every request.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    pub fn transcriptions(&self) -> u64 {
        lock(&self.state).transcriptions
    }
}

fn json_response(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        code,
        axum::Json(json!({"error": format!("fake error {status}"), "err_msg": "fake"})),
    )
        .into_response();
    if status == 429 {
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
    }
    r
}

async fn multipart_parts(req: Request) -> HashMap<String, (Option<String>, Bytes)> {
    let mut out = HashMap::new();
    let Ok(mut m) = Multipart::from_request(req, &()).await else {
        return out;
    };
    while let Ok(Some(f)) = m.next_field().await {
        let name = f.name().unwrap_or("").to_string();
        let file_name = f.file_name().map(str::to_string);
        let bytes = f.bytes().await.unwrap_or_default();
        out.insert(name, (file_name, bytes));
    }
    out
}

fn authorised(id: ProviderId, key: &str, h: &HeaderMap) -> bool {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    match id {
        ProviderId::Deepgram => get("authorization") == format!("Token {key}"),
        ProviderId::Assemblyai => get("authorization") == key,
        ProviderId::Gladia => get("x-gladia-key") == key,
        ProviderId::Elevenlabs => get("xi-api-key") == key,
        _ => get("authorization") == format!("Bearer {key}"),
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request) -> Response {
    // The whole body first, as a real server does before it answers: a fault answered while the
    // client is still sending would break the connection instead of delivering the fault.
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let (id, key, latency, fault) = {
        let mut s = lock(&state);
        s.requests.push(format!("{method} {path}?{query}"));
        (s.id, s.key.clone(), s.latency, s.faults.pop_front())
    };
    if !authorised(id, &key, req.headers()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "Invalid API key"})),
        )
            .into_response();
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Status(s)) => return error(s),
        Some(Fault::Malformed) => return json_response(json!({"unexpected": "shape"})),
        None => {}
    }
    let q: HashMap<String, String> = serde_urlencoded::from_str(&query).unwrap_or_default();
    match (id, method.as_str(), path.as_str()) {
        (ProviderId::Deepgram, "POST", "/v1/listen") => {
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let multi = q.get("multichannel").is_some_and(|v| v == "true");
            let script = lock(&state).script.clone();
            let (words, channels) = hear(&body, &script, multi, None);
            lock(&state).transcriptions += 1;
            let n = if multi { channels.max(1) } else { 1 };
            let chans: Vec<Value> = (0..n)
                .map(|c| {
                    let ws: Vec<Value> = words
                        .iter()
                        .filter(|w| !multi || w.party == c)
                        .map(|w| {
                            let mut o = json!({"word": w.text.to_lowercase(), "punctuated_word": w.text, "start": r3(w.start), "end": r3(w.end), "confidence": 0.93});
                            if !multi {
                                o["speaker"] = json!(w.party);
                            }
                            o
                        })
                        .collect();
                    let text: Vec<&str> = words.iter().filter(|w| !multi || w.party == c).map(|w| w.text.as_str()).collect();
                    json!({"alternatives": [{"transcript": text.join(" "), "confidence": 0.93, "words": ws}]})
                })
                .collect();
            json_response(
                json!({"metadata": {"request_id": uuid::Uuid::new_v4().to_string(), "channels": n, "duration": 0.0, "model_info": {}}, "results": {"channels": chans}}),
            )
        }
        (ProviderId::Assemblyai, "POST", "/v2/upload") => {
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let up = uuid::Uuid::new_v4().simple().to_string();
            lock(&state).uploads.insert(up.clone(), body);
            json_response(json!({"upload_url": format!("https://cdn.assemblyai.com/upload/{up}")}))
        }
        (ProviderId::Assemblyai, "POST", "/v2/transcript") => {
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let up = v["audio_url"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let Some(audio) = lock(&state).uploads.get(&up).cloned() else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "audio_url is not an upload of this account"})),
                )
                    .into_response();
            };
            let multi = v["multichannel"].as_bool().unwrap_or(false);
            let script = lock(&state).script.clone();
            let (words, channels) = hear(&audio, &script, multi, None);
            let job = uuid::Uuid::new_v4().to_string();
            let mut s = lock(&state);
            s.transcriptions += 1;
            s.jobs
                .insert(job.clone(), (words, if multi { channels } else { 1 }, 0));
            json_response(json!({"id": job, "status": "queued"}))
        }
        (ProviderId::Assemblyai, "GET", p) if p.starts_with("/v2/transcript/") => {
            let job = p.trim_start_matches("/v2/transcript/").to_string();
            let mut s = lock(&state);
            let Some((words, channels, polls)) = s.jobs.get_mut(&job) else {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "Transcript not found"})),
                )
                    .into_response();
            };
            *polls += 1;
            if *polls < 2 {
                return json_response(json!({"id": job, "status": "processing"}));
            }
            let multi = *channels > 1;
            let ws: Vec<Value> = words
                .iter()
                .map(|w| {
                    let mut o = json!({"text": w.text, "start": (w.start * 1000.0).round() as i64, "end": (w.end * 1000.0).round() as i64, "confidence": 0.91});
                    if multi {
                        o["channel"] = json!((w.party + 1).to_string());
                        o["speaker"] = json!(format!("{}A", w.party + 1));
                    } else {
                        o["speaker"] = json!(["A", "B", "C", "D"][w.party.min(3)]);
                    }
                    o
                })
                .collect();
            let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
            json_response(
                json!({"id": job, "status": "completed", "text": text.join(" "), "words": ws, "audio_channels": channels, "language_code": "en"}),
            )
        }
        (ProviderId::Gladia, "POST", "/v2/upload") => {
            let parts = multipart_parts(req).await;
            let Some((_, audio)) = parts.get("audio").cloned() else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"message": "no audio part"})),
                )
                    .into_response();
            };
            let up = uuid::Uuid::new_v4().simple().to_string();
            lock(&state).uploads.insert(up.clone(), audio);
            json_response(
                json!({"audio_url": format!("https://api.gladia.io/file/{up}"), "audio_metadata": {}}),
            )
        }
        (ProviderId::Gladia, "POST", "/v2/pre-recorded") => {
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let up = v["audio_url"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let Some(audio) = lock(&state).uploads.get(&up).cloned() else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"message": "unknown audio_url"})),
                )
                    .into_response();
            };
            let diarized = v["diarization"].as_bool().unwrap_or(false);
            let script = lock(&state).script.clone();
            let (words, channels) = hear(&audio, &script, !diarized, None);
            let job = uuid::Uuid::new_v4().to_string();
            let mut s = lock(&state);
            s.transcriptions += 1;
            s.jobs.insert(job.clone(), (words, channels, 0));
            json_response(
                json!({"id": job, "result_url": format!("https://api.gladia.io/v2/pre-recorded/{job}")}),
            )
        }
        (ProviderId::Gladia, "GET", p) if p.starts_with("/v2/pre-recorded/") => {
            let job = p.trim_start_matches("/v2/pre-recorded/").to_string();
            let mut s = lock(&state);
            let Some((words, channels, polls)) = s.jobs.get_mut(&job) else {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"message": "not found"})),
                )
                    .into_response();
            };
            *polls += 1;
            if *polls < 2 {
                return json_response(json!({"id": job, "status": "processing"}));
            }
            let multi = *channels > 1;
            // One utterance per word run of a party.
            let mut utterances: Vec<Value> = Vec::new();
            let mut run: Vec<&Word> = Vec::new();
            let flush = |run: &mut Vec<&Word>, out: &mut Vec<Value>| {
                if let (Some(f), Some(l)) = (run.first(), run.last()) {
                    let ws: Vec<Value> = run.iter().map(|w| json!({"word": format!(" {}", w.text), "start": r3(w.start), "end": r3(w.end), "confidence": 0.9})).collect();
                    let text: Vec<&str> = run.iter().map(|w| w.text.as_str()).collect();
                    let mut u = json!({"start": r3(f.start), "end": r3(l.end), "confidence": 0.9, "text": text.join(" "), "language": "en", "words": ws, "channel": if multi { f.party } else { 0 }});
                    if !multi {
                        u["speaker"] = json!(f.party);
                    }
                    out.push(u);
                }
                run.clear();
            };
            let mut sorted: Vec<&Word> = words.iter().collect();
            sorted.sort_by(|a, b| {
                (a.party, a.start)
                    .partial_cmp(&(b.party, b.start))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            for w in sorted {
                if run
                    .last()
                    .is_some_and(|l| l.party != w.party || w.start - l.end > 0.5)
                {
                    flush(&mut run, &mut utterances);
                }
                run.push(w);
            }
            flush(&mut run, &mut utterances);
            json_response(
                json!({"id": job, "status": "done", "result": {"transcription": {"utterances": utterances, "full_transcript": ""}}}),
            )
        }
        (ProviderId::Elevenlabs, "POST", "/v1/speech-to-text") => {
            let parts = multipart_parts(req).await;
            let Some((_, audio)) = parts.get("file").cloned() else {
                return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": {"status": "invalid_content", "message": "file is required"}}))).into_response();
            };
            let multi = parts
                .get("use_multi_channel")
                .is_some_and(|(_, v)| v.as_ref() == b"true");
            let script = lock(&state).script.clone();
            let (words, channels) = hear(&audio, &script, multi, None);
            lock(&state).transcriptions += 1;
            let render = |ws: Vec<&Word>| -> Vec<Value> {
                let mut out = Vec::new();
                for (i, w) in ws.iter().enumerate() {
                    if i > 0 {
                        out.push(json!({"text": " ", "start": r3(w.start), "end": r3(w.start), "type": "spacing", "speaker_id": format!("speaker_{}", w.party)}));
                    }
                    out.push(json!({"text": w.text, "start": r3(w.start), "end": r3(w.end), "type": "word", "speaker_id": format!("speaker_{}", w.party), "logprob": -0.1}));
                }
                out
            };
            if multi {
                let ts: Vec<Value> = (0..channels)
                    .map(|c| json!({"channel_index": c, "language_code": "eng", "text": "", "words": render(words.iter().filter(|w| w.party == c).collect())}))
                    .collect();
                json_response(json!({"transcripts": ts}))
            } else {
                json_response(
                    json!({"language_code": "eng", "language_probability": 0.99, "text": "", "words": render(words.iter().collect())}),
                )
            }
        }
        (ProviderId::Openai, "POST", "/v1/audio/transcriptions") => {
            let parts = multipart_parts(req).await;
            let Some((name, audio)) = parts.get("file").cloned() else {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "file is required", "type": "invalid_request_error"}}))).into_response();
            };
            let channel = name
                .as_deref()
                .and_then(|n| n.strip_prefix("channel-"))
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            let script = lock(&state).script.clone();
            let (words, _) = hear(&audio, &script, false, channel);
            lock(&state).transcriptions += 1;
            let ws: Vec<Value> = words
                .iter()
                .map(|w| json!({"word": w.text, "start": r3(w.start), "end": r3(w.end)}))
                .collect();
            let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
            json_response(
                json!({"task": "transcribe", "language": "english", "duration": 0.0, "text": text.join(" "), "words": ws, "segments": []}),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no route {method} {path}")})),
        )
            .into_response(),
    }
}

/// Twilio's media server for one recording.
pub struct FakeTwilio {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<TwilioState>>,
}

struct TwilioState {
    sid: String,
    token: String,
    recording_sid: String,
    dual: Option<Bytes>,
    mono: Bytes,
    not_ready: u32,
    requests: Vec<String>,
}

impl FakeTwilio {
    /// Serves `dual` (when Twilio has a dual-channel file) and `mono` for `recording_sid`.
    pub async fn start(
        sid: &str,
        token: &str,
        recording_sid: &str,
        dual: Option<Vec<u8>>,
        mono: Vec<u8>,
        not_ready: u32,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(TwilioState {
            sid: sid.into(),
            token: token.into(),
            recording_sid: recording_sid.into(),
            dual: dual.map(Bytes::from),
            mono: Bytes::from(mono),
            not_ready,
            requests: Vec::new(),
        }));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |req: Request| twilio(shared.clone(), req));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTwilio { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }
}

async fn twilio(state: Arc<Mutex<TwilioState>>, req: Request) -> Response {
    use base64::Engine;
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    s.requests.push(format!("{path}?{query}"));
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.sid, s.token))
    );
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 20003, "message": "Authenticate", "status": 401})),
        )
            .into_response();
    }
    let want = format!(
        "/2010-04-01/Accounts/{}/Recordings/{}.wav",
        s.sid, s.recording_sid
    );
    if path != want {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404}))).into_response();
    }
    if s.not_ready > 0 {
        s.not_ready -= 1;
        return (StatusCode::NOT_FOUND, axum::Json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404}))).into_response();
    }
    let dual = query.contains("RequestedChannels=2");
    let body = match (dual, &s.dual) {
        (true, Some(d)) => d.clone(),
        (true, None) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"code": 20001, "message": "Recording does not have dual channels", "status": 400}))).into_response();
        }
        (false, _) => s.mono.clone(),
    };
    ([("content-type", "audio/x-wav")], body).into_response()
}
