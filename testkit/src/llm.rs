//! A loopback fake of an OpenAI-compatible Chat Completions server for tests and benchmarks. It
//! enforces the wire format (Bearer auth, `json_schema` strict rules, temperature, messages) with
//! OpenAI's error bodies, records every request, and can be told to misbehave: malformed JSON,
//! out-of-range values, refusals, `finish_reason: "length"`, 429 with Retry-After, 5xx, a reset
//! mid-response, slowness.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use call_insights::analytics::schema::strict_violations;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One misbehaviour, used by the next request.
#[derive(Debug, Clone)]
pub enum LlmFault {
    /// `content` that is not JSON.
    MalformedJson,
    /// Valid JSON with `lead_score` 250 and `sentiment_score` 3.
    OutOfRange,
    Refusal(String),
    /// `finish_reason: "length"` with a cut answer.
    Length,
    /// This status with OpenAI's error body; `retry_after` seconds as a header.
    Status(u16, Option<u64>),
    /// Headers, then the connection dies before the body completes.
    Reset,
    /// Answer normally after this delay.
    Slow(Duration),
}

type Script = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

struct State {
    api_key: String,
    latency: Mutex<Duration>,
    faults: Mutex<VecDeque<LlmFault>>,
    script: Mutex<Script>,
    requests: Mutex<Vec<Value>>,
    completions: AtomicU64,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake on 127.0.0.1; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    state: Arc<State>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm").field("addr", &self.addr).finish()
    }
}

/// The user message of a request (transcript and facts).
pub fn user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|x| x["role"] == "user")
                .filter_map(|x| x["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The default answer: valid for the request's schema; echoes the first email and phone
/// placeholders it was sent, and reads escalation and sentiment cues from the transcript.
pub fn default_answer(request: &Value) -> Value {
    let text = user_text(request);
    let lower = text.to_lowercase();
    let schema = &request["response_format"]["json_schema"]["schema"];
    let intents: Vec<String> = schema["properties"]["intent"]["enum"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pick = |want: &str| {
        intents
            .iter()
            .find(|i| *i == want)
            .or(intents.first())
            .cloned()
            .unwrap_or_else(|| "other".into())
    };
    let intent = if lower.contains("buy") || lower.contains("price") || lower.contains("upgrade") {
        pick("sales")
    } else if lower.contains("charged") || lower.contains("refund") {
        pick("complaint")
    } else {
        pick("booking")
    };
    let placeholder = |kind: &str| {
        let re = regex::Regex::new(&format!(r"\[{kind}_[0-9]+\]")).ok()?;
        re.find(&text).map(|m| m.as_str().to_string())
    };
    let negative =
        lower.contains("terrible") || lower.contains("angry") || lower.contains("charged twice");
    let (sentiment, score) = if negative {
        ("negative", -0.6)
    } else {
        ("positive", 0.5)
    };
    let lead = if intent == "sales" { 88 } else { 35 };
    let mut custom = serde_json::Map::new();
    if let Some(props) = schema["properties"]["custom"]["properties"].as_object() {
        for k in props.keys() {
            custom.insert(k.clone(), Value::Null);
        }
    }
    json!({
        "summary": format!("The caller wanted {intent}; the agent helped."),
        "sentiment": sentiment,
        "sentiment_score": score,
        "intent": intent,
        "lead_score": lead,
        "satisfaction": if negative { 2 } else { 4 },
        "escalated": false,
        "escalation_reason": null,
        "resolution": "resolved",
        "topics": [intent],
        "action_items": [],
        "competitor_mentions": [],
        "tags": [intent],
        "entities": {"name": null, "email": placeholder("EMAIL"), "phone": placeholder("PHONE"), "topic": intent},
        "next_action": null,
        "custom": custom,
    })
}

impl FakeLlm {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            api_key: "sk-fake-llm-key".into(),
            latency: Mutex::new(Duration::ZERO),
            faults: Mutex::new(VecDeque::new()),
            script: Mutex::new(Arc::new(default_answer)),
            requests: Mutex::new(Vec::new()),
            completions: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        });
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |req: Request| handle(shared.clone(), req))
            .layer(axum::extract::DefaultBodyLimit::max(10 << 20));
        let tx = crate::stt::serve_until_dropped(listener, app);
        Ok(FakeLlm {
            addr,
            state,
            _shutdown: tx,
        })
    }

    /// `http://127.0.0.1:<port>/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.state.api_key
    }

    pub fn settings(&self) -> call_insights::analytics::llm::LlmSettings {
        let mut s =
            call_insights::analytics::llm::LlmSettings::new(&self.base_url(), self.api_key());
        s.retry.base_delay = Duration::from_millis(10);
        s.retry.max_delay = Duration::from_millis(50);
        s
    }

    pub fn set_latency(&self, d: Duration) {
        *lock(&self.state.latency) = d;
    }

    pub fn push_fault(&self, f: LlmFault) {
        lock(&self.state.faults).push_back(f);
    }

    /// Answers every later request with `script(request)` as the message content (JSON).
    pub fn set_script(&self, script: impl Fn(&Value) -> Value + Send + Sync + 'static) {
        *lock(&self.state.script) = Arc::new(script);
    }

    /// Every request body received (including refused ones).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.requests).clone()
    }

    /// Requests answered with a completion.
    pub fn completions(&self) -> u64 {
        self.state.completions.load(Ordering::Relaxed)
    }

    pub fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::Relaxed)
    }
}

