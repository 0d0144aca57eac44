//! Loopback fakes of every STT provider, for tests and benchmarks (never a real provider host).
//! Each checks what the real API checks — path, method, the auth header and its scheme, multipart
//! field names (unknown ones are refused, as strict validators do), the raw body and its content
//! type, required parameters, Gladia's upload → create → poll sequence — and answers with the
//! provider's real response and error shapes. On demand: a fixed latency, a scripted transcript,
//! a concurrency limit answered with the provider's 429, and queued faults (429 with Retry-After,
//! 5xx, a slow answer, a malformed body, any status).

// Handlers short-circuit with the provider's error response as the `Err` value; its size is irrelevant
// on this test-only path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use call_insights::audio::decode_wav;
use call_insights::stt::{ProviderConfig, ProviderId};

/// What a fake heard: the decoded audio a script can key its transcript on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeAudio {
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: f64,
    /// RMS of the mono signal, full scale 1.0.
    pub rms: f64,
    pub bytes: usize,
}

/// Maps the audio a fake received to the transcript it answers.
pub type Script = Arc<dyn Fn(&FakeAudio) -> String + Send + Sync>;

/// Decides, from the audio, whether to fail this request with a status (a provider error in a
/// chosen cell of a replay grid).
pub type FailWhen = Arc<dyn Fn(&FakeAudio) -> Option<u16> + Send + Sync>;

/// A misbehaviour for the next request (queued, one per request).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 in the provider's shape with `retry-after` (seconds, rounded up) — and `retry-after-ms`
    /// for OpenAI, which sends both.
    RateLimited { retry_after: Duration },
    /// 429 without any Retry-After header (the client must back off by itself).
    RateLimitedNoHint,
    /// 503 in the provider's shape.
    ServerError,
    /// HTTP 200 with a truncated JSON body.
    Malformed,
    /// Waits this long before answering normally.
    Slow(Duration),
    /// Any status, with the provider's error shape for it.
    Status(u16),
    /// Headers, then the connection reset mid-body (as a load balancer does to an idle keep-alive
    /// connection it reaps).
    Reset,
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Multipart field names in order (file fields included), or JSON keys for JSON bodies.
    pub fields: Vec<String>,
    /// Multipart text fields as (name, value).
    pub values: Vec<(String, String)>,
    pub status: u16,
    pub received: Instant,
}

struct GladiaJob {
    audio: FakeAudio,
    created: Instant,
    language: Option<String>,
}

