//! Deepgram pre-recorded (`POST /v1/listen`): the WAV as the raw body, options in the query,
//! `Authorization: Token <key>`. Keeps the recording's own sample rate.

use std::time::Instant;

use super::http::{Http, malformed};
use super::language::to_iso639_1;
use super::{
    Confidence, ConfidenceSource, ProviderId, SttError, SttProvider, SttRequest, Transcription,
    Word,
};

#[derive(Debug)]
pub(crate) struct Deepgram {
    http: Http,
}

impl Deepgram {
    pub fn new(http: Http) -> Self {
        Deepgram { http }
    }
}

#[async_trait::async_trait]
impl SttProvider for Deepgram {
    fn id(&self) -> ProviderId {
        ProviderId::Deepgram
    }

    fn model(&self) -> &str {
        &self.http.model
    }

    fn sample_rate(&self) -> Option<u32> {
        None
    }

    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        let started = Instant::now();
        let mut query = vec![
            ("model", self.http.model.clone()),
            ("smart_format", "true".to_string()),
        ];
        match &request.language {
            Some(lang) => query.push(("language", lang.clone())),
            None => query.push(("detect_language", "true".to_string())),
        }
        let answer = self
            .http
            .send(&[], |client| {
                client
                    .post(self.http.url("/v1/listen"))
                    .query(&query)
                    .header("authorization", format!("Token {}", self.http.api_key))
                    .header("content-type", "audio/wav")
                    .body(request.wav.clone())
            })
            .await?;
        let v = answer.json(ProviderId::Deepgram)?;
        let channel = &v["results"]["channels"][0];
        let alt = &channel["alternatives"][0];
        let transcript = alt["transcript"].as_str().ok_or_else(|| {
            malformed(
                ProviderId::Deepgram,
                &answer,
                "no results.channels[0].alternatives[0].transcript",
            )
        })?;
        let words = alt["words"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .filter_map(|w| {
                        Some(Word {
                            word: w["punctuated_word"]
                                .as_str()
                                .or(w["word"].as_str())?
                                .to_string(),
                            start_s: w["start"].as_f64(),
                            end_s: w["end"].as_f64(),
                            confidence: w["confidence"].as_f64(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Transcription {
            provider: ProviderId::Deepgram,
            model: self.http.model.clone(),
            transcript: transcript.trim().to_string(),
            confidence: alt["confidence"].as_f64().map(|value| Confidence {
                value,
                source: ConfidenceSource::Reported,
            }),
            language: channel["detected_language"].as_str().and_then(to_iso639_1),
            words,
            latency_ms: super::ms(answer.latency),
            time_to_headers_ms: super::ms(answer.headers_after),
            total_ms: super::ms(started.elapsed()),
            attempts: answer.attempts,
            request_id: v["metadata"]["request_id"]
                .as_str()
                .map(str::to_string)
                .or_else(|| answer.request_id()),
            phases: None,
        })
    }
}
