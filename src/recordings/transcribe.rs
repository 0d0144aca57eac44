//! Whole-recording transcription with speakers through Deepgram, AssemblyAI, Gladia v2, ElevenLabs
//! Scribe and OpenAI-compatible servers: per channel for multi-channel files, diarized for mono. Every
//! provider goes through the STT layer's HTTP exchange (its keys, base URLs, retry policy); answers are
//! normalised to seconds, 0-based channels and the provider's speaker labels, and the raw JSON is kept.
//! The file is streamed from disk on every attempt, never read whole.

use super::turns::Word;
use crate::stt::http::{Answer, Http, malformed};
use crate::stt::{ProviderConfig, ProviderId, SttError, SttErrorKind};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The providers that transcribe recordings.
pub const PROVIDERS: [ProviderId; 5] = [
    ProviderId::Deepgram,
    ProviderId::Assemblyai,
    ProviderId::Gladia,
    ProviderId::Elevenlabs,
    ProviderId::Openai,
];

/// The audio to transcribe: the stored original, on local disk.
#[derive(Debug, Clone)]
pub struct Audio {
    pub path: PathBuf,
    pub content_type: String,
    pub extension: Option<String>,
    pub channels: usize,
    pub language: Option<String>,
    /// Where per-channel WAVs may be written (OpenAI-compatible servers).
    pub scratch: PathBuf,
}

/// A provider's transcript of a whole recording.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub provider: ProviderId,
    pub model: String,
    pub language: Option<String>,
    pub words: Vec<Word>,
    /// The provider's answer as it sent it (one per channel for OpenAI-compatible servers).
    pub raw: Value,
    pub request_id: Option<String>,
}

impl Transcript {
    pub fn text(&self) -> String {
        self.words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One provider's recording client.
#[derive(Debug, Clone)]
pub struct Transcriber {
    http: Http,
    poll_interval: Duration,
}

fn file_body(path: &Path) -> reqwest::Body {
    match std::fs::File::open(path) {
        Ok(f) => reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
            tokio::fs::File::from_std(f),
        )),
        // Vanished between attempts: an empty body, which the provider refuses as a bad request.
        Err(_) => reqwest::Body::from(Vec::<u8>::new()),
    }
}

fn file_part(audio: &Audio) -> Part {
    let name = format!("recording.{}", audio.extension.as_deref().unwrap_or("wav"));
    let part = Part::stream(file_body(&audio.path)).file_name(name);
    part.mime_str(&audio.content_type)
        .unwrap_or_else(|_| Part::stream(file_body(&audio.path)).file_name("recording"))
}

fn secs(v: &Value) -> Option<f64> {
    v.as_f64()
}

impl Transcriber {
    /// A client of `config`'s provider; `timeout` bounds each request (a long recording takes long).
    pub fn new(client: reqwest::Client, config: &ProviderConfig, timeout: Duration) -> Self {
        let mut http = Http::new(client, config);
        http.timeout = timeout;
        Transcriber {
            http,
            poll_interval: config.poll_interval,
        }
    }

    pub fn provider(&self) -> ProviderId {
        self.http.id
    }

    pub fn model(&self) -> &str {
        &self.http.model
    }

    /// Transcribes the whole recording with `model` (the provider's configured one when `None`).
    pub async fn transcribe(
        &self,
        audio: &Audio,
        model: Option<&str>,
    ) -> Result<Transcript, SttError> {
        let mut http = self.http.clone();
        if let Some(m) = model.filter(|m| !m.trim().is_empty()) {
            http.model = m.trim().to_string();
        }
        let this = Transcriber {
            http,
            poll_interval: self.poll_interval,
        };
        match this.http.id {
            ProviderId::Deepgram => this.deepgram(audio).await,
            ProviderId::Assemblyai => this.assemblyai(audio).await,
            ProviderId::Gladia => this.gladia(audio).await,
            ProviderId::Elevenlabs => this.elevenlabs(audio).await,
            ProviderId::Openai => this.openai(audio).await,
            other => Err(SttError::new(
                other,
                SttErrorKind::BadRequest,
                format!(
                    "{other} does not transcribe recordings (use deepgram, assemblyai, gladia, elevenlabs or openai)"
                ),
            )),
        }
    }

