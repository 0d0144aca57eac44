//! What a full-call replay grid says at a glance: per provider (corpus WER against the live
//! transcript, latency, errors) and per rendition, with a verdict on whether noise suppression
//! helped or hurt this call's transcription.

use super::replay::{ResultStatus, SessionReplay};
use crate::audio::RenditionKind;
use crate::sessions::LatencyStats;
use crate::stt::ProviderId;
use crate::stt::wer::WerCounts;
use serde::Serialize;
use std::collections::BTreeMap;

/// Post-suppression WER must differ from pre-suppression WER by more than this (absolute) for a
/// verdict other than `no_difference`.
pub const NOISE_SUPPRESSION_MARGIN: f64 = 0.02;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnalysisSummary {
    /// What every WER here is measured against: `original_transcript`, the agent's live STT
    /// output for the turn (distance from it, not accuracy).
    pub reference: &'static str,
    pub providers: Vec<ProviderSummary>,
    pub renditions: Vec<RenditionSummary>,
    pub noise_suppression: NoiseSuppressionVerdict,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderSummary {
    pub provider: ProviderId,
    pub model: String,
    /// Cells sent to the provider (available renditions × turns).
    pub calls: usize,
    pub ok: usize,
    pub errors: usize,
    /// Errors by kind (`rate_limited`, `server`, `timeout`, …).
    pub errors_by_kind: BTreeMap<String, usize>,
    /// Errors over reference words, summed over every answered cell; `null` when none answered.
    pub corpus_wer: Option<f64>,
    pub counts: WerCounts,
    /// Request to full answer of the successful attempt (ms).
    pub latency_ms: LatencyStats,
    /// Mean confidence over the answers that carried one.
    pub mean_confidence: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RenditionSummary {
    pub rendition: RenditionKind,
    pub turns_available: usize,
    pub turns_missing: usize,
    /// Corpus WER over every provider's answers for this rendition.
    pub corpus_wer: Option<f64>,
    pub by_provider: Vec<ProviderWer>,
    /// Loudest peak over the turns (dBFS).
    pub max_peak_dbfs: Option<f64>,
    /// Mean fraction of frames at or near full scale.
    pub mean_clipped_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderWer {
    pub provider: ProviderId,
    pub corpus_wer: Option<f64>,
    pub answered: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Post-suppression audio transcribes with a lower WER.
    Helps,
    /// Post-suppression audio transcribes with a higher WER.
    Hurts,
    NoDifference,
    /// No turn has both renditions answered by a provider.
    Unknown,
}

/// Pre- vs post-suppression WER over the same turns and providers (paired cells only).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NoiseSuppressionVerdict {
    pub verdict: Verdict,
    pub pre_rnnoise_wer: Option<f64>,
    pub post_rnnoise_wer: Option<f64>,
    /// (turn, provider) pairs answered on both renditions.
    pub paired_cells: usize,
    pub margin: f64,
    pub explanation: String,
}

pub fn summarize(grid: &SessionReplay) -> AnalysisSummary {
    let providers = grid
        .providers
        .iter()
        .map(|info| {
            let mut s = ProviderSummary {
                provider: info.provider,
                model: info.model.clone(),
                calls: 0,
                ok: 0,
                errors: 0,
                errors_by_kind: BTreeMap::new(),
                corpus_wer: None,
                counts: WerCounts::default(),
                latency_ms: LatencyStats::of(Vec::new()),
                mean_confidence: None,
            };
            let mut latencies = Vec::new();
            let mut confidences = Vec::new();
            let cells = grid
                .turns
                .iter()
                .flat_map(|t| &t.renditions)
                .flat_map(|r| &r.results)
                .filter(|c| c.provider == info.provider);
            for cell in cells {
                s.calls += 1;
                match (&cell.transcription, &cell.error) {
                    (Some(t), _) if cell.status == ResultStatus::Ok => {
                        s.ok += 1;
                        latencies.push(t.latency_ms);
                        if let Some(c) = &t.confidence {
                            confidences.push(c.value);
                        }
                        if let Some(w) = &cell.wer_vs_original {
                            s.counts.add(&w.counts);
                        }
                    }
                    (_, error) => {
                        s.errors += 1;
                        let kind = error.as_ref().map_or_else(
                            || "unknown".to_string(),
                            |e| {
                                serde_json::to_value(e.kind)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_else(|| "unknown".into())
                            },
                        );
                        *s.errors_by_kind.entry(kind).or_default() += 1;
                    }
                }
            }
            s.corpus_wer = (s.ok > 0).then(|| s.counts.wer());
            s.latency_ms = LatencyStats::of(latencies);
            s.mean_confidence = mean(&confidences);
            s
        })
        .collect();

    let renditions = RenditionKind::ALL
        .iter()
        .map(|&kind| {
            let cells: Vec<_> = grid
                .turns
                .iter()
                .filter_map(|t| t.renditions.iter().find(|r| r.rendition == kind))
                .collect();
            let available: Vec<_> = cells.iter().filter(|r| r.clipping.is_some()).collect();
            let mut all = WerCounts::default();
            let mut answered_any = false;
            let by_provider = grid
                .providers
                .iter()
                .map(|info| {
                    let mut counts = WerCounts::default();
                    let mut answered = 0;
                    for r in &available {
                        for c in r.results.iter().filter(|c| c.provider == info.provider) {
                            if let Some(w) = &c.wer_vs_original {
                                counts.add(&w.counts);
                                answered += 1;
                            }
                        }
                    }
                    all.add(&counts);
                    answered_any |= answered > 0;
                    ProviderWer {
                        provider: info.provider,
                        corpus_wer: (answered > 0).then(|| counts.wer()),
                        answered,
                    }
                })
                .collect();
            let peaks: Vec<f64> = available
                .iter()
                .filter_map(|r| r.clipping.as_ref().and_then(|c| c.peak_dbfs))
                .collect();
            let clipped: Vec<f64> = available
                .iter()
                .filter_map(|r| r.clipping.as_ref())
                .map(|c| c.clipped_ratio)
                .collect();
            RenditionSummary {
                rendition: kind,
                turns_available: available.len(),
                turns_missing: cells.len() - available.len(),
                corpus_wer: answered_any.then(|| all.wer()),
                by_provider,
                max_peak_dbfs: peaks.iter().copied().reduce(f64::max),
                mean_clipped_ratio: mean(&clipped),
            }
        })
        .collect();

    AnalysisSummary {
        reference: "original_transcript",
        providers,
        renditions,
        noise_suppression: noise_suppression(grid),
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn noise_suppression(grid: &SessionReplay) -> NoiseSuppressionVerdict {
    let (mut pre, mut post, mut paired) = (WerCounts::default(), WerCounts::default(), 0);
    for turn in &grid.turns {
        let find = |kind| turn.renditions.iter().find(|r| r.rendition == kind);
        let (Some(a), Some(b)) = (
            find(RenditionKind::PreRnnoise),
            find(RenditionKind::PostRnnoise),
        ) else {
            continue;
        };
        for ca in &a.results {
            let cb = b.results.iter().find(|c| c.provider == ca.provider);
            if let (Some(wa), Some(wb)) = (
                &ca.wer_vs_original,
                cb.and_then(|c| c.wer_vs_original.as_ref()),
            ) {
                pre.add(&wa.counts);
                post.add(&wb.counts);
                paired += 1;
            }
        }
    }
    if paired == 0 {
        return NoiseSuppressionVerdict {
            verdict: Verdict::Unknown,
            pre_rnnoise_wer: None,
            post_rnnoise_wer: None,
            paired_cells: 0,
            margin: NOISE_SUPPRESSION_MARGIN,
            explanation: "no turn has both its pre- and post-suppression audio transcribed by the same provider".into(),
        };
    }
    let (a, b) = (pre.wer(), post.wer());
    let verdict = if b < a - NOISE_SUPPRESSION_MARGIN {
        Verdict::Helps
    } else if b > a + NOISE_SUPPRESSION_MARGIN {
        Verdict::Hurts
    } else {
        Verdict::NoDifference
    };
    let explanation = match verdict {
        Verdict::Helps => format!(
            "WER {a:.3} before noise suppression, {b:.3} after: suppression helps this call"
        ),
        Verdict::Hurts => format!(
            "WER {a:.3} before noise suppression, {b:.3} after: suppression hurts this call (over-attenuation?)"
        ),
        _ => format!(
            "WER {a:.3} before noise suppression, {b:.3} after: within ±{NOISE_SUPPRESSION_MARGIN} of each other"
        ),
    };
    NoiseSuppressionVerdict {
        verdict,
        pre_rnnoise_wer: Some(a),
        post_rnnoise_wer: Some(b),
        paired_cells: paired,
        margin: NOISE_SUPPRESSION_MARGIN,
        explanation,
    }
}
