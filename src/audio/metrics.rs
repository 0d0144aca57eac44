//! Per-segment audio metrics: level (RMS mean and 20 ms peak), peak dBFS, clipping ratio and an SNR
//! estimate (loud frames against the noise floor).

use super::DecodedAudio;

/// What a segment measured. Levels are linear full scale (0..1); dB values are dBFS.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioMetrics {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub duration_ms: f64,
    pub rms_mean: f64,
    pub rms_peak: f64,
    /// `None` for segments shorter than 10 frames (200 ms) or digital silence.
    pub snr_estimate: Option<f64>,
    /// `None` for digital silence (−∞ dBFS).
    pub peak_dbfs: Option<f64>,
    pub clipped_ratio: f64,
}

const FRAME_MS: usize = 20;
/// Floor for frame levels so a digitally silent frame counts as −100 dBFS, not −∞.
const FLOOR_DB: f64 = -100.0;

fn to_db(rms: f64) -> f64 {
    if rms <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * rms.log10()).max(FLOOR_DB)
    }
}

/// Measures decoded audio. The SNR estimate is the difference between the 90th and 10th percentile
/// frame levels: speech frames against the noise floor between words.
pub fn measure(a: &DecodedAudio) -> AudioMetrics {
    let frame = (a.sample_rate as usize * FRAME_MS / 1000).max(1);
    let mut sum_sq = 0.0f64;
    let mut frame_db = Vec::with_capacity(a.samples.len() / frame + 1);
    let mut rms_peak = 0.0f64;
    for chunk in a.samples.chunks(frame) {
        let sq: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        sum_sq += sq;
        if chunk.len() == frame {
            let rms = (sq / frame as f64).sqrt();
            rms_peak = rms_peak.max(rms);
            frame_db.push(to_db(rms));
        }
    }
    let rms_mean = (sum_sq / a.samples.len().max(1) as f64).sqrt();
    if frame_db.is_empty() {
        rms_peak = rms_mean;
    }
    let snr_estimate = if frame_db.len() >= 10 && a.peak > 0.0 {
        frame_db.sort_by(f64::total_cmp);
        let p = |q: f64| frame_db[((frame_db.len() - 1) as f64 * q).round() as usize];
        Some(p(0.9) - p(0.1))
    } else {
        None
    };
    AudioMetrics {
        sample_rate: a.sample_rate,
        channels: a.channels,
        bits_per_sample: a.bits_per_sample,
        duration_ms: a.duration_ms(),
        rms_mean,
        rms_peak,
        snr_estimate,
        peak_dbfs: (a.peak > 0.0).then(|| 20.0 * f64::from(a.peak).log10()),
        clipped_ratio: a.clipped_samples as f64 / a.total_samples.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{decode_wav, encode_wav_i16};

    #[test]
    fn sine_at_half_scale_measures_as_expected() {
        let sr = 16000;
        let s: Vec<f32> = (0..sr)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / sr as f32).sin())
            .collect();
        let m = measure(&decode_wav(&encode_wav_i16(&s, sr)).unwrap());
        assert!((m.rms_mean - 0.5 / 2f64.sqrt()).abs() < 1e-3, "{m:?}");
        assert!((m.peak_dbfs.unwrap() - (-6.02)).abs() < 0.05, "{m:?}");
        assert_eq!(m.clipped_ratio, 0.0);
        assert!(
            m.snr_estimate.unwrap() < 1.0,
            "a steady tone has no noise floor below it: {m:?}"
        );
    }

    #[test]
    fn speech_bursts_over_quiet_noise_give_a_high_snr() {
        let sr = 16000usize;
        let mut seed = 1u32;
        let s: Vec<f32> = (0..sr * 2)
            .map(|i| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let speech = if (i / 4000) % 2 == 0 {
                    0.5 * (i as f32 * 0.07).sin()
                } else {
                    0.0
                };
                speech + 0.002 * noise
            })
            .collect();
        let m = measure(&decode_wav(&encode_wav_i16(&s, sr as u32)).unwrap());
        assert!(m.snr_estimate.unwrap() > 30.0, "{m:?}");
    }

    #[test]
    fn digital_silence_has_no_peak_dbfs() {
        let m = measure(&decode_wav(&encode_wav_i16(&[0.0; 8000], 16000)).unwrap());
        assert_eq!(m.peak_dbfs, None);
        assert_eq!(m.snr_estimate, None);
        assert_eq!(m.rms_mean, 0.0);
    }
}
