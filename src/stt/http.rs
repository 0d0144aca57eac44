//! The HTTP exchange every provider shares: per-attempt timeout, retries of 429 and 5xx honouring
//! `retry-after-ms` then `retry-after`, otherwise exponential back-off with jitter; connections
//! refused, reset or closed before or during the answer are retried the same way (the requests are
//! idempotent); never a retry of
//! 400/401/402/403/422. Errors are classified once here, with the provider's own message.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant, SystemTime};

use super::{ProviderConfig, ProviderId, SttError, SttErrorKind};

/// How hard to retry a provider that is rate limiting or failing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First back-off; doubles per retry, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `retry-after` longer than this ends the call as rate limited instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential back-off with "equal jitter": half the delay fixed, half random.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// The shared reqwest client (one connection pool, rustls).
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("call-insights/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// A successful response and how long it took.
#[derive(Debug)]
pub(crate) struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Request start to full body, successful attempt.
    pub latency: Duration,
    /// Request start to headers, successful attempt.
    pub headers_after: Duration,
    pub attempts: u32,
}

impl Answer {
    pub fn json(&self, provider: ProviderId) -> Result<serde_json::Value, SttError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let mut err = SttError::new(
                provider,
                SttErrorKind::Malformed,
                format!("response is not JSON ({e}): {}", preview(&self.body)),
            );
            err.request_id = header_request_id(&self.headers);
            err.attempts = self.attempts;
            err
        })
    }

    pub fn request_id(&self) -> Option<String> {
        header_request_id(&self.headers)
    }
}

/// One provider's endpoint, key and limits. `Debug` leaves the key out (it reaches `App`'s).
#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    pub id: ProviderId,
    pub api_key: String,
    pub base_url: String,
    pub model: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("id", &self.id)
            .field("api_key", &"***")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(client: reqwest::Client, p: &ProviderConfig) -> Self {
        Http {
            client,
            id: p.id,
            api_key: p.api_key.clone(),
            base_url: p.base_url.clone(),
            model: p.model.clone(),
            timeout: p.timeout,
            retry: p.retry,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends the request `build` makes (again for each attempt), retrying what may succeed later.
    /// `also_retry` adds statuses this provider documents as transient (Gladia: 408, 413).
    pub async fn send(
        &self,
        also_retry: &[u16],
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, SttError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let may_retry = attempt <= self.retry.max_retries;
            let started = Instant::now();
            let fail = |kind, message: String| {
                let mut e = SttError::new(self.id, kind, message);
                e.attempts = attempt;
                e
            };
            let response = match build(&self.client).timeout(self.timeout).send().await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return Err(fail(
                        SttErrorKind::Timeout,
                        format!("no response within {} ms", self.timeout.as_millis()),
                    ));
                }
                // Refused, reset or closed before an answer: transcription requests are idempotent, so
                // they are retried like a 5xx (a request that could not even be built is not).
                Err(e) => {
                    if may_retry && !e.is_builder() {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        continue;
                    }
                    return Err(fail(SttErrorKind::Network, error_chain(&e.without_url())));
                }
            };
            let headers_after = started.elapsed();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) if e.is_timeout() => {
                    return Err(fail(
                        SttErrorKind::Timeout,
                        format!(
                            "response body not complete within {} ms",
                            self.timeout.as_millis()
                        ),
                    ));
                }
                // Reset mid-body: retried too.
                Err(e) => {
                    if may_retry {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        continue;
                    }
                    return Err(fail(SttErrorKind::Network, error_chain(&e.without_url())));
                }
            };
            let latency = started.elapsed();
            if (200..300).contains(&status) {
                return Ok(Answer {
                    headers,
                    body,
                    latency,
                    headers_after,
                    attempts: attempt,
                });
            }
            let retry_after = retry_after(&headers);
            let transient = status == 429 || status >= 500 || also_retry.contains(&status);
            if transient && may_retry {
                match retry_after {
                    Some(wait) if wait > self.retry.max_retry_after => {}
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    None => {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        continue;
                    }
                }
            }
            let (message, body_request_id) = error_details(&body);
            return Err(SttError {
                provider: self.id,
                kind: kind_of(status),
                status: Some(status),
                message: message.unwrap_or_else(|| format!("HTTP {status}: {}", preview(&body))),
                request_id: body_request_id.or_else(|| header_request_id(&headers)),
                attempts: attempt,
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            });
        }
    }
}

/// The error kind an HTTP status means.
pub(crate) fn kind_of(status: u16) -> SttErrorKind {
    match status {
        401..=403 => SttErrorKind::Auth,
        408 | 504 => SttErrorKind::Timeout,
        429 => SttErrorKind::RateLimited,
        500.. => SttErrorKind::Server,
        _ => SttErrorKind::BadRequest,
    }
}

/// `retry-after-ms` (milliseconds, OpenAI) first, then `retry-after` (seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = text("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn header_request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-request-id",
        "request-id",
        "dg-request-id",
        "x-gladia-request-id",
    ]
    .iter()
    .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string))
}

