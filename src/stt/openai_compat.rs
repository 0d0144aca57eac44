//! OpenAI-compatible transcription (`POST /audio/transcriptions`): OpenAI itself and self-hosted
//! servers (whisper.cpp server, speaches, vLLM). Whisper-family models get `verbose_json` (segments,
//! words, language); `gpt-4o-*` models get `json` with `include[]=logprobs`. Only `text` is required,
//! since self-hosted servers treat every other field as optional; an error sent with HTTP 200 (old
//! whisper.cpp builds) is still an error.

use reqwest::multipart::Form;
use serde_json::Value;
use std::time::Instant;

use super::http::{Answer, Http, malformed, wav_part};
use super::language::to_iso639_1;
use super::{
    Confidence, ConfidenceSource, ProviderId, SttError, SttErrorKind, SttProvider, SttRequest,
    Transcription,
};

#[derive(Debug)]
pub(crate) struct OpenAiCompatible {
    http: Http,
}

impl OpenAiCompatible {
    pub fn new(http: Http) -> Self {
        OpenAiCompatible { http }
    }

    /// `gpt-4o-transcribe` and its kin do not support `verbose_json`; they give token logprobs.
    fn token_logprob_model(&self) -> bool {
        self.http.model.starts_with("gpt-4o")
    }
}

#[async_trait::async_trait]
impl SttProvider for OpenAiCompatible {
    fn id(&self) -> ProviderId {
        ProviderId::Openai
    }

    fn model(&self) -> &str {
        &self.http.model
    }

    fn sample_rate(&self) -> Option<u32> {
        Some(16_000)
    }

    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        let started = Instant::now();
        let logprobs = self.token_logprob_model();
        let answer = self
            .http
            .send(&[], |client| {
                let mut form = Form::new()
                    .part("file", wav_part(&request.wav))
                    .text("model", self.http.model.clone());
                form = if logprobs {
                    form.text("response_format", "json")
                        .text("include[]", "logprobs")
                } else {
                    form.text("response_format", "verbose_json")
                        .text("timestamp_granularities[]", "word")
                        .text("timestamp_granularities[]", "segment")
                };
                if let Some(lang) = &request.language {
                    form = form.text("language", lang.clone());
                }
                client
                    .post(self.http.url("/audio/transcriptions"))
                    .bearer_auth(&self.http.api_key)
                    .multipart(form)
            })
            .await?;
        whisper_transcription(ProviderId::Openai, &self.http.model, &answer, started)
    }
}

/// A Whisper-style answer (`text`, optional `language`, `segments`, `words`, `logprobs`) as a
/// transcription. Shared with Groq, whose API is OpenAI's.
pub(crate) fn whisper_transcription(
    provider: ProviderId,
    model: &str,
    answer: &Answer,
    started: Instant,
) -> Result<Transcription, SttError> {
    let v = answer.json(provider)?;
    if v.get("text").is_none()
        && let Some(err) = v.get("error")
    {
        // Old whisper.cpp servers answer failures with HTTP 200.
        let message = err["message"]
            .as_str()
            .or(err.as_str())
            .unwrap_or("error without a message")
            .to_string();
        let mut e = SttError::new(provider, SttErrorKind::Server, message);
        e.status = Some(200);
        e.attempts = answer.attempts;
        return Err(e);
    }
    let transcript = v["text"]
        .as_str()
        .ok_or_else(|| malformed(provider, answer, "no `text` in the answer"))?
        .trim()
        .to_string();
    let words = super::timed_words(&v["words"]);
    let request_id = v["x_groq"]["id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| answer.request_id());
    Ok(Transcription {
        provider,
        model: model.to_string(),
        transcript,
        confidence: segment_confidence(&v).or_else(|| token_confidence(&v)),
        language: v["language"].as_str().and_then(to_iso639_1),
        words,
        latency_ms: super::ms(answer.latency),
        time_to_headers_ms: super::ms(answer.headers_after),
        total_ms: super::ms(started.elapsed()),
        attempts: answer.attempts,
        request_id,
        phases: None,
    })
}

/// `exp` of the duration-weighted mean `avg_logprob` of the segments (plain mean when the segments
/// carry no duration).
fn segment_confidence(v: &Value) -> Option<Confidence> {
    let segments = v["segments"].as_array()?;
    let (mut weighted, mut total, mut plain, mut n) = (0.0, 0.0, 0.0, 0usize);
    for s in segments {
        let Some(lp) = s["avg_logprob"].as_f64() else {
            continue;
        };
        let d = (s["end"].as_f64().unwrap_or(0.0) - s["start"].as_f64().unwrap_or(0.0)).max(0.0);
        weighted += lp * d;
        total += d;
        plain += lp;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mean = if total > 0.0 {
        weighted / total
    } else {
        plain / n as f64
    };
    Some(Confidence {
        value: mean.exp(),
        source: ConfidenceSource::SegmentLogprob,
    })
}

/// `exp` of the mean token logprob (`include[]=logprobs`).
fn token_confidence(v: &Value) -> Option<Confidence> {
    let lps: Vec<f64> = v["logprobs"]
        .as_array()?
        .iter()
        .filter_map(|t| t["logprob"].as_f64())
        .collect();
    (!lps.is_empty()).then(|| Confidence {
        value: (lps.iter().sum::<f64>() / lps.len() as f64).exp(),
        source: ConfidenceSource::TokenLogprob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segment_confidence_weights_by_duration() {
        let v = json!({"segments": [
            {"start": 0.0, "end": 3.0, "avg_logprob": -0.1},
            {"start": 3.0, "end": 4.0, "avg_logprob": -0.5},
        ]});
        let c = segment_confidence(&v).unwrap();
        assert!((c.value - (-0.2f64).exp()).abs() < 1e-12);
        assert_eq!(c.source, ConfidenceSource::SegmentLogprob);
        assert_eq!(segment_confidence(&json!({"segments": []})), None);
    }

    #[test]
    fn token_confidence_is_the_exp_of_the_mean_logprob() {
        let v = json!({"text": "hi", "logprobs": [{"token": "hi", "logprob": -0.2}, {"token": "!", "logprob": -0.4}]});
        assert!((token_confidence(&v).unwrap().value - (-0.3f64).exp()).abs() < 1e-12);
    }
}
