//! Replays a stored session's user turns through the configured STT providers: for each turn its
//! three renditions (`pre_rnnoise`, `post_rnnoise`, `stt_input`) are cut from the stored audio, sent
//! to every provider in parallel (each bounded by its process-wide limit), and scored. The result is
//! the grid turns × renditions × providers with transcript, confidence, latency, clipping and WER —
//! missing renditions and provider errors in their cells, never dropped.

use bytes::Bytes;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

use crate::audio::{self, Clipping, DecodedAudio, Rendition, RenditionKind};
use crate::storage::AudioStore;
use crate::stt::wer::{self, Normalizer, WerCounts, WerScore};
use crate::stt::{
    BoundedProvider, Priority, ProviderId, SttError, SttProviders, SttRequest, Transcription,
};
use entity::{audio_segments, call_sessions, conversation_turns};

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Providers to use (all configured when `None`).
    pub providers: Option<Vec<ProviderId>>,
    /// User turns to replay (all when `None`).
    pub turns: Option<Vec<i64>>,
    /// Language hint for the providers and the WER normaliser (`en` → English normaliser).
    pub language: Option<String>,
    /// Only sessions of this tenant.
    pub tenant: Option<String>,
    /// Interactive callers are served before batch work by each provider's limiter.
    pub priority: Priority,
    /// What the user actually said (a report's `expected_output`): every cell is also scored
    /// against it (`wer_vs_expected`).
    pub expected: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("session {0} not found")]
    SessionNotFound(Uuid),
    #[error("no STT provider is configured (set INSIGHTS_<PROVIDER>_API_KEY)")]
    NoProviders,
    #[error("provider {0} is not configured")]
    ProviderNotConfigured(ProviderId),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    pub provider: ProviderId,
    pub model: String,
    /// Rate the provider is sent; `None` = the recording's own.
    pub sample_rate: Option<u32>,
}

