//! ElevenLabs Scribe (`POST /v1/speech-to-text`, multipart, `xi-api-key`). The answer carries no
//! transcript confidence; it is derived as `exp(mean(logprob))` over the words (`type` = `word`).
//! Languages come back as ISO-639-3 (`eng`).

use reqwest::multipart::Form;
use std::time::Instant;

use super::http::{Http, malformed, wav_part};
use super::language::to_iso639_1;
use super::{
    Confidence, ConfidenceSource, ProviderId, SttError, SttProvider, SttRequest, Transcription,
    Word,
};

#[derive(Debug)]
pub(crate) struct ElevenLabs {
    http: Http,
}

impl ElevenLabs {
    pub fn new(http: Http) -> Self {
        ElevenLabs { http }
    }
}

#[async_trait::async_trait]
impl SttProvider for ElevenLabs {
    fn id(&self) -> ProviderId {
        ProviderId::Elevenlabs
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
                    .text("model_id", self.http.model.clone())
                    .text("tag_audio_events", "false")
                    .text("timestamps_granularity", "word");
                if let Some(lang) = &request.language {
                    form = form.text("language_code", lang.clone());
                }
                client
                    .post(self.http.url("/v1/speech-to-text"))
                    .header("xi-api-key", &self.http.api_key)
                    .multipart(form)
            })
            .await?;
        let v = answer.json(ProviderId::Elevenlabs)?;
        let transcript = v["text"]
            .as_str()
            .ok_or_else(|| malformed(ProviderId::Elevenlabs, &answer, "no `text` in the answer"))?;
        let mut logprobs = Vec::new();
        let words = v["words"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .filter(|w| w["type"].as_str().unwrap_or("word") == "word")
                    .filter_map(|w| {
                        let lp = w["logprob"].as_f64();
                        logprobs.extend(lp);
                        Some(Word {
                            word: w["text"].as_str()?.trim().to_string(),
                            start_s: w["start"].as_f64(),
                            end_s: w["end"].as_f64(),
                            confidence: lp.map(f64::exp),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Transcription {
            provider: ProviderId::Elevenlabs,
            model: self.http.model.clone(),
            transcript: transcript.trim().to_string(),
            confidence: (!logprobs.is_empty()).then(|| Confidence {
                value: (logprobs.iter().sum::<f64>() / logprobs.len() as f64).exp(),
                source: ConfidenceSource::TokenLogprob,
            }),
            language: v["language_code"].as_str().and_then(to_iso639_1),
            words,
            latency_ms: super::ms(answer.latency),
            time_to_headers_ms: super::ms(answer.headers_after),
            total_ms: super::ms(started.elapsed()),
            attempts: answer.attempts,
            request_id: v["transcription_id"]
                .as_str()
                .map(str::to_string)
                .or_else(|| answer.request_id()),
            phases: None,
        })
    }
}
