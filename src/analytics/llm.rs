//! The LLM analyzer: any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM,
//! llama.cpp's server) with `response_format: json_schema, strict: true`. The transcript is redacted
//! first; the answer is validated (servers may not enforce the schema), repaired once by quoting the
//! validation errors, asked again with a larger `max_tokens` after `finish_reason: "length"`, and
//! placeholders in it are restored from the call's map. 429, 5xx, resets and timeouts are retried.

use super::profile::Profile;
use super::redact::Redactor;
use super::schema::{Analysis, json_schema, validate};
use super::{Analyzer, Answer, CallInput, Failure, Usage, transcript};
use crate::stt::{RetryPolicy, error_chain, retry_after};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// USD per million (input, output) tokens; `INSIGHTS_LLM_PRICES` overrides or adds.
const DEFAULT_PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
];

#[derive(Clone)]
pub struct LlmSettings {
    /// Without a trailing slash, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub base_url_set: bool,
    pub api_key: Option<String>,
    pub model: String,
    /// Requests in flight at once from this process.
    pub concurrency: usize,
    /// Per attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// At most 0.2.
    pub temperature: f64,
    pub max_tokens: u32,
    /// `max_tokens` of the one retry after `finish_reason: "length"`.
    pub max_tokens_retry: u32,
    pub max_transcript_chars: usize,
    /// model (prefix) → USD per million input and output tokens.
    pub prices: BTreeMap<String, (f64, f64)>,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("model", &self.model)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            base_url: DEFAULT_BASE_URL.into(),
            base_url_set: false,
            api_key: None,
            model: DEFAULT_MODEL.into(),
            concurrency: 4,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            temperature: 0.0,
            max_tokens: 1200,
            max_tokens_retry: 4000,
            max_transcript_chars: 12_000,
            prices: DEFAULT_PRICES
                .iter()
                .map(|(m, i, o)| (m.to_string(), (*i, *o)))
                .collect(),
        }
    }
}

impl LlmSettings {
    /// An endpoint to use: a key, or a base URL of a server that needs none (Ollama, llama.cpp).
    pub fn configured(&self) -> bool {
        self.api_key.is_some() || self.base_url_set
    }

    /// Settings pointing at `base_url` with `api_key` (tests, benchmarks).
    pub fn new(base_url: &str, api_key: &str) -> Self {
        LlmSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            base_url_set: true,
            api_key: Some(api_key.to_string()),
            ..LlmSettings::default()
        }
    }

    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut s = LlmSettings::default();
        let val = |n: &str| {
            get(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |n: &str| -> anyhow::Result<Option<f64>> {
            val(n)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| anyhow::anyhow!("{n}={v:?}: expected a non-negative number"))
                })
                .transpose()
        };
        if let Some(u) = val("INSIGHTS_LLM_BASE_URL") {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                anyhow::bail!("INSIGHTS_LLM_BASE_URL={u:?}: expected an http(s) URL");
            }
            s.base_url = u.trim_end_matches('/').to_string();
            s.base_url_set = true;
        }
        s.api_key = val("INSIGHTS_LLM_API_KEY");
        if let Some(m) = val("INSIGHTS_LLM_MODEL") {
            s.model = m;
        }
        if let Some(n) = num("INSIGHTS_LLM_CONCURRENCY")? {
            s.concurrency = (n as usize).max(1);
        }
        if let Some(n) = num("INSIGHTS_LLM_TIMEOUT_MS")? {
            s.timeout = Duration::from_millis((n as u64).max(1));
        }
        if let Some(n) = num("INSIGHTS_LLM_MAX_RETRIES")? {
            s.retry.max_retries = n as u32;
        }
        if let Some(t) = num("INSIGHTS_LLM_TEMPERATURE")? {
            if t > 0.2 {
                anyhow::bail!(
                    "INSIGHTS_LLM_TEMPERATURE={t}: at most 0.2 (analytics must be repeatable)"
                );
            }
            s.temperature = t;
        }
        if let Some(n) = num("INSIGHTS_LLM_MAX_TOKENS")? {
            s.max_tokens = (n as u32).max(100);
            s.max_tokens_retry = s.max_tokens_retry.max(s.max_tokens * 3);
        }
        if let Some(n) = num("INSIGHTS_LLM_MAX_TRANSCRIPT_CHARS")? {
            s.max_transcript_chars = (n as usize).max(500);
        }
        if let Some(p) = val("INSIGHTS_LLM_PRICES") {
            for item in p.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let parsed = item.split_once('=').and_then(|(m, io)| {
                    let (i, o) = io.split_once(':')?;
                    Some((
                        m.trim().to_string(),
                        i.trim().parse().ok()?,
                        o.trim().parse().ok()?,
                    ))
                });
                let Some((m, i, o)) = parsed else {
                    anyhow::bail!(
                        "INSIGHTS_LLM_PRICES item {item:?}: expected model=input_usd_per_1m:output_usd_per_1m"
                    );
                };
                s.prices.insert(m, (i, o));
            }
        }
        Ok(s)
    }

    /// Price of a model: exact name, else the longest configured prefix (`gpt-4o-mini-2024-07-18`).
    pub fn price(&self, model: &str) -> Option<(f64, f64)> {
        self.prices.get(model).copied().or_else(|| {
            self.prices
                .iter()
                .filter(|(m, _)| model.starts_with(m.as_str()))
                .max_by_key(|(m, _)| m.len())
                .map(|(_, p)| *p)
        })
    }
}