/// The replay grid of one session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionReplay {
    pub session_id: Uuid,
    pub call_id: String,
    pub tenant_id: String,
    pub language: Option<String>,
    pub normalizer: Normalizer,
    pub providers: Vec<ProviderInfo>,
    pub turns: Vec<TurnReplay>,
    /// Wall time of the whole replay.
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TurnReplay {
    pub turn_index: i64,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// What the agent's own STT produced for this turn. WER against it measures how far a provider
    /// is from the live transcript, not from the truth.
    pub original_transcript: String,
    pub renditions: Vec<RenditionReplay>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenditionStatus {
    Available,
    Missing,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RenditionReplay {
    pub rendition: RenditionKind,
    pub status: RenditionStatus,
    /// Why the rendition could not be made (segment absent, audio not stored, turn outside it, …).
    pub missing_reason: Option<String>,
    pub segment_id: Option<String>,
    pub sample_rate: Option<u32>,
    pub duration_ms: Option<f64>,
    pub clipping: Option<Clipping>,
    /// Set when the turn reaches past the recording and the slice was shortened.
    pub note: Option<String>,
    pub results: Vec<ProviderResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Ok,
    Error,
}

/// One cell: a provider's answer for one rendition of one turn.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderResult {
    pub provider: ProviderId,
    pub model: String,
    pub status: ResultStatus,
    pub transcription: Option<Transcription>,
    pub error: Option<SttError>,
    /// Against the turn's original (live) transcript: distance from what the agent's STT heard,
    /// not from the truth.
    pub wer_vs_original: Option<WerScore>,
    /// Against what the user actually said (a report's `expected_output`), when known.
    pub wer_vs_expected: Option<WerScore>,
    /// Agreement with the other providers on the same audio: this transcript scored against each
    /// other provider's as reference, counts summed. Agreement, not accuracy.
    pub agreement: Option<Agreement>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agreement {
    pub wer: f64,
    pub counts: WerCounts,
    pub against: Vec<ProviderId>,
}

/// A turn's audio inputs, resolved before any provider is called.
struct TurnInput {
    turn: conversation_turns::Model,
    renditions: Vec<PreparedRendition>,
}

struct PreparedRendition {
    kind: RenditionKind,
    segment_id: Option<String>,
    outcome: Result<(Rendition, HashMap<Option<u32>, Bytes>), String>,
}

/// Replays a session. Fails only when the session or the providers are unusable; everything else
/// ends up in a cell.
pub async fn replay_session(
    db: &DatabaseConnection,
    store: Arc<dyn AudioStore>,
    stt: &SttProviders,
    session_id: Uuid,
    options: &ReplayOptions,
) -> Result<SessionReplay, ReplayError> {
    let started = Instant::now();
    let providers = choose_providers(stt, options.providers.as_deref())?;
    let mut query = call_sessions::Entity::find_by_id(session_id);
    if let Some(t) = &options.tenant {
        query = query.filter(call_sessions::Column::TenantId.eq(t.as_str()));
    }
    let session = query
        .one(db)
        .await?
        .ok_or(ReplayError::SessionNotFound(session_id))?;
    let mut turns = conversation_turns::Entity::find()
        .filter(conversation_turns::Column::SessionId.eq(session_id))
        .filter(conversation_turns::Column::Role.eq("user"))
        .order_by_asc(conversation_turns::Column::TurnIndex)
        .all(db)
        .await?;
    if let Some(only) = &options.turns {
        turns.retain(|t| only.contains(&t.turn_index));
    }
    let segments = audio_segments::Entity::find()
        .filter(audio_segments::Column::SessionId.eq(session_id))
        .order_by_asc(audio_segments::Column::SegmentId)
        .all(db)
        .await?;
    let rates: Vec<Option<u32>> = {
        let mut r: Vec<Option<u32>> = providers.iter().map(|p| p.provider.sample_rate()).collect();
        r.sort();
        r.dedup();
        r
    };
    let inputs = prepare_inputs(store, turns, &segments, rates).await;
    let language = options.language.clone();
    let normalizer = Normalizer::for_language(language.as_deref());

    // Every (turn, rendition, provider) call at once; each provider's semaphore bounds its share.
    let mut calls = Vec::new();
    for (t, input) in inputs.iter().enumerate() {
        for (r, rendition) in input.renditions.iter().enumerate() {
            let Ok((_, wavs)) = &rendition.outcome else {
                continue;
            };
            for (p, provider) in providers.iter().enumerate() {
                let wav = wavs
                    .get(&provider.provider.sample_rate())
                    .cloned()
                    .unwrap_or_default();
                let request = SttRequest {
                    wav,
                    language: language.clone(),
                };
                let provider = provider.clone();
                let priority = options.priority;
                calls.push(
                    async move { ((t, r, p), provider.transcribe_as(&request, priority).await) },
                );
            }
        }
    }
    let mut answers: HashMap<(usize, usize, usize), Result<Transcription, SttError>> =
        futures::future::join_all(calls).await.into_iter().collect();

    let mut out_turns = Vec::with_capacity(inputs.len());
    for (t, input) in inputs.into_iter().enumerate() {
        let mut renditions = Vec::new();
        for (r, prepared) in input.renditions.into_iter().enumerate() {
            renditions.push(match prepared.outcome {
                Err(reason) => RenditionReplay {
                    rendition: prepared.kind,
                    status: RenditionStatus::Missing,
                    missing_reason: Some(reason),
                    segment_id: prepared.segment_id,
                    sample_rate: None,
                    duration_ms: None,
                    clipping: None,
                    note: None,
                    results: Vec::new(),
                },
                Ok((rendition, _)) => {
                    let results: Vec<(ProviderId, String, Result<Transcription, SttError>)> =
                        providers
                            .iter()
                            .enumerate()
                            .map(|(p, provider)| {
                                let answer = answers.remove(&(t, r, p)).unwrap_or_else(|| {
                                    Err(SttError::new(
                                        provider.id(),
                                        crate::stt::SttErrorKind::Network,
                                        "call did not run",
                                    ))
                                });
                                (provider.id(), provider.provider.model().to_string(), answer)
                            })
                            .collect();
                    RenditionReplay {
                        rendition: prepared.kind,
                        status: RenditionStatus::Available,
                        missing_reason: None,
                        segment_id: prepared.segment_id,
                        sample_rate: Some(rendition.sample_rate),
                        duration_ms: Some(rendition.duration_ms()),
                        clipping: Some(rendition.clipping),
                        note: rendition.note.clone(),
                        results: score_cell(
                            &input.turn.content,
                            options.expected.as_deref(),
                            results,
                            normalizer,
                        ),
                    }
                }
            });
        }
        out_turns.push(TurnReplay {
            turn_index: input.turn.turn_index,
            start_ms: input.turn.start_ms,
            end_ms: input.turn.end_ms,
            original_transcript: input.turn.content,
            renditions,
        });
    }
    Ok(SessionReplay {
        session_id,
        call_id: session.call_id,
        tenant_id: session.tenant_id,
        language,
        normalizer,
        providers: provider_infos(&providers),
        turns: out_turns,
        duration_ms: crate::stt::ms(started.elapsed()),
    })
}

fn provider_infos(providers: &[BoundedProvider]) -> Vec<ProviderInfo> {
    providers
        .iter()
        .map(|p| ProviderInfo {
            provider: p.id(),
            model: p.provider.model().to_string(),
            sample_rate: p.provider.sample_rate(),
        })
        .collect()
}

/// A turn's clip as one rendition, cut from the stored audio.
#[derive(Debug, Clone)]
pub struct TurnClip {
    pub kind: RenditionKind,
    /// 16-bit PCM mono WAV at the recording's own rate.
    pub wav: Bytes,
    pub duration_ms: f64,
    pub note: Option<String>,
}

/// The clip of a session's turn that best shows what the STT heard: `stt_input`, else the
/// post-suppression slice, else the pre-suppression slice. `Err` says why none could be cut.
pub async fn turn_clip(
    db: &DatabaseConnection,
    store: Arc<dyn AudioStore>,
    session_id: Uuid,
    turn: conversation_turns::Model,
) -> Result<Result<TurnClip, String>, sea_orm::DbErr> {
    let segments = audio_segments::Entity::find()
        .filter(audio_segments::Column::SessionId.eq(session_id))
        .order_by_asc(audio_segments::Column::SegmentId)
        .all(db)
        .await?;
    let inputs = prepare_inputs(store, vec![turn], &segments, vec![None]).await;
    let mut reasons = Vec::new();
    for mut input in inputs {
        for preferred in [
            RenditionKind::SttInput,
            RenditionKind::PostRnnoise,
            RenditionKind::PreRnnoise,
        ] {
            let Some(at) = input.renditions.iter().position(|r| r.kind == preferred) else {
                continue;
            };
            match input.renditions.swap_remove(at).outcome {
                Ok((rendition, mut wavs)) => {
                    if let Some(wav) = wavs.remove(&None) {
                        return Ok(Ok(TurnClip {
                            kind: preferred,
                            wav,
                            duration_ms: rendition.duration_ms(),
                            note: rendition.note,
                        }));
                    }
                }
                Err(reason) => reasons.push(format!("{}: {reason}", preferred.as_str())),
            }
        }
    }
    Ok(Err(if reasons.is_empty() {
        "no rendition of the turn could be cut".to_string()
    } else {
        reasons.join("; ")
    }))
}

/// One clip through the providers: a report analysis.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClipReplay {
    pub language: Option<String>,
    pub normalizer: Normalizer,
    pub providers: Vec<ProviderInfo>,
    /// What the reporter says the STT produced (the reference of `wer_vs_original`).
    pub stt_output: String,
    /// What the user said (the reference of `wer_vs_expected`).
    pub expected_output: String,
    pub rendition: RenditionReplay,
    pub duration_ms: f64,
}

/// Sends one WAV clip to the providers and scores every answer against `expected` (and against
/// `original`, what the STT produced).
pub async fn replay_clip(
    stt: &SttProviders,
    kind: RenditionKind,
    wav: Vec<u8>,
    original: &str,
    expected: &str,
    options: &ReplayOptions,
) -> Result<ClipReplay, ReplayError> {
    let started = Instant::now();
    let providers = choose_providers(stt, options.providers.as_deref())?;
    let mut rates: Vec<Option<u32>> = providers.iter().map(|p| p.provider.sample_rate()).collect();
    rates.sort();
    rates.dedup();
    let prepared = tokio::task::spawn_blocking(move || {
        let audio =
            audio::decode_wav(&wav).map_err(|e| format!("the clip does not decode: {e}"))?;
        let rendition = audio::whole(kind, &audio);
        let mut wavs = HashMap::new();
        for rate in rates {
            let wav = rendition
                .wav(rate)
                .map_err(|e| format!("could not encode the clip: {e}"))?;
            wavs.insert(rate, Bytes::from(wav));
        }
        Ok::<_, String>((rendition, wavs))
    })
    .await
    .unwrap_or_else(|e| Err(format!("clip preparation panicked: {e}")));
    let normalizer = Normalizer::for_language(options.language.as_deref());
    let rendition = match prepared {
        Err(reason) => RenditionReplay {
            rendition: kind,
            status: RenditionStatus::Missing,
            missing_reason: Some(reason),
            segment_id: None,
            sample_rate: None,
            duration_ms: None,
            clipping: None,
            note: None,
            results: Vec::new(),
        },
        Ok((rendition, wavs)) => {
            let calls = providers.iter().map(|provider| {
                let request = SttRequest {
                    wav: wavs
                        .get(&provider.provider.sample_rate())
                        .cloned()
                        .unwrap_or_default(),
                    language: options.language.clone(),
                };
                async move {
                    let answer = provider.transcribe_as(&request, options.priority).await;
                    (provider.id(), provider.provider.model().to_string(), answer)
                }
            });
            let results = futures::future::join_all(calls).await;
            RenditionReplay {
                rendition: kind,
                status: RenditionStatus::Available,
                missing_reason: None,
                segment_id: None,
                sample_rate: Some(rendition.sample_rate),
                duration_ms: Some(rendition.duration_ms()),
                clipping: Some(rendition.clipping),
                note: rendition.note.clone(),
                results: score_cell(original, Some(expected), results, normalizer),
            }
        }
    };
    Ok(ClipReplay {
        language: options.language.clone(),
        normalizer,
        providers: provider_infos(&providers),
        stt_output: original.to_string(),
        expected_output: expected.to_string(),
        rendition,
        duration_ms: crate::stt::ms(started.elapsed()),
    })
}

fn choose_providers(
    stt: &SttProviders,
    wanted: Option<&[ProviderId]>,
) -> Result<Vec<BoundedProvider>, ReplayError> {
    let chosen: Vec<BoundedProvider> = match wanted {
        None => stt.all().to_vec(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                stt.get(*id)
                    .cloned()
                    .ok_or(ReplayError::ProviderNotConfigured(*id))
            })
            .collect::<Result<_, _>>()?,
    };
    if chosen.is_empty() {
        return Err(ReplayError::NoProviders);
    }
    Ok(chosen)
}