/// The message and request id from any of the providers' error bodies:
/// `{"error":{"message"}}` (Groq, OpenAI), `{"err_code","err_msg","request_id"}` (Deepgram),
/// `{"error_code","title","message","request_id"}` (Cartesia), `{"detail":{"status","message"}}` and
/// `{"detail":[{"msg"}]}` (ElevenLabs), `{"statusCode","message","request_id"}` (Gladia).
pub(crate) fn error_details(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let message = s(&v["error"]["message"])
        .or_else(|| s(&v["err_msg"]))
        .or_else(|| s(&v["detail"]["message"]))
        .or_else(|| {
            v["detail"].as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        let msg = i["msg"].as_str()?;
                        let loc = i["loc"]
                            .as_array()
                            .map(|l| {
                                l.iter()
                                    .map(|p| {
                                        p.as_str().map_or_else(|| p.to_string(), str::to_string)
                                    })
                                    .collect::<Vec<_>>()
                                    .join(".")
                            })
                            .unwrap_or_default();
                        Some(if loc.is_empty() {
                            msg.to_string()
                        } else {
                            format!("{loc}: {msg}")
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .or_else(|| s(&v["detail"]))
        .or_else(|| s(&v["message"]))
        .or_else(|| s(&v["error"]))
        .or_else(|| s(&v["title"]));
    let code = s(&v["error"]["code"])
        .or_else(|| s(&v["error"]["type"]))
        .or_else(|| s(&v["err_code"]))
        .or_else(|| s(&v["error_code"]))
        .or_else(|| s(&v["detail"]["status"]));
    let message = match (message, code) {
        (Some(m), Some(c)) if !m.contains(&c) => Some(format!("{c}: {m}")),
        (m, c) => m.or(c),
    };
    let request_id = s(&v["request_id"]).or_else(|| s(&v["error"]["request_id"]));
    (message, request_id)
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The start of a body for an error message.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if body.len() > 200 {
        format!("{text}…")
    } else {
        text
    }
}

/// A multipart file part holding the WAV: named with an extension, typed `audio/wav`.
pub(crate) fn wav_part(wav: &Bytes) -> reqwest::multipart::Part {
    reqwest::multipart::Part::stream_with_length(reqwest::Body::from(wav.clone()), wav.len() as u64)
        .file_name("turn.wav")
        .mime_str("audio/wav")
        .unwrap_or_else(|_| reqwest::multipart::Part::bytes(wav.to_vec()).file_name("turn.wav"))
}

/// Reads a required field; a missing or mistyped one makes the answer malformed.
pub(crate) fn malformed(provider: ProviderId, answer: &Answer, what: &str) -> SttError {
    let mut e = SttError::new(
        provider,
        SttErrorKind::Malformed,
        format!("{what}: {}", preview(&answer.body)),
    );
    e.request_id = answer.request_id();
    e.attempts = answer.attempts;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn every_providers_error_shape_gives_its_message() {
        let cases: [(&str, &str, Option<&str>); 7] = [
            (
                r#"{"error":{"message":"Invalid API Key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                "invalid_api_key: Invalid API Key",
                None,
            ),
            (
                r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"r-1"}"#,
                "INVALID_AUTH: Invalid credentials.",
                Some("r-1"),
            ),
            (
                r#"{"error_code":"concurrency_limited","title":"Too many","message":"Concurrency limit reached","request_id":"c-9"}"#,
                "concurrency_limited: Concurrency limit reached",
                Some("c-9"),
            ),
            (
                r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
                "invalid_api_key: Invalid API key",
                None,
            ),
            (
                r#"{"detail":[{"loc":["body","model_id"],"msg":"Field required","type":"missing"}]}"#,
                "body.model_id: Field required",
                None,
            ),
            (
                r#"{"statusCode":401,"message":"Invalid or missing API key","request_id":"G-1"}"#,
                "Invalid or missing API key",
                Some("G-1"),
            ),
            (r#"{"error":"model not loaded"}"#, "model not loaded", None),
        ];
        for (body, message, rid) in cases {
            let (m, r) = error_details(body.as_bytes());
            assert_eq!(m.as_deref(), Some(message), "{body}");
            assert_eq!(r.as_deref(), rid, "{body}");
        }
        assert_eq!(error_details(b"<html>bad gateway</html>"), (None, None));
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds_then_a_date() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_micros(150_500)));
        let mut d = HeaderMap::new();
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        d.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&d).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        d.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&d), None);
    }

    #[test]
    fn statuses_map_to_kinds_and_backoff_grows_with_jitter() {
        assert_eq!(kind_of(401), SttErrorKind::Auth);
        assert_eq!(kind_of(402), SttErrorKind::Auth);
        assert_eq!(kind_of(422), SttErrorKind::BadRequest);
        assert_eq!(kind_of(429), SttErrorKind::RateLimited);
        assert_eq!(kind_of(503), SttErrorKind::Server);
        let p = RetryPolicy::default();
        for retry in 1..8 {
            let full = p
                .base_delay
                .saturating_mul(1 << (retry - 1))
                .min(p.max_delay);
            let d = p.backoff(retry);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