struct State {
    id: ProviderId,
    api_key: String,
    latency: Mutex<Duration>,
    script: Mutex<Script>,
    fail_when: Mutex<Option<FailWhen>>,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    confidence: Mutex<f64>,
    concurrency_limit: AtomicUsize,
    in_flight: AtomicUsize,
    transcriptions: AtomicU64,
    next_id: AtomicU64,
    uploads: Mutex<HashMap<String, FakeAudio>>,
    jobs: Mutex<HashMap<String, GladiaJob>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` on `listener` until the returned sender is dropped (the loopback fakes' lifetime).
pub fn serve_until_dropped(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

/// A running fake provider on 127.0.0.1; stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    state: Arc<State>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("id", &self.state.id)
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeProvider {
    /// Starts a fake answering "fake transcript" with no added latency.
    pub async fn start(id: ProviderId) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            id,
            api_key: format!("fake-{id}-key"),
            latency: Mutex::new(Duration::ZERO),
            script: Mutex::new(Arc::new(|_: &FakeAudio| "fake transcript".to_string())),
            fail_when: Mutex::new(None),
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            confidence: Mutex::new(0.9),
            concurrency_limit: AtomicUsize::new(usize::MAX),
            in_flight: AtomicUsize::new(0),
            transcriptions: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            uploads: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
        });
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |req: Request| handle(shared.clone(), req))
            .layer(axum::extract::DefaultBodyLimit::max(100 << 20));
        let tx = serve_until_dropped(listener, app);
        Ok(FakeProvider {
            addr,
            state,
            _shutdown: tx,
        })
    }

    /// Starts one fake of every provider.
    pub async fn start_all() -> std::io::Result<Vec<FakeProvider>> {
        let mut all = Vec::new();
        for id in ProviderId::ALL {
            all.push(FakeProvider::start(id).await?);
        }
        Ok(all)
    }

    pub fn id(&self) -> ProviderId {
        self.state.id
    }

    /// What `INSIGHTS_<PROVIDER>_BASE_URL` would be set to.
    pub fn base_url(&self) -> String {
        match self.state.id {
            ProviderId::Openai => format!("http://{}/v1", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    pub fn api_key(&self) -> &str {
        &self.state.api_key
    }

    /// A client configuration pointing at this fake, with short retry waits.
    pub fn config(&self) -> ProviderConfig {
        let mut c = ProviderConfig::new(self.state.id, &self.state.api_key, &self.base_url());
        c.retry.base_delay = Duration::from_millis(20);
        c.retry.max_delay = Duration::from_millis(200);
        c.poll_interval = Duration::from_millis(20);
        c
    }

    /// Added to every answer (Gladia: the job's queue + processing time).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.state.latency) = latency;
    }

    pub fn set_script(&self, script: impl Fn(&FakeAudio) -> String + Send + Sync + 'static) {
        *lock(&self.state.script) = Arc::new(script);
    }

    pub fn set_transcript(&self, text: &str) {
        let text = text.to_string();
        self.set_script(move |_| text.clone());
    }

    /// The confidence the answers express (in the provider's own form).
    pub fn set_confidence(&self, confidence: f64) {
        *lock(&self.state.confidence) = confidence;
    }

    /// Requests beyond this many in flight get the provider's concurrency 429.
    pub fn set_concurrency_limit(&self, limit: usize) {
        self.state
            .concurrency_limit
            .store(limit.max(1), Ordering::SeqCst);
    }

    /// Fails every request whose audio `rule` picks, with the status it returns.
    pub fn set_fail_when(&self, rule: impl Fn(&FakeAudio) -> Option<u16> + Send + Sync + 'static) {
        *lock(&self.state.fail_when) = Some(Arc::new(rule));
    }

    pub fn push_fault(&self, fault: Fault) {
        lock(&self.state.faults).push_back(fault);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Transcripts answered successfully (Gladia: jobs created).
    pub fn transcriptions(&self) -> u64 {
        self.state.transcriptions.load(Ordering::SeqCst)
    }
}

/// Decrements the in-flight count however the handler ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the handler parsed from the request, for the record and the checks.
#[derive(Default)]
struct Parsed {
    fields: Vec<String>,
    values: Vec<(String, String)>,
    file: Option<(String, Option<String>, Option<String>, Bytes)>,
}

async fn handle(state: Arc<State>, req: Request) -> Response {
    let received = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&state.in_flight);
    let mut parsed = Parsed::default();
    let response = answer(
        &state,
        &method,
        &path,
        query.as_deref(),
        &headers,
        req,
        in_flight,
        &mut parsed,
    )
    .await;
    lock(&state.requests).push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        fields: parsed.fields,
        values: parsed.values,
        status: response.status().as_u16(),
        received,
    });
    response
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    req: Request,
    in_flight: usize,
    parsed: &mut Parsed,
) -> Response {
    let id = state.id;
    // Route and method, as the real API's router would.
    let route = match (id, path) {
        (ProviderId::Groq, "/openai/v1/audio/transcriptions")
        | (ProviderId::Openai, "/v1/audio/transcriptions")
        | (ProviderId::Deepgram, "/v1/listen")
        | (ProviderId::Cartesia, "/stt")
        | (ProviderId::Elevenlabs, "/v1/speech-to-text")
        | (ProviderId::Gladia, "/v2/upload" | "/v2/pre-recorded") => Method::POST,
        (ProviderId::Gladia, p) if p.starts_with("/v2/pre-recorded/") => Method::GET,
        _ => return error(id, 404, "not_found", &format!("no route for {path}")),
    };
    if *method != route {
        return error(
            id,
            405,
            "method_not_allowed",
            &format!("{method} is not allowed on {path}"),
        );
    }
    if let Err(r) = check_auth(state, headers) {
        return r;
    }
    if in_flight > state.concurrency_limit.load(Ordering::SeqCst) {
        return rate_limited(id, None);
    }
    let fault = lock(&state.faults).pop_front();
    match fault {
        Some(Fault::RateLimited { retry_after }) => return rate_limited(id, Some(retry_after)),
        Some(Fault::RateLimitedNoHint) => return rate_limited(id, None),
        Some(Fault::ServerError) => {
            return error(
                id,
                503,
                "server_error",
                "the service is temporarily unavailable",
            );
        }
        Some(Fault::Malformed) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"text\": \"trunc",
            )
                .into_response();
        }
        Some(Fault::Status(s)) => return error(id, s, "fault", &format!("scripted HTTP {s}")),
        Some(Fault::Reset) => {
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"text\": \"")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset by the fake",
                )),
            ]);
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let latency = *lock(&state.latency);
    match id {
        ProviderId::Deepgram => deepgram(state, query, headers, req, latency).await,
        ProviderId::Gladia if path == "/v2/upload" => gladia_upload(state, req, parsed).await,
        ProviderId::Gladia if path == "/v2/pre-recorded" => gladia_create(state, req, parsed).await,
        ProviderId::Gladia => gladia_poll(state, path.trim_start_matches("/v2/pre-recorded/")),
        _ => multipart_provider(state, req, parsed, latency).await,
    }
}

fn check_auth(state: &State, headers: &HeaderMap) -> Result<(), Response> {
    let id = state.id;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (header_name, expected) = match id {
        ProviderId::Groq | ProviderId::Openai | ProviderId::Cartesia => {
            ("authorization", format!("Bearer {}", state.api_key))
        }
        ProviderId::Deepgram => ("authorization", format!("Token {}", state.api_key)),
        ProviderId::Elevenlabs => ("xi-api-key", state.api_key.clone()),
        ProviderId::Gladia => ("x-gladia-key", state.api_key.clone()),
        ProviderId::Assemblyai => ("authorization", state.api_key.clone()),
    };
    if get(header_name) != Some(expected.as_str()) {
        return Err(error(
            id,
            401,
            "invalid_api_key",
            &format!("missing or invalid `{header_name}` header"),
        ));
    }
    if id == ProviderId::Cartesia && get("cartesia-version").is_none() {
        return Err(error(
            id,
            400,
            "missing_version",
            "the Cartesia-Version header is required",
        ));
    }
    Ok(())
}

/// The provider's error body for a status.
fn error(id: ProviderId, status: u16, code: &str, message: &str) -> Response {
    let request_id = format!("req-{}", fastrand::u64(..));
    let body = match id {
        ProviderId::Groq | ProviderId::Openai => {
            json!({"error": {"message": message, "type": "invalid_request_error", "code": code}})
        }
        ProviderId::Deepgram => {
            json!({"err_code": code.to_uppercase(), "err_msg": message, "request_id": request_id})
        }
        ProviderId::Cartesia => {
            json!({"error_code": code, "title": "Error", "message": message, "request_id": request_id})
        }
        ProviderId::Elevenlabs if status == 422 => {
            json!({"detail": [{"loc": ["body", code], "msg": message, "type": "missing"}]})
        }
        ProviderId::Elevenlabs => json!({"detail": {"status": code, "message": message}}),
        ProviderId::Gladia => {
            json!({"timestamp": "2026-11-21T00:00:00.000Z", "path": "", "request_id": request_id, "statusCode": status, "message": message})
        }
        ProviderId::Assemblyai => json!({"error": message}),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn rate_limited(id: ProviderId, retry_after: Option<Duration>) -> Response {
    let code = match id {
        ProviderId::Deepgram => "too_many_requests",
        ProviderId::Cartesia => "concurrency_limited",
        ProviderId::Elevenlabs => "too_many_concurrent_requests",
        _ => "rate_limit_exceeded",
    };
    let mut r = error(id, 429, code, "rate limit reached, slow down");
    if let Some(wait) = retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = secs.to_string().parse() {
            r.headers_mut().insert("retry-after", v);
        }
        if id == ProviderId::Openai
            && let Ok(v) = wait.as_millis().to_string().parse()
        {
            r.headers_mut().insert("retry-after-ms", v);
        }
    }
    r
}

fn bad_request(id: ProviderId, code: &str, message: &str) -> Response {
    error(
        id,
        if id == ProviderId::Elevenlabs {
            422
        } else {
            400
        },
        code,
        message,
    )
}

fn measure_audio(bytes: &[u8]) -> Option<FakeAudio> {
    let a = decode_wav(bytes).ok()?;
    let rms = (a
        .samples
        .iter()
        .map(|s| f64::from(*s) * f64::from(*s))
        .sum::<f64>()
        / a.samples.len().max(1) as f64)
        .sqrt();
    Some(FakeAudio {
        sample_rate: a.sample_rate,
        channels: a.channels,
        duration_ms: a.duration_ms(),
        rms,
        bytes: bytes.len(),
    })
}

/// Reads a multipart body, refusing unknown field names.
async fn read_multipart(
    id: ProviderId,
    req: Request,
    allowed: &[&str],
    parsed: &mut Parsed,
) -> Result<(), Response> {
    let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| {
        bad_request(
            id,
            "invalid_body",
            &format!("expected multipart/form-data: {e}"),
        )
    })?;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(bad_request(
                    id,
                    "invalid_body",
                    &format!("bad multipart body: {e}"),
                ));
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| bad_request(id, "invalid_body", &format!("bad multipart body: {e}")))?;
        parsed.fields.push(name.clone());
        if !allowed.contains(&name.as_str()) {
            return Err(bad_request(id, &name, &format!("unknown field `{name}`")));
        }
        if file_name.is_some() {
            parsed.file = Some((name, file_name, content_type, data));
        } else {
            parsed
                .values
                .push((name, String::from_utf8_lossy(&data).into_owned()));
        }
    }
    Ok(())
}

/// Checks the uploaded file part: under `field`, a file name with an audio extension, a WAV body.
fn check_file(id: ProviderId, parsed: &Parsed, field: &str) -> Result<FakeAudio, Response> {
    let Some((name, file_name, _, data)) = &parsed.file else {
        return Err(bad_request(
            id,
            field,
            &format!("field `{field}` is required (a file)"),
        ));
    };
    if name != field {
        return Err(bad_request(
            id,
            field,
            &format!("field `{field}` is required (a file)"),
        ));
    }
    let ext_ok = file_name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(_, ext)| {
            ["wav", "mp3", "flac", "ogg", "m4a", "webm"]
                .contains(&ext.to_ascii_lowercase().as_str())
        });
    if !ext_ok {
        return Err(bad_request(
            id,
            "file_type",
            "file must have an audio extension, e.g. .wav",
        ));
    }
    measure_audio(data).ok_or_else(|| {
        bad_request(
            id,
            "invalid_audio",
            "could not process file: not valid audio",
        )
    })
}

/// The scripted failure for this audio, if any.
fn scripted_failure(state: &State, audio: &FakeAudio) -> Option<Response> {
    let rule = lock(&state.fail_when).clone()?;
    let status = rule(audio)?;
    Some(error(
        state.id,
        status,
        "scripted_failure",
        &format!("scripted HTTP {status} for this audio"),
    ))
}

fn value<'a>(parsed: &'a Parsed, name: &str) -> Option<&'a str> {
    parsed
        .values
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn values<'a>(parsed: &'a Parsed, name: &str) -> Vec<&'a str> {
    parsed
        .values
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Words spread evenly over the audio.
fn timed_words(text: &str, duration_s: f64) -> Vec<(String, f64, f64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let step = duration_s / words.len().max(1) as f64;
    words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as f64 * step, (i + 1) as f64 * step))
        .collect()
}

fn request_id(state: &State) -> String {
    format!(
        "fake-{}-{}",
        state.id,
        state.next_id.fetch_add(1, Ordering::SeqCst)
    )
}

async fn multipart_provider(
    state: &State,
    req: Request,
    parsed: &mut Parsed,
    latency: Duration,
) -> Response {
    let id = state.id;
    let (allowed, file_field, model_field): (&[&str], &str, &str) = match id {
        ProviderId::Groq => (
            &[
                "file",
                "model",
                "language",
                "prompt",
                "response_format",
                "temperature",
                "timestamp_granularities[]",
            ],
            "file",
            "model",
        ),
        ProviderId::Openai => (
            &[
                "file",
                "model",
                "language",
                "prompt",
                "response_format",
                "temperature",
                "timestamp_granularities[]",
                "include[]",
                "chunking_strategy",
            ],
            "file",
            "model",
        ),
        ProviderId::Cartesia => (
            &[
                "file",
                "model",
                "language",
                "timestamp_granularities[]",
                "encoding",
                "sample_rate",
            ],
            "file",
            "model",
        ),
        _ => (
            &[
                "file",
                "model_id",
                "language_code",
                "tag_audio_events",
                "timestamps_granularity",
                "num_speakers",
                "diarize",
                "file_format",
            ],
            "file",
            "model_id",
        ),
    };
    if let Err(r) = read_multipart(id, req, allowed, parsed).await {
        return r;
    }
    let Some(model) = value(parsed, model_field).map(str::to_string) else {
        return bad_request(
            id,
            model_field,
            &format!("field `{model_field}` is required"),
        );
    };
    let audio = match check_file(id, parsed, file_field) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let format = value(parsed, "response_format").unwrap_or("json");
    let granularities = values(parsed, "timestamp_granularities[]");
    let whisper_like = matches!(id, ProviderId::Groq | ProviderId::Openai);
    if whisper_like && !granularities.is_empty() && format != "verbose_json" {
        return bad_request(
            id,
            "invalid_request",
            "timestamp_granularities requires response_format=verbose_json",
        );
    }
    let gpt4o = id == ProviderId::Openai && model.starts_with("gpt-4o");
    if gpt4o && format == "verbose_json" {
        return bad_request(
            id,
            "unsupported_value",
            &format!("response_format 'verbose_json' is not compatible with model '{model}'"),
        );
    }
    let include = values(parsed, "include[]");
    let logprobs_allowed = gpt4o && format == "json";
    if !(include.is_empty() || logprobs_allowed) {
        return bad_request(
            id,
            "unsupported_value",
            "include[]=logprobs is only supported for gpt-4o-transcribe models with response_format json",
        );
    }
    if id == ProviderId::Elevenlabs
        && let Some(g) = value(parsed, "timestamps_granularity")
        && !["none", "word", "character"].contains(&g)
    {
        return bad_request(
            id,
            "timestamps_granularity",
            "must be one of none, word, character",
        );
    }
    if let Some(r) = scripted_failure(state, &audio) {
        return r;
    }
    tokio::time::sleep(latency).await;
    let text = (lock(&state.script).clone())(&audio);
    let conf: f64 = *lock(&state.confidence);
    let secs = audio.duration_ms / 1000.0;
    let words = timed_words(&text, secs);
    let language = value(parsed, "language")
        .or(value(parsed, "language_code"))
        .unwrap_or("en")
        .to_string();
    state.transcriptions.fetch_add(1, Ordering::SeqCst);
    let rid = request_id(state);
    let body = match id {
        ProviderId::Groq | ProviderId::Openai if format == "verbose_json" => {
            let name = match language.as_str() {
                "en" => "english".to_string(),
                other => other.to_string(),
            };
            let mut v = json!({
                "task": "transcribe",
                "language": name,
                "duration": secs,
                "text": format!(" {text}"),
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": secs, "text": text, "tokens": [], "temperature": 0.0,
                               "avg_logprob": conf.ln(), "compression_ratio": 1.2, "no_speech_prob": 0.01}],
                "words": words.iter().map(|(w, s, e)| json!({"word": w, "start": s, "end": e})).collect::<Vec<_>>(),
            });
            if id == ProviderId::Groq {
                v["x_groq"] = json!({"id": rid});
            }
            v
        }
        ProviderId::Groq | ProviderId::Openai => {
            let mut v =
                json!({"text": text, "usage": {"type": "duration", "seconds": secs.ceil()}});
            if !include.is_empty() {
                v["logprobs"] = Value::Array(words.iter().map(|(w, _, _)| json!({"token": w, "logprob": conf.ln(), "bytes": w.as_bytes()})).collect());
            }
            v
        }
        ProviderId::Cartesia => json!({
            "type": "transcript", "request_id": rid, "text": text, "language": language, "duration": secs,
            "words": words.iter().map(|(w, s, e)| json!({"word": w, "start": s, "end": e})).collect::<Vec<_>>(),
        }),
        _ => {
            let mut items = Vec::new();
            for (i, (w, s, e)) in words.iter().enumerate() {
                if i > 0 {
                    items.push(json!({"text": " ", "start": s, "end": s, "type": "spacing", "logprob": 0.0}));
                }
                items.push(json!({"text": w, "start": s, "end": e, "type": "word", "logprob": conf.ln(), "speaker_id": "speaker_0"}));
            }
            json!({"language_code": if language == "en" { "eng".to_string() } else { language.clone() }, "language_probability": 0.98,
                   "text": text, "words": items, "transcription_id": rid})
        }
    };
    let mut response = axum::Json(body).into_response();
    if let Ok(v) = request_id(state).parse() {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn deepgram(
    state: &State,
    query: Option<&str>,
    headers: &HeaderMap,
    req: Request,
    latency: Duration,
) -> Response {
    let id = ProviderId::Deepgram;
    let params: Vec<(String, String)> = url_pairs(query.unwrap_or(""));
    const ALLOWED: &[&str] = &[
        "model",
        "smart_format",
        "language",
        "detect_language",
        "punctuate",
        "utterances",
        "diarize",
    ];
    if let Some((k, _)) = params.iter().find(|(k, _)| !ALLOWED.contains(&k.as_str())) {
        return error(
            id,
            400,
            "Bad Request",
            &format!("unknown query parameter `{k}`"),
        );
    }
    if !params.iter().any(|(k, _)| k == "model") {
        return error(
            id,
            400,
            "Bad Request",
            "the `model` query parameter is required",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("audio/") {
        return error(
            id,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &format!("Content-Type must be audio/*, got {content_type:?}"),
        );
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), 100 << 20).await else {
        return error(id, 400, "Bad Request", "could not read the body");
    };
    let Some(audio) = measure_audio(&body) else {
        return error(
            id,
            400,
            "Bad Request",
            "Bad Request: failed to process audio: corrupt or unsupported data",
        );
    };
    if let Some(r) = scripted_failure(state, &audio) {
        return r;
    }
    tokio::time::sleep(latency).await;
    let text = (lock(&state.script).clone())(&audio);
    let conf: f64 = *lock(&state.confidence);
    let secs = audio.duration_ms / 1000.0;
    state.transcriptions.fetch_add(1, Ordering::SeqCst);
    let words: Vec<Value> = timed_words(&text, secs)
        .iter()
        .map(|(w, s, e)| json!({"word": w.to_lowercase(), "start": s, "end": e, "confidence": conf, "punctuated_word": w}))
        .collect();
    let mut channel =
        json!({"alternatives": [{"transcript": text, "confidence": conf, "words": words}]});
    if params
        .iter()
        .any(|(k, v)| k == "detect_language" && v == "true")
    {
        channel["detected_language"] = json!("en");
        channel["language_confidence"] = json!(0.97);
    }
    axum::Json(json!({
        "metadata": {"transaction_key": "deprecated", "request_id": request_id(state), "sha256": "", "created": "2026-11-21T00:00:00.000Z",
                     "duration": secs, "channels": 1, "models": ["fake-model-uuid"]},
        "results": {"channels": [channel]},
    }))
    .into_response()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

async fn gladia_upload(state: &State, req: Request, parsed: &mut Parsed) -> Response {
    let id = ProviderId::Gladia;
    if let Err(r) = read_multipart(id, req, &["audio"], parsed).await {
        return r;
    }
    let audio = match check_file(id, parsed, "audio") {
        Ok(a) => a,
        Err(r) => return r,
    };
    let key = request_id(state);
    let url = format!("https://api.gladia.io/file/{key}");
    lock(&state.uploads).insert(url.clone(), audio);
    axum::Json(json!({
        "audio_url": url,
        "audio_metadata": {"id": key, "filename": "turn.wav", "extension": "wav", "size": audio.bytes,
                           "audio_duration": audio.duration_ms / 1000.0, "number_of_channels": audio.channels},
    }))
    .into_response()
}

async fn gladia_create(state: &State, req: Request, parsed: &mut Parsed) -> Response {
    let id = ProviderId::Gladia;
    let Ok(body) = axum::Json::<Value>::from_request(req, &()).await else {
        return error(
            id,
            400,
            "invalid_body",
            "body must be JSON with Content-Type application/json",
        );
    };
    const ALLOWED: &[&str] = &[
        "audio_url",
        "language_config",
        "diarization",
        "diarization_config",
        "translation",
        "subtitles",
        "callback",
        "callback_config",
        "custom_vocabulary",
        "custom_vocabulary_config",
        "sentences",
        "punctuation_enhanced",
    ];
    let Some(obj) = body.as_object() else {
        return error(id, 400, "invalid_body", "body must be a JSON object");
    };
    parsed.fields = obj.keys().cloned().collect();
    if let Some(k) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return error(
            id,
            400,
            "invalid_body",
            &format!("property {k} should not exist"),
        );
    }
    let Some(url) = body["audio_url"].as_str() else {
        return error(id, 400, "invalid_body", "audio_url must be a URL address");
    };
    let languages = &body["language_config"]["languages"];
    if !body["language_config"].is_null()
        && !languages
            .as_array()
            .is_some_and(|l| l.iter().all(Value::is_string))
    {
        return error(
            id,
            400,
            "invalid_body",
            "language_config.languages must be an array of language codes",
        );
    }
    let Some(audio) = lock(&state.uploads).get(url).copied() else {
        return error(
            id,
            400,
            "invalid_body",
            "audio_url does not point to an uploaded file",
        );
    };
    if let Some(r) = scripted_failure(state, &audio) {
        return r;
    }
    let job = request_id(state);
    lock(&state.jobs).insert(
        job.clone(),
        GladiaJob {
            audio,
            created: Instant::now(),
            language: languages[0].as_str().map(str::to_string),
        },
    );
    state.transcriptions.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": job, "result_url": format!("https://api.gladia.io/v2/pre-recorded/{job}")})),
    )
        .into_response()
}

fn gladia_poll(state: &State, job_id: &str) -> Response {
    let id = ProviderId::Gladia;
    let jobs = lock(&state.jobs);
    let Some(job) = jobs.get(job_id) else {
        return error(id, 404, "not_found", &format!("no job {job_id}"));
    };
    let latency = *lock(&state.latency);
    let elapsed = job.created.elapsed();
    let status = if elapsed < latency / 3 {
        "queued"
    } else if elapsed < latency {
        "processing"
    } else {
        "done"
    };
    let mut body = json!({"id": job_id, "request_id": job_id, "kind": "pre-recorded", "status": status,
                          "created_at": "2026-11-21T00:00:00.000Z", "file": {"source": "upload"}});
    if status == "done" {
        let text = (lock(&state.script).clone())(&job.audio);
        let conf: f64 = *lock(&state.confidence);
        let secs = job.audio.duration_ms / 1000.0;
        let language = job.language.clone().unwrap_or_else(|| "en".into());
        let words: Vec<Value> = timed_words(&text, secs)
            .iter()
            .map(|(w, s, e)| json!({"word": format!(" {w}"), "start": s, "end": e, "confidence": conf}))
            .collect();
        body["completed_at"] = json!("2026-11-21T00:00:01.000Z");
        body["result"] = json!({
            "metadata": {"audio_duration": secs, "number_of_distinct_channels": 1, "billing_time": secs, "transcription_time": 0.5},
            "transcription": {
                "full_transcript": text,
                "languages": [language],
                "utterances": [{"text": text, "language": language, "start": 0.0, "end": secs, "confidence": conf, "channel": 0, "words": words}],
            },
        });
    }
    axum::Json(body).into_response()
}