/// WER against the original transcript and agreement among the providers that answered.
fn score_cell(
    original: &str,
    expected: Option<&str>,
    results: Vec<(ProviderId, String, Result<Transcription, SttError>)>,
    normalizer: Normalizer,
) -> Vec<ProviderResult> {
    let transcripts: Vec<(ProviderId, String)> = results
        .iter()
        .filter_map(|(id, _, r)| {
            r.as_ref()
                .ok()
                .map(|t| (*id, normalizer.apply(&t.transcript)))
        })
        .collect();
    results
        .into_iter()
        .map(|(provider, model, result)| match result {
            Ok(t) => {
                let mine = normalizer.apply(&t.transcript);
                let mine_words = wer::jiwer_words(&mine);
                let others: Vec<&(ProviderId, String)> = transcripts
                    .iter()
                    .filter(|(id, _)| *id != provider)
                    .collect();
                let agreement = (!others.is_empty()).then(|| {
                    let counts: Vec<WerCounts> = others
                        .iter()
                        .map(|(_, reference)| {
                            let r = wer::jiwer_words(reference);
                            wer::align(&strs(&r), &strs(&mine_words)).0
                        })
                        .collect();
                    let total = WerCounts::sum(&counts);
                    Agreement {
                        wer: total.wer(),
                        counts: total,
                        against: others.iter().map(|(id, _)| *id).collect(),
                    }
                });
                ProviderResult {
                    provider,
                    model,
                    status: ResultStatus::Ok,
                    wer_vs_original: Some(wer::score(original, &t.transcript, normalizer)),
                    wer_vs_expected: expected.map(|e| wer::score(e, &t.transcript, normalizer)),
                    agreement,
                    transcription: Some(t),
                    error: None,
                }
            }
            Err(e) => ProviderResult {
                provider,
                model,
                status: ResultStatus::Error,
                transcription: None,
                error: Some(e),
                wer_vs_original: None,
                wer_vs_expected: None,
                agreement: None,
            },
        })
        .collect()
}