fn openai_error(status: u16, message: &str, kind: &str, param: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        axum::Json(
            json!({"error": {"message": message, "type": kind, "param": param, "code": null}}),
        ),
    )
        .into_response()
}

/// What OpenAI would refuse in this request, as its 400 message.
fn check_request(body: &Value) -> Option<(String, Option<&'static str>)> {
    if !body["model"].is_string() {
        return Some(("you must provide a model parameter".into(), Some("model")));
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Some((
            "'messages' must be a non-empty array".into(),
            Some("messages"),
        ));
    };
    for (i, m) in messages.iter().enumerate() {
        let role_ok = matches!(
            m["role"].as_str(),
            Some("system" | "user" | "assistant" | "developer")
        );
        if !role_ok || !m["content"].is_string() {
            return Some((
                format!("Invalid value for 'messages[{i}]'"),
                Some("messages"),
            ));
        }
    }
    if let Some(t) = body.get("temperature")
        && !t.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
    {
        return Some((
            "temperature must be between 0 and 2".into(),
            Some("temperature"),
        ));
    }
    let rf = &body["response_format"];
    if rf["type"] != "json_schema" {
        return Some((
            "response_format.type must be json_schema for this fake".into(),
            Some("response_format"),
        ));
    }
    let js = &rf["json_schema"];
    let name_ok = js["name"].as_str().is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !name_ok {
        return Some((
            "response_format.json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$".into(),
            Some("response_format"),
        ));
    }
    if js["strict"] != true {
        return Some((
            "this fake requires strict: true".into(),
            Some("response_format"),
        ));
    }
    if js["schema"]["type"] != "object" {
        return Some((
            "Invalid schema for response_format: the root must be an object".into(),
            Some("response_format"),
        ));
    }
    let v = strict_violations(&js["schema"]);
    if !v.is_empty() {
        return Some((
            format!(
                "Invalid schema for response_format 'call_analytics_v1': {}",
                v.join("; ")
            ),
            Some("response_format"),
        ));
    }
    None
}

fn completion(
    model: &str,
    content: Option<String>,
    refusal: Option<String>,
    finish: &str,
    request: &Value,
) -> Response {
    let prompt_tokens = (user_text(request).len() / 4 + 200) as i64;
    let completion_tokens = content.as_ref().map_or(5, |c| c.len() / 4 + 1) as i64;
    axum::Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response()
}

struct InFlight(Arc<State>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(state: Arc<State>, req: Request) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    state.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    let _guard = InFlight(state.clone());
    if !req.uri().path().ends_with("/chat/completions") {
        return openai_error(404, "Unknown request URL", "invalid_request_error", None);
    }
    let headers: HeaderMap = req.headers().clone();
    let bytes = match axum::body::to_bytes(req.into_body(), 10 << 20).await {
        Ok(b) => b,
        Err(_) => return openai_error(400, "body too large", "invalid_request_error", None),
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            return openai_error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
            );
        }
    };
    lock(&state.requests).push(body.clone());
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(state.api_key.as_str());
    if !authorised {
        return openai_error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            None,
        );
    }
    if let Some((message, param)) = check_request(&body) {
        return openai_error(400, &message, "invalid_request_error", param);
    }
    let latency = *lock(&state.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let fault = lock(&state.faults).pop_front();
    let script = lock(&state.script).clone();
    let answer = || serde_json::to_string(&script(&body)).unwrap_or_default();
    let response = match fault {
        None => completion(&model, Some(answer()), None, "stop", &body),
        Some(LlmFault::Slow(d)) => {
            tokio::time::sleep(d).await;
            completion(&model, Some(answer()), None, "stop", &body)
        }
        Some(LlmFault::MalformedJson) => completion(
            &model,
            Some("{\"summary\": \"The caller wanted".into()),
            None,
            "stop",
            &body,
        ),
        Some(LlmFault::OutOfRange) => {
            let mut v = script(&body);
            v["lead_score"] = json!(250);
            v["sentiment_score"] = json!(3);
            completion(&model, Some(v.to_string()), None, "stop", &body)
        }
        Some(LlmFault::Refusal(text)) => completion(&model, None, Some(text), "stop", &body),
        Some(LlmFault::Length) => {
            let full = answer();
            let cut: String = full.chars().take(full.len() / 2).collect();
            completion(&model, Some(cut), None, "length", &body)
        }
        Some(LlmFault::Status(status, retry_after)) => {
            let mut r = openai_error(
                status,
                "Rate limit reached for requests",
                if status == 429 {
                    "requests"
                } else {
                    "server_error"
                },
                None,
            );
            if let Some(s) = retry_after
                && let Ok(v) = s.to_string().parse()
            {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        Some(LlmFault::Reset) => {
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"id\": \"chatcmpl-")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset by the fake",
                )),
            ]);
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    state.completions.fetch_add(1, Ordering::Relaxed);
    response
}