#[derive(Debug)]
pub struct LlmAnalyzer {
    settings: LlmSettings,
    client: reqwest::Client,
    limit: Arc<Semaphore>,
}

/// One chat completion as far as analytics cares.
struct Completion {
    content: Option<String>,
    refusal: Option<String>,
    finish_reason: Option<String>,
    usage: Usage,
    model: Option<String>,
}

struct Exchange {
    attempts: i32,
    usage: Usage,
    model: Option<String>,
}

impl LlmAnalyzer {
    pub fn new(settings: LlmSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("call-insights/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let limit = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Ok(LlmAnalyzer {
            settings,
            client,
            limit,
        })
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// The messages for a call: system prompt with the profile's intents, then facts and the
    /// redacted transcript.
    pub fn messages(
        &self,
        call: &CallInput,
        profile: &Profile,
        redactor: &mut Redactor,
    ) -> Vec<Value> {
        let lines: Vec<(String, String)> = call
            .spoken_turns()
            .map(|t| (t.role.clone(), redactor.redact(&t.content)))
            .collect();
        let text = transcript(&lines, self.settings.max_transcript_chars);
        let mut facts = vec![format!(
            "turns: {} ({} by the caller)",
            lines.len(),
            lines.iter().filter(|(r, _)| r == "user").count()
        )];
        if let Some(d) = call.session.duration_seconds {
            facts.push(format!("duration: {d:.0} s"));
        }
        facts.push(format!(
            "transferred to a human: {}",
            if call.transfer().is_some() {
                "yes"
            } else {
                "no"
            }
        ));
        if let Some(reason) = &call.session.close_reason {
            facts.push(format!("ended by: {}", redactor.redact(reason)));
        }
        let fields = if profile.fields.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = profile
                .fields
                .iter()
                .map(|f| format!("- custom.{}: {}", f.name, f.description))
                .collect();
            format!(
                "\n\nExtra fields to fill in (null when the call does not say):\n{}",
                list.join("\n")
            )
        };
        let competitors = if profile.competitors.is_empty() {
            String::new()
        } else {
            format!(
                "\nCompetitors to watch for: {}.",
                profile.competitors.join(", ")
            )
        };
        vec![
            json!({"role": "system", "content": format!(
                "{}\nIntents: {}.{competitors}{fields}",
                profile.system_prompt,
                profile.intents.join(", ")
            )}),
            json!({"role": "user", "content": format!(
                "Call facts:\n{}\n\nTranscript:\n{text}",
                facts.join("\n")
            )}),
        ]
    }

    fn body(&self, messages: &[Value], profile: &Profile, max_tokens: u32) -> Value {
        json!({
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature.min(0.2),
            "max_tokens": max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "call_analytics_v1",
                    "strict": true,
                    "schema": json_schema(profile),
                }
            }
        })
    }

    /// One completion with the HTTP retries (429 honouring Retry-After, 5xx, resets, timeouts).
    async fn complete(&self, body: &Value, ex: &mut Exchange) -> Result<Completion, Failure> {
        let url = format!("{}/chat/completions", self.settings.base_url);
        let mut retry = 0u32;
        loop {
            ex.attempts += 1;
            let may_retry = retry < self.settings.retry.max_retries;
            let mut req = self
                .client
                .post(&url)
                .json(body)
                .timeout(self.settings.timeout);
            if let Some(key) = &self.settings.api_key {
                req = req.bearer_auth(key);
            }
            let fail = |error: String, transient: bool, ex: &Exchange| Failure {
                error,
                raw_answer: None,
                usage: Some(ex.usage),
                model: ex.model.clone(),
                attempts: ex.attempts,
                transient,
            };
            let sent = async {
                let r = req.send().await?;
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let bytes = r.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, bytes))
            }
            .await;
            let (status, headers, bytes) = match sent {
                Ok(x) => x,
                Err(e) => {
                    let what = if e.is_timeout() {
                        format!("no answer within {} ms", self.settings.timeout.as_millis())
                    } else {
                        format!("connection failed: {}", error_chain(&e.without_url()))
                    };
                    if may_retry {
                        retry += 1;
                        tracing::warn!(attempt = ex.attempts, error = %what, "LLM request failed; retrying");
                        tokio::time::sleep(self.settings.retry.backoff(retry)).await;
                        continue;
                    }
                    return Err(fail(
                        format!("LLM {what} (after {} attempts)", ex.attempts),
                        true,
                        ex,
                    ));
                }
            };
            if (200..300).contains(&status) {
                return parse_completion(&bytes).map_err(|e| fail(e, false, ex));
            }
            let message = crate::stt::error_message(&bytes).unwrap_or_else(|| {
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )
            });
            let transient = status == 429 || status == 408 || status >= 500;
            if transient && may_retry {
                let wait = retry_after(&headers);
                match wait {
                    Some(w) if w > self.settings.retry.max_retry_after => {}
                    Some(w) => {
                        retry += 1;
                        tokio::time::sleep(w).await;
                        continue;
                    }
                    None => {
                        retry += 1;
                        tokio::time::sleep(self.settings.retry.backoff(retry)).await;
                        continue;
                    }
                }
            }
            return Err(fail(
                format!("LLM answered {status}: {message}"),
                transient,
                ex,
            ));
        }
    }

    async fn run(&self, call: &CallInput, profile: &Profile) -> Result<Answer, Failure> {
        let mut redactor = Redactor::new();
        let mut messages = self.messages(call, profile, &mut redactor);
        let mut ex = Exchange {
            attempts: 0,
            usage: Usage::default(),
            model: Some(self.settings.model.clone()),
        };
        let mut max_tokens = self.settings.max_tokens;
        let (mut repaired, mut lengthened) = (false, false);
        loop {
            let body = self.body(&messages, profile, max_tokens);
            let c = self.complete(&body, &mut ex).await?;
            ex.usage.input_tokens += c.usage.input_tokens;
            ex.usage.output_tokens += c.usage.output_tokens;
            if c.model.is_some() {
                ex.model = c.model.clone();
            }
            let failed = |error: String, raw: Option<String>, ex: &Exchange| Failure {
                error,
                raw_answer: raw,
                usage: Some(ex.usage),
                model: ex.model.clone(),
                attempts: ex.attempts,
                transient: false,
            };
            if let Some(refusal) = c.refusal.filter(|r| !r.trim().is_empty()) {
                return Err(failed(
                    format!("the model refused: {refusal}"),
                    Some(refusal),
                    &ex,
                ));
            }
            if c.finish_reason.as_deref() == Some("length") {
                if !lengthened {
                    lengthened = true;
                    max_tokens = self.settings.max_tokens_retry;
                    continue;
                }
                return Err(failed(
                    format!("the answer was cut at max_tokens twice (last limit {max_tokens})"),
                    c.content,
                    &ex,
                ));
            }
            let content = c.content.unwrap_or_default();
            let checked = match serde_json::from_str::<Value>(strip_fences(&content)) {
                Ok(v) => validate(&v, profile),
                Err(e) => Err(vec![format!("$: the answer is not JSON ({e})")]),
            };
            match checked {
                Ok(mut analysis) => {
                    restore(&redactor, &mut analysis);
                    return Ok(Answer {
                        analysis,
                        usage: Some(ex.usage),
                        model: ex.model,
                        attempts: ex.attempts,
                    });
                }
                Err(errors) if !repaired => {
                    repaired = true;
                    tracing::info!(
                        errors = errors.len(),
                        "LLM answer failed validation; asking for a repair"
                    );
                    messages.push(json!({"role": "assistant", "content": content}));
                    messages.push(json!({"role": "user", "content": format!(
                        "Your answer does not match the required JSON schema:\n- {}\nAnswer again with only the corrected JSON object.",
                        errors.join("\n- ")
                    )}));
                }
                Err(errors) => {
                    return Err(failed(
                        format!(
                            "the answer failed validation after one repair: {}",
                            errors.join("; ")
                        ),
                        Some(content),
                        &ex,
                    ));
                }
            }
        }
    }
}