fn strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

/// Fetches and decodes the audio each turn needs (each recording once), then cuts and encodes the
/// renditions on the blocking pool.
async fn prepare_inputs(
    store: Arc<dyn AudioStore>,
    turns: Vec<conversation_turns::Model>,
    segments: &[audio_segments::Model],
    rates: Vec<Option<u32>>,
) -> Vec<TurnInput> {
    // Decoded audio per segment id, fetched on first use.
    let mut decoded: HashMap<String, Result<Arc<DecodedAudio>, String>> = HashMap::new();
    let mut plans = Vec::new();
    for turn in turns {
        let mut plan = Vec::new();
        for kind in RenditionKind::ALL {
            let segment = pick_segment(kind, &turn, segments);
            let segment = match segment {
                Ok(s) => s,
                Err(reason) => {
                    plan.push((kind, None, Err(reason)));
                    continue;
                }
            };
            if !decoded.contains_key(&segment.segment_id) {
                let audio = load(store.as_ref(), segment).await;
                decoded.insert(segment.segment_id.clone(), audio);
            }
            let audio = decoded
                .get(&segment.segment_id)
                .cloned()
                .unwrap_or_else(|| Err("audio not loaded".into()));
            plan.push((kind, Some(segment.clone()), audio));
        }
        plans.push((turn, plan));
    }
    let work = move || {
        plans
            .into_iter()
            .map(|(turn, plan)| {
                let renditions = plan
                    .into_iter()
                    .map(|(kind, segment, audio)| {
                        let segment_id = segment.as_ref().map(|s| s.segment_id.clone());
                        let outcome = audio.and_then(|a| {
                            let segment = segment.ok_or_else(|| "no segment".to_string())?;
                            cut(kind, &turn, &segment, &a, &rates)
                        });
                        PreparedRendition {
                            kind,
                            segment_id,
                            outcome,
                        }
                    })
                    .collect();
                TurnInput { turn, renditions }
            })
            .collect::<Vec<_>>()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(inputs) => inputs,
        Err(e) => {
            tracing::error!(error = %e, "rendition preparation panicked");
            Vec::new()
        }
    }
}

