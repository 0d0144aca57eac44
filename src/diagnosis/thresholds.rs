//! Diagnosis thresholds: documented defaults, overridable from a TOML file (`INSIGHTS_DIAGNOSIS_CONFIG`).
//! Unknown keys and wrong types are start-up errors that name the key.

use serde::{Deserialize, Serialize};

/// Every threshold a rule reads. Upper limits fire at or above the value, lower limits below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// dropped_utterance: VAD speech at least this long must be followed by a transcript…
    pub dropped_utterance_min_speech_ms: f64,
    /// …within this window after the user stopped speaking.
    pub dropped_utterance_window_ms: f64,
    /// high_e2e_latency: end of user speech to first agent audio.
    pub high_e2e_latency_ms: f64,
    pub slow_llm_ttft_ms: f64,
    pub slow_tts_ttfb_ms: f64,
    pub slow_transcription_ms: f64,
    pub slow_end_of_turn_ms: f64,
    /// rnnoise_over_attenuation: speech level lost through noise suppression.
    pub over_attenuation_db: f64,
    /// clipping: fraction of samples at or near full scale…
    pub clipped_ratio: f64,
    /// …or a peak at or above this with runs of clipped samples.
    pub clipping_peak_dbfs: f64,
    /// low_snr: estimated SNR below this (under 10 dB harms recognition).
    pub low_snr_db: f64,
    /// low_snr: segments shorter than this give no reliable estimate and are skipped.
    pub low_snr_min_duration_ms: f64,
    /// low_confidence_turn: user turns whose STT confidence is below this.
    pub low_confidence: f64,
    /// long_silence: nobody spoke for at least this long.
    pub long_silence_ms: f64,
    /// frequent_interruptions: at least this many barge-ins in one call.
    pub frequent_interruptions: u32,
    /// dead_air: a stretch with nobody speaking at least this long (also the shortest silence a
    /// recording's conversation metrics list).
    pub dead_air_ms: f64,
    /// talk_over: one party speaking over the other for at least this long.
    pub talk_over_ms: f64,
    /// long_monologue: one party speaking unbroken for at least this long.
    pub long_monologue_ms: f64,
    /// slow_response: the agent starting to answer at least this long after the customer stopped.
    pub slow_response_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            dropped_utterance_min_speech_ms: 700.0,
            dropped_utterance_window_ms: 5000.0,
            high_e2e_latency_ms: 1500.0,
            slow_llm_ttft_ms: 1000.0,
            slow_tts_ttfb_ms: 500.0,
            slow_transcription_ms: 500.0,
            slow_end_of_turn_ms: 1000.0,
            over_attenuation_db: 10.0,
            clipped_ratio: 0.001,
            clipping_peak_dbfs: -0.1,
            low_snr_db: 10.0,
            low_snr_min_duration_ms: 2000.0,
            low_confidence: 0.6,
            long_silence_ms: 8000.0,
            frequent_interruptions: 3,
            dead_air_ms: 10_000.0,
            talk_over_ms: 1_000.0,
            long_monologue_ms: 60_000.0,
            slow_response_ms: 3_000.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThresholdsError {
    #[error("cannot read diagnosis config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid diagnosis config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Thresholds {
    /// Defaults overridden by the keys of a TOML file.
    pub fn from_toml(path: &str, text: &str) -> Result<Self, ThresholdsError> {
        let t: Thresholds = toml::from_str(text).map_err(|e| ThresholdsError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        t.validate().map_err(|message| ThresholdsError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(t)
    }

    pub fn load(path: Option<&str>) -> Result<Self, ThresholdsError> {
        match path {
            None => Ok(Thresholds::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ThresholdsError::Read {
                    path: p.into(),
                    source,
                })?;
                Self::from_toml(p, &text)
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        let non_negative = [
            (
                "dropped_utterance_min_speech_ms",
                self.dropped_utterance_min_speech_ms,
            ),
            (
                "dropped_utterance_window_ms",
                self.dropped_utterance_window_ms,
            ),
            ("high_e2e_latency_ms", self.high_e2e_latency_ms),
            ("slow_llm_ttft_ms", self.slow_llm_ttft_ms),
            ("slow_tts_ttfb_ms", self.slow_tts_ttfb_ms),
            ("slow_transcription_ms", self.slow_transcription_ms),
            ("slow_end_of_turn_ms", self.slow_end_of_turn_ms),
            ("over_attenuation_db", self.over_attenuation_db),
            ("clipped_ratio", self.clipped_ratio),
            ("low_snr_min_duration_ms", self.low_snr_min_duration_ms),
            ("long_silence_ms", self.long_silence_ms),
        ];
        for (key, v) in non_negative {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("key `{key}` must be a number >= 0, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.low_confidence) {
            return Err(format!(
                "key `low_confidence` must be between 0 and 1, got {}",
                self.low_confidence
            ));
        }
        if !(0.0..=1.0).contains(&self.clipped_ratio) {
            return Err(format!(
                "key `clipped_ratio` must be between 0 and 1, got {}",
                self.clipped_ratio
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_the_keys_it_names() {
        let t = Thresholds::from_toml(
            "x.toml",
            "high_e2e_latency_ms = 2000\nlow_confidence = 0.5\n",
        )
        .unwrap();
        assert_eq!(t.high_e2e_latency_ms, 2000.0);
        assert_eq!(t.low_confidence, 0.5);
        assert_eq!(t.slow_llm_ttft_ms, 1000.0);
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = Thresholds::from_toml("x.toml", "high_e2e_latency = 2000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("high_e2e_latency") && e.contains("x.toml"),
            "{e}"
        );
        let e = Thresholds::from_toml("x.toml", "slow_llm_ttft_ms = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("slow_llm_ttft_ms"), "{e}");
        let e = Thresholds::from_toml("x.toml", "low_confidence = 1.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("low_confidence"), "{e}");
        let e = Thresholds::load(Some("/nonexistent/diag.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/diag.toml"), "{e}");
    }
}
