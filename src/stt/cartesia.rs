//! Cartesia batch STT (`POST /stt`, multipart): `Authorization: Bearer` plus the `Cartesia-Version`
//! header the API requires. No confidence in the answer.

use reqwest::multipart::Form;
use std::time::Instant;

use super::http::{Http, malformed, wav_part};
use super::language::to_iso639_1;
use super::{ProviderId, SttError, SttProvider, SttRequest, Transcription};

/// API version sent with every request (Cartesia dates its versions).
pub(crate) const CARTESIA_VERSION: &str = "2026-08-14";

#[derive(Debug)]
pub(crate) struct Cartesia {
    http: Http,
}

impl Cartesia {
    pub fn new(http: Http) -> Self {
        Cartesia { http }
    }
}

#[async_trait::async_trait]
impl SttProvider for Cartesia {
    fn id(&self) -> ProviderId {
        ProviderId::Cartesia
    }

    fn model(&self) -> &str {
        &self.http.model
    }

    fn sample_rate(&self) -> Option<u32> {
        None
    }

    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        let started = Instant::now();
        let answer = self
            .http
            .send(&[], |client| {
                let mut form = Form::new()
                    .part("file", wav_part(&request.wav))
                    .text("model", self.http.model.clone())
                    .text("timestamp_granularities[]", "word");
                if let Some(lang) = &request.language {
                    form = form.text("language", lang.clone());
                }
                client
                    .post(self.http.url("/stt"))
                    .bearer_auth(&self.http.api_key)
                    .header("cartesia-version", CARTESIA_VERSION)
                    .multipart(form)
            })
            .await?;
        let v = answer.json(ProviderId::Cartesia)?;
        let transcript = v["text"]
            .as_str()
            .ok_or_else(|| malformed(ProviderId::Cartesia, &answer, "no `text` in the answer"))?;
        let words = super::timed_words(&v["words"]);
        Ok(Transcription {
            provider: ProviderId::Cartesia,
            model: self.http.model.clone(),
            transcript: transcript.trim().to_string(),
            confidence: None,
            language: v["language"].as_str().and_then(to_iso639_1),
            words,
            latency_ms: super::ms(answer.latency),
            time_to_headers_ms: super::ms(answer.headers_after),
            total_ms: super::ms(started.elapsed()),
            attempts: answer.attempts,
            request_id: v["request_id"]
                .as_str()
                .map(str::to_string)
                .or_else(|| answer.request_id()),
            phases: None,
        })
    }
}