/// Some servers wrap JSON in a Markdown fence even in JSON mode.
fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .unwrap_or(t);
    t.strip_suffix("```").unwrap_or(t).trim()
}

fn parse_completion(bytes: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "LLM response is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    let choice = &v["choices"][0];
    if choice.is_null() {
        return Err("LLM response has no choices".into());
    }
    let text = |x: &Value| x.as_str().map(str::to_string);
    Ok(Completion {
        content: text(&choice["message"]["content"]),
        refusal: text(&choice["message"]["refusal"]),
        finish_reason: text(&choice["finish_reason"]),
        usage: Usage {
            input_tokens: v["usage"]["prompt_tokens"].as_i64().unwrap_or(0),
            output_tokens: v["usage"]["completion_tokens"].as_i64().unwrap_or(0),
        },
        model: text(&v["model"]),
    })
}

/// Placeholders in every string of the answer replaced by the values they stand for.
fn restore(redactor: &Redactor, a: &mut Analysis) {
    let Ok(mut v) = serde_json::to_value(&*a) else {
        return;
    };
    redactor.restore_json(&mut v);
    if let Ok(restored) = serde_json::from_value(v) {
        *a = restored;
    }
}

#[async_trait::async_trait]
impl Analyzer for LlmAnalyzer {
    fn kind(&self) -> &'static str {
        "llm"
    }

    fn model(&self) -> Option<String> {
        Some(self.settings.model.clone())
    }

    async fn analyze(&self, call: &CallInput, profile: &Profile) -> Result<Answer, Failure> {
        let _permit = self.limit.acquire().await.map_err(|_| Failure {
            error: "LLM client is shutting down".into(),
            raw_answer: None,
            usage: None,
            model: self.model(),
            attempts: 0,
            transient: true,
        })?;
        let started = Instant::now();
        let out = self.run(call, profile).await;
        tracing::debug!(
            latency_ms = started.elapsed().as_millis() as u64,
            ok = out.is_ok(),
            "LLM analysis"
        );
        out
    }

    fn cost(&self, usage: &Usage) -> Option<f64> {
        let (i, o) = self.settings.price(&self.settings.model)?;
        Some((usage.input_tokens as f64 * i + usage.output_tokens as f64 * o) / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_prices_match_by_prefix() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = LlmSettings::from_lookup(&env(&[
            ("INSIGHTS_LLM_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("INSIGHTS_LLM_MODEL", "llama3.1"),
            ("INSIGHTS_LLM_PRICES", "llama3.1=0:0, gpt-4o-mini=0.2:0.8"),
        ]))
        .unwrap();
        assert!(s.configured() && s.api_key.is_none());
        assert_eq!(s.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(s.price("gpt-4o-mini-2024-07-18"), Some((0.2, 0.8)));
        assert_eq!(s.price("gpt-4o-2024-08-06"), Some((2.5, 10.0)));
        assert_eq!(s.price("mystery"), None);
        assert!(LlmSettings::from_lookup(&env(&[("INSIGHTS_LLM_TEMPERATURE", "0.7")])).is_err());
        assert!(LlmSettings::from_lookup(&env(&[("INSIGHTS_LLM_PRICES", "bad")])).is_err());
        assert!(!format!("{:?}", LlmSettings::new("http://x", "sk-secret")).contains("sk-secret"));
    }

    #[test]
    fn fenced_json_is_unwrapped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
