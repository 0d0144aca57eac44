//! Gladia v2 pre-recorded: upload the WAV (`POST /v2/upload`, multipart field `audio`), create a job
//! (`POST /v2/pre-recorded`), poll `GET /v2/pre-recorded/{id}` until `done` or `error`. Latency is
//! upload start to the first poll that says `done`, split into upload / queue / processing. Polls
//! every `poll_interval` (150 ms by default, not the SDK's 3 s) so the figure measures Gladia, not us.

use reqwest::multipart::Form;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use super::http::{Answer, Http, malformed, wav_part};
use super::language::to_iso639_1;
use super::{
    Confidence, ConfidenceSource, PhaseTimings, ProviderId, SttError, SttErrorKind, SttProvider,
    SttRequest, Transcription, Word,
};

/// Statuses Gladia documents as transient on top of 429 and 5xx.
const ALSO_RETRY: &[u16] = &[408, 413];

#[derive(Debug)]
pub(crate) struct Gladia {
    http: Http,
    poll_interval: Duration,
}

impl Gladia {
    pub fn new(http: Http, poll_interval: Duration) -> Self {
        Gladia {
            http,
            poll_interval,
        }
    }

    fn json(&self, answer: &Answer) -> Result<Value, SttError> {
        answer.json(ProviderId::Gladia)
    }
}

#[async_trait::async_trait]
impl SttProvider for Gladia {
    fn id(&self) -> ProviderId {
        ProviderId::Gladia
    }

    fn model(&self) -> &str {
        &self.http.model
    }

    fn sample_rate(&self) -> Option<u32> {
        None
    }

    async fn transcribe(&self, request: &SttRequest) -> Result<Transcription, SttError> {
        let started = Instant::now();
        let deadline = started + self.http.timeout;
        let key = self.http.api_key.as_str();
        let upload = self
            .http
            .send(ALSO_RETRY, |client| {
                client
                    .post(self.http.url("/v2/upload"))
                    .header("x-gladia-key", key)
                    .multipart(Form::new().part("audio", wav_part(&request.wav)))
            })
            .await?;
        let upload_done = Instant::now();
        let uploaded = self.json(&upload)?;
        let audio_url = uploaded["audio_url"].as_str().ok_or_else(|| {
            malformed(
                ProviderId::Gladia,
                &upload,
                "upload answer has no `audio_url`",
            )
        })?;
        let mut body = json!({ "audio_url": audio_url });
        if let Some(lang) = &request.language {
            body["language_config"] = json!({ "languages": [lang] });
        }
        let created = self
            .http
            .send(ALSO_RETRY, |client| {
                client
                    .post(self.http.url("/v2/pre-recorded"))
                    .header("x-gladia-key", key)
                    .json(&body)
            })
            .await?;
        let job = self.json(&created)?;
        let id = job["id"]
            .as_str()
            .ok_or_else(|| {
                malformed(
                    ProviderId::Gladia,
                    &created,
                    "create answer has no job `id`",
                )
            })?
            .to_string();
        // Poll the configured endpoint (not `result_url`), so a proxy or a test server stays in the path.
        let poll_url = self.http.url(&format!("/v2/pre-recorded/{id}"));
        let mut processing_since: Option<Instant> = None;
        let mut polls = 0u32;
        let mut poll_retries = 0u32;
        let (result, last) = loop {
            if Instant::now() >= deadline {
                let mut e = SttError::new(
                    ProviderId::Gladia,
                    SttErrorKind::Timeout,
                    format!(
                        "job {id} not done within {} ms ({polls} polls)",
                        self.http.timeout.as_millis()
                    ),
                );
                e.request_id = Some(id);
                return Err(e);
            }
            let answer = self
                .http
                .send(ALSO_RETRY, |client| {
                    client.get(&poll_url).header("x-gladia-key", key)
                })
                .await?;
            polls += 1;
            poll_retries += answer.attempts - 1;
            let v = self.json(&answer)?;
            match v["status"].as_str() {
                Some("queued") => {}
                Some("processing") => {
                    processing_since.get_or_insert_with(Instant::now);
                }
                Some("done") => break (v, answer),
                Some("error") => {
                    let code = v["error_code"]
                        .as_i64()
                        .map(|c| c.to_string())
                        .or_else(|| v["error_code"].as_str().map(str::to_string));
                    let mut e = SttError::new(
                        ProviderId::Gladia,
                        SttErrorKind::Server,
                        format!(
                            "job {id} ended in error{}",
                            code.map(|c| format!(" (error_code {c})"))
                                .unwrap_or_default()
                        ),
                    );
                    e.request_id = Some(id);
                    e.attempts = polls;
                    return Err(e);
                }
                _ => {
                    return Err(malformed(
                        ProviderId::Gladia,
                        &answer,
                        "poll answer has no known `status`",
                    ));
                }
            }
            tokio::time::sleep(self.poll_interval).await;
        };
        let done_at = Instant::now();
        let processing_since = processing_since.unwrap_or(done_at);
        let transcription = &result["result"]["transcription"];
        let transcript = transcription["full_transcript"].as_str().ok_or_else(|| {
            malformed(
                ProviderId::Gladia,
                &last,
                "done, but no result.transcription.full_transcript",
            )
        })?;
        let utterances = transcription["utterances"].as_array();
        let (mut weighted, mut total, mut plain, mut n) = (0.0, 0.0, 0.0, 0usize);
        let mut words = Vec::new();
        for u in utterances.into_iter().flatten() {
            if let Some(c) = u["confidence"].as_f64() {
                let d = (u["end"].as_f64().unwrap_or(0.0) - u["start"].as_f64().unwrap_or(0.0))
                    .max(0.0);
                weighted += c * d;
                total += d;
                plain += c;
                n += 1;
            }
            for w in u["words"].as_array().into_iter().flatten() {
                if let Some(word) = w["word"].as_str() {
                    words.push(Word {
                        word: word.trim().to_string(),
                        start_s: w["start"].as_f64(),
                        end_s: w["end"].as_f64(),
                        confidence: w["confidence"].as_f64(),
                    });
                }
            }
        }
        let confidence = (n > 0).then(|| Confidence {
            value: if total > 0.0 {
                weighted / total
            } else {
                plain / n as f64
            },
            source: ConfidenceSource::UtteranceMean,
        });
        let language = transcription["languages"][0]
            .as_str()
            .or_else(|| utterances.and_then(|u| u.first()?["language"].as_str()))
            .and_then(to_iso639_1);
        let ms = super::ms;
        Ok(Transcription {
            provider: ProviderId::Gladia,
            model: self.http.model.clone(),
            transcript: transcript.trim().to_string(),
            confidence,
            language,
            words,
            latency_ms: ms(done_at - started),
            time_to_headers_ms: ms(upload.headers_after),
            total_ms: ms(started.elapsed()),
            // 1 plus every retry of any of the exchanges (polls themselves are in `phases`).
            attempts: upload.attempts + created.attempts - 1 + poll_retries,
            request_id: result["request_id"]
                .as_str()
                .map(str::to_string)
                .or(Some(id)),
            phases: Some(PhaseTimings {
                upload_ms: ms(upload_done - started),
                queue_ms: ms(processing_since - upload_done),
                processing_ms: ms(done_at - processing_since),
                polls,
            }),
        })
    }
}
