//! Groq (`POST /openai/v1/audio/transcriptions`, OpenAI's API shape). Groq downsamples to 16 kHz
//! mono and bills at least 10 s per request, so it is sent 16 kHz mono.

use reqwest::multipart::Form;
use std::time::Instant;

use super::http::{Http, wav_part};
use super::openai_compat::whisper_transcription;
use super::{ProviderId, SttError, SttProvider, SttRequest, Transcription};

#[derive(Debug)]
pub(crate) struct Groq {
    http: Http,
}

impl Groq {
    pub fn new(http: Http) -> Self {
        Groq { http }
    }
}

#[async_trait::async_trait]
impl SttProvider for Groq {
    fn id(&self) -> ProviderId {
        ProviderId::Groq
    }

    fn model(&self) -> &str {
        &self.http.model
    }

    fn sample_rate(&self) -> Option<u32> {
        Some(16_000)
    }

    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        let started = Instant::now();
        let answer = self
            .http
            .send(&[], |client| {
                let mut form = Form::new()
                    .part("file", wav_part(&request.wav))
                    .text("model", self.http.model.clone())
                    .text("response_format", "verbose_json")
                    .text("timestamp_granularities[]", "word")
                    .text("timestamp_granularities[]", "segment");
                if let Some(lang) = &request.language {
                    form = form.text("language", lang.clone());
                }
                client
                    .post(self.http.url("/openai/v1/audio/transcriptions"))
                    .bearer_auth(&self.http.api_key)
                    .multipart(form)
            })
            .await?;
        whisper_transcription(ProviderId::Groq, &self.http.model, &answer, started)
    }
}