    fn done(
        &self,
        mut words: Vec<Word>,
        raw: Value,
        language: Option<String>,
        request_id: Option<String>,
    ) -> Transcript {
        // Time order, whatever order the provider grouped them in (by channel, by utterance).
        words.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.channel.cmp(&b.channel)));
        Transcript {
            provider: self.http.id,
            model: self.http.model.clone(),
            language,
            words,
            raw,
            request_id,
        }
    }

    fn json(&self, a: &Answer) -> Result<Value, SttError> {
        a.json(self.http.id)
    }

    async fn deepgram(&self, audio: &Audio) -> Result<Transcript, SttError> {
        let multi = audio.channels > 1;
        let mut query = vec![
            ("model", self.http.model.clone()),
            ("utterances", "true".into()),
            ("smart_format", "true".into()),
            ("punctuate", "true".into()),
        ];
        query.push(if multi {
            ("multichannel", "true".into())
        } else {
            ("diarize", "true".into())
        });
        match &audio.language {
            Some(l) => query.push(("language", l.clone())),
            None => query.push(("detect_language", "true".into())),
        }
        let key = format!("Token {}", self.http.api_key);
        let answer = self
            .http
            .send(&[], |c| {
                c.post(self.http.url("/v1/listen"))
                    .query(&query)
                    .header("authorization", &key)
                    .header("content-type", &audio.content_type)
                    .body(file_body(&audio.path))
            })
            .await?;
        let v = self.json(&answer)?;
        let channels = v["results"]["channels"]
            .as_array()
            .ok_or_else(|| malformed(ProviderId::Deepgram, &answer, "no results.channels"))?;
        let mut words = Vec::new();
        let mut language = None;
        for (ch, channel) in channels.iter().enumerate() {
            language =
                language.or_else(|| channel["detected_language"].as_str().map(str::to_string));
            for w in channel["alternatives"][0]["words"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let (Some(start), Some(end)) = (secs(&w["start"]), secs(&w["end"])) else {
                    continue;
                };
                let Some(text) = w["punctuated_word"].as_str().or(w["word"].as_str()) else {
                    continue;
                };
                words.push(Word {
                    text: text.to_string(),
                    start,
                    end,
                    confidence: w["confidence"].as_f64(),
                    channel: ch as u32,
                    speaker: w["speaker"].as_i64().map(|s| s.to_string()),
                });
            }
        }
        let request_id = v["metadata"]["request_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| answer.request_id());
        Ok(self.done(
            words,
            v,
            language.or_else(|| audio.language.clone()),
            request_id,
        ))
    }

    /// Creates a job (`POST create_path` with `body`), then polls `{poll_prefix}{id}` until its
    /// `status` is `finished` (the answer and the job id) or `error` (`Err`, with the provider's
    /// message). AssemblyAI and Gladia share this shape.
    async fn run_job(
        &self,
        create_path: &str,
        poll_prefix: &str,
        body: &Value,
        auth: (&str, &str),
        also_retry: &[u16],
        finished: &str,
    ) -> Result<(Value, String), SttError> {
        let created = self
            .http
            .send(also_retry, |c| {
                c.post(self.http.url(create_path))
                    .header(auth.0, auth.1)
                    .json(body)
            })
            .await?;
        let job = self
            .json(&created)?
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(self.http.id, &created, "create answer has no job `id`"))?;
        let url = self.http.url(&format!("{poll_prefix}{job}"));
        let deadline = Instant::now() + self.http.timeout;
        let mut polls = 0u32;
        loop {
            let answer = self
                .http
                .send(also_retry, |c| c.get(&url).header(auth.0, auth.1))
                .await?;
            polls += 1;
            let v = self.json(&answer)?;
            let status = v["status"].as_str().unwrap_or_default();
            if status == finished {
                return Ok((v, job));
            }
            if status == "error" {
                let msg = v["error"]
                    .as_str()
                    .or(v["error_message"].as_str())
                    .unwrap_or("the job ended in error");
                let mut e = SttError::new(
                    self.http.id,
                    SttErrorKind::Server,
                    format!("job {job}: {msg}"),
                );
                e.request_id = Some(job);
                return Err(e);
            }
            if status.is_empty() {
                return Err(malformed(
                    self.http.id,
                    &answer,
                    "poll answer has no `status`",
                ));
            }
            if Instant::now() >= deadline {
                let mut e = SttError::new(
                    self.http.id,
                    SttErrorKind::Timeout,
                    format!(
                        "job {job} not done within {} ms ({polls} polls)",
                        self.http.timeout.as_millis()
                    ),
                );
                e.request_id = Some(job);
                return Err(e);
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    async fn assemblyai(&self, audio: &Audio) -> Result<Transcript, SttError> {
        let key = self.http.api_key.as_str();
        let upload = self
            .http
            .send(&[], |c| {
                c.post(self.http.url("/v2/upload"))
                    .header("authorization", key)
                    .header("content-type", "application/octet-stream")
                    .body(file_body(&audio.path))
            })
            .await?;
        let up = self.json(&upload)?;
        let audio_url = up["upload_url"].as_str().ok_or_else(|| {
            malformed(
                ProviderId::Assemblyai,
                &upload,
                "upload answer has no `upload_url`",
            )
        })?;
        let mut body = json!({ "audio_url": audio_url, "speech_model": self.http.model });
        if audio.channels > 1 {
            body["multichannel"] = json!(true);
        } else {
            body["speaker_labels"] = json!(true);
        }
        match &audio.language {
            Some(l) => body["language_code"] = json!(l),
            None => body["language_detection"] = json!(true),
        }
        let (v, id) = self
            .run_job(
                "/v2/transcript",
                "/v2/transcript/",
                &body,
                ("authorization", key),
                &[],
                "completed",
            )
            .await?;
        // Milliseconds; channels are 1-based strings; speakers "A", "B" (or "1A" with channels).
        let mut words = Vec::new();
        for w in v["words"].as_array().into_iter().flatten() {
            let (Some(start), Some(end), Some(text)) =
                (w["start"].as_f64(), w["end"].as_f64(), w["text"].as_str())
            else {
                continue;
            };
            let channel = w["channel"]
                .as_str()
                .and_then(|c| c.parse::<u32>().ok())
                .or_else(|| w["channel"].as_u64().map(|c| c as u32))
                .map(|c| c.saturating_sub(1))
                .unwrap_or(0);
            words.push(Word {
                text: text.to_string(),
                start: start / 1000.0,
                end: end / 1000.0,
                confidence: w["confidence"].as_f64(),
                channel,
                speaker: w["speaker"].as_str().map(str::to_string),
            });
        }
        let language = v["language_code"].as_str().map(str::to_string);
        Ok(self.done(
            words,
            v,
            language.or_else(|| audio.language.clone()),
            Some(id),
        ))
    }

    async fn gladia(&self, audio: &Audio) -> Result<Transcript, SttError> {
        let key = self.http.api_key.as_str();
        let upload = self
            .http
            .send(&[408, 413], |c| {
                c.post(self.http.url("/v2/upload"))
                    .header("x-gladia-key", key)
                    .multipart(Form::new().part("audio", file_part(audio)))
            })
            .await?;
        let up = self.json(&upload)?;
        let audio_url = up["audio_url"].as_str().ok_or_else(|| {
            malformed(
                ProviderId::Gladia,
                &upload,
                "upload answer has no `audio_url`",
            )
        })?;
        let mut body = json!({ "audio_url": audio_url });
        if audio.channels <= 1 {
            body["diarization"] = json!(true);
        }
        if let Some(l) = &audio.language {
            body["language_config"] = json!({ "languages": [l] });
        }
        let (v, id) = self
            .run_job(
                "/v2/pre-recorded",
                "/v2/pre-recorded/",
                &body,
                ("x-gladia-key", key),
                &[408, 413],
                "done",
            )
            .await?;
        let utterances = v["result"]["transcription"]["utterances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Channels may be 0- or 1-based: a channel number equal to the channel count says 1-based.
        let one_based = audio.channels > 0
            && utterances
                .iter()
                .any(|u| u["channel"].as_u64() == Some(audio.channels as u64));
        let mut words = Vec::new();
        let mut language = None;
        for u in &utterances {
            language = language.or_else(|| u["language"].as_str().map(str::to_string));
            let channel = u["channel"].as_u64().unwrap_or(0) as u32;
            let channel = if one_based {
                channel.saturating_sub(1)
            } else {
                channel
            };
            let speaker = u["speaker"]
                .as_i64()
                .map(|s| s.to_string())
                .or_else(|| u["speaker"].as_str().map(str::to_string));
            for w in u["words"].as_array().into_iter().flatten() {
                let (Some(start), Some(end), Some(text)) =
                    (w["start"].as_f64(), w["end"].as_f64(), w["word"].as_str())
                else {
                    continue;
                };
                words.push(Word {
                    text: text.trim().to_string(),
                    start,
                    end,
                    confidence: w["confidence"].as_f64(),
                    channel,
                    speaker: if audio.channels > 1 {
                        None
                    } else {
                        speaker.clone()
                    },
                });
            }
        }
        Ok(self.done(
            words,
            v,
            language.or_else(|| audio.language.clone()),
            Some(id),
        ))
    }

    async fn elevenlabs(&self, audio: &Audio) -> Result<Transcript, SttError> {
        let multi = audio.channels > 1;
        let key = self.http.api_key.as_str();
        let answer = self
            .http
            .send(&[], |c| {
                let mut form = Form::new()
                    .text("model_id", self.http.model.clone())
                    .text("timestamps_granularity", "word")
                    .part("file", file_part(audio));
                form = if multi {
                    form.text("use_multi_channel", "true")
                } else {
                    form.text("diarize", "true")
                };
                if let Some(l) = &audio.language {
                    form = form.text("language_code", l.clone());
                }
                c.post(self.http.url("/v1/speech-to-text"))
                    .header("xi-api-key", key)
                    .multipart(form)
            })
            .await?;
        let v = self.json(&answer)?;
        let per_channel: Vec<(u32, &Value)> = match v["transcripts"].as_array() {
            Some(ts) => ts
                .iter()
                .enumerate()
                .map(|(i, t)| (t["channel_index"].as_u64().unwrap_or(i as u64) as u32, t))
                .collect(),
            None => vec![(0, &v)],
        };
        if per_channel
            .iter()
            .all(|(_, t)| t["words"].as_array().is_none())
        {
            return Err(malformed(
                ProviderId::Elevenlabs,
                &answer,
                "no `words` in the answer",
            ));
        }
        let mut words = Vec::new();
        let mut language = None;
        for (channel, t) in per_channel {
            language = language.or_else(|| t["language_code"].as_str().map(str::to_string));
            for w in t["words"].as_array().into_iter().flatten() {
                if w["type"].as_str().is_some_and(|k| k != "word") {
                    continue;
                }
                let (Some(start), Some(end), Some(text)) =
                    (w["start"].as_f64(), w["end"].as_f64(), w["text"].as_str())
                else {
                    continue;
                };
                words.push(Word {
                    text: text.trim().to_string(),
                    start,
                    end,
                    confidence: w["logprob"].as_f64().map(f64::exp),
                    channel,
                    speaker: if multi {
                        None
                    } else {
                        w["speaker_id"].as_str().map(str::to_string)
                    },
                });
            }
        }
        let language = language.and_then(|l| crate::stt::language::to_iso639_1(&l));
        Ok(self.done(
            words,
            v,
            language.or_else(|| audio.language.clone()),
            answer.request_id(),
        ))
    }

    /// No diarization: each channel is cut out locally and sent on its own.
    async fn openai(&self, audio: &Audio) -> Result<Transcript, SttError> {
        let mut words = Vec::new();
        let mut raws = Vec::new();
        let mut language = None;
        let channels = audio.channels.max(1);
        for ch in 0..channels {
            let path = if channels == 1 {
                audio.path.clone()
            } else {
                let out = audio.scratch.join(format!("channel-{ch}.wav"));
                let (src, ext, dst) = (audio.path.clone(), audio.extension.clone(), out.clone());
                tokio::task::spawn_blocking(move || {
                    super::decode::extract_channel(&src, ext.as_deref(), ch, &dst)
                })
                .await
                .map_err(|e| {
                    SttError::new(ProviderId::Openai, SttErrorKind::BadRequest, e.to_string())
                })?
                .map_err(|e| {
                    SttError::new(ProviderId::Openai, SttErrorKind::BadRequest, e.to_string())
                })?;
                out
            };
            let (content_type, ext) = if channels == 1 {
                (
                    audio.content_type.clone(),
                    audio.extension.clone().unwrap_or_else(|| "wav".into()),
                )
            } else {
                ("audio/wav".to_string(), "wav".to_string())
            };
            let key = format!("Bearer {}", self.http.api_key);
            let answer = self
                .http
                .send(&[], |c| {
                    let part =
                        Part::stream(file_body(&path)).file_name(format!("channel-{ch}.{ext}"));
                    let part = part.mime_str(&content_type).unwrap_or_else(|_| {
                        Part::stream(file_body(&path)).file_name(format!("channel-{ch}.{ext}"))
                    });
                    let mut form = Form::new()
                        .text("model", self.http.model.clone())
                        .text("response_format", "verbose_json")
                        .text("timestamp_granularities[]", "word")
                        .part("file", part);
                    if let Some(l) = &audio.language {
                        form = form.text("language", l.clone());
                    }
                    c.post(self.http.url("/audio/transcriptions"))
                        .header("authorization", &key)
                        .multipart(form)
                })
                .await?;
            let v = self.json(&answer)?;
            let Some(ws) = v["words"].as_array() else {
                return Err(malformed(
                    ProviderId::Openai,
                    &answer,
                    "no word timestamps (`words`) in the verbose_json answer",
                ));
            };
            language = language.or_else(|| v["language"].as_str().map(str::to_string));
            for w in ws {
                let (Some(start), Some(end), Some(text)) =
                    (w["start"].as_f64(), w["end"].as_f64(), w["word"].as_str())
                else {
                    continue;
                };
                words.push(Word {
                    text: text.trim().to_string(),
                    start,
                    end,
                    confidence: None,
                    channel: ch as u32,
                    speaker: None,
                });
            }
            raws.push(v);
        }
        let language = language.and_then(|l| crate::stt::language::to_iso639_1(&l));
        Ok(self.done(
            words,
            Value::Array(raws),
            language.or_else(|| audio.language.clone()),
            None,
        ))
    }
}