/// The segment a rendition is cut from, or why there is none.
fn pick_segment<'a>(
    kind: RenditionKind,
    turn: &conversation_turns::Model,
    segments: &'a [audio_segments::Model],
) -> Result<&'a audio_segments::Model, String> {
    let of_type: Vec<&audio_segments::Model> = segments
        .iter()
        .filter(|s| s.segment_type == kind.segment_type())
        .collect();
    let found = if kind == RenditionKind::SttInput {
        of_type
            .iter()
            .find(|s| s.turn_index == Some(turn.turn_index))
            .copied()
    } else {
        // The recording that contains the turn's start; else any that overlaps it; else the first.
        let start = turn.start_ms.unwrap_or(0);
        let end = turn.end_ms.unwrap_or(start);
        let covers = |s: &&audio_segments::Model, a: i64, b: i64| {
            let off = s.offset_ms.unwrap_or(0);
            let dur = s.duration_ms.unwrap_or(i64::MAX / 4);
            off <= b && a < off + dur
        };
        of_type
            .iter()
            .find(|s| covers(s, start, start))
            .or_else(|| of_type.iter().find(|s| covers(s, start, end)))
            .or(of_type.first())
            .copied()
    };
    let Some(segment) = found else {
        return Err(match kind {
            RenditionKind::SttInput => {
                format!("no stt_input segment for turn {}", turn.turn_index)
            }
            _ => format!("the call has no {} segment", kind.segment_type()),
        });
    };
    if segment.status != audio_segments::Status::Stored || segment.s3_key.is_none() {
        return Err(format!(
            "segment {} has no stored audio (status {}{})",
            segment.segment_id,
            segment.status,
            segment
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(segment)
}

async fn load(
    store: &dyn AudioStore,
    segment: &audio_segments::Model,
) -> Result<Arc<DecodedAudio>, String> {
    let key = segment.s3_key.as_deref().unwrap_or_default();
    let bytes = match store.get(segment.bucket.as_deref(), key).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(format!("audio object {key} is gone from the store")),
        Err(e) => return Err(format!("audio object {key} could not be read: {e}")),
    };
    let id = segment.segment_id.clone();
    match tokio::task::spawn_blocking(move || audio::decode_wav(&bytes)).await {
        Ok(Ok(a)) => Ok(Arc::new(a)),
        Ok(Err(e)) => Err(format!("segment {id} does not decode: {e}")),
        Err(e) => Err(format!("segment {id} decoding panicked: {e}")),
    }
}

/// Cuts one rendition and encodes it at every rate a provider wants.
fn cut(
    kind: RenditionKind,
    turn: &conversation_turns::Model,
    segment: &audio_segments::Model,
    audio: &DecodedAudio,
    rates: &[Option<u32>],
) -> Result<(Rendition, HashMap<Option<u32>, Bytes>), String> {
    let rendition = if kind == RenditionKind::SttInput {
        audio::whole(kind, audio)
    } else {
        let (Some(start), Some(end)) = (turn.start_ms, turn.end_ms) else {
            return Err(format!(
                "turn {} has no start_ms/end_ms to slice {} with",
                turn.turn_index,
                kind.segment_type()
            ));
        };
        audio::slice(kind, audio, segment.offset_ms.unwrap_or(0), start, end)?
    };
    if rendition.samples.is_empty() {
        return Err("the rendition has no samples".into());
    }
    let mut wavs = HashMap::new();
    for rate in rates {
        let wav = rendition
            .wav(*rate)
            .map_err(|e| format!("could not encode the rendition: {e}"))?;
        wavs.insert(*rate, Bytes::from(wav));
    }
    Ok((rendition, wavs))
}
