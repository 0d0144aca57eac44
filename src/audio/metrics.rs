//! Per-segment audio metrics: level (RMS mean and 20 ms peak), peak dBFS, clipping ratio and an SNR
//! estimate (loud frames against the noise floor).

use super::{AudioError, DecodedAudio, WavInfo, read_wav};

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

/// Accumulates level statistics over 20 ms frames, one mono sample at a time.
struct LevelMeter {
    frame: usize,
    in_frame: usize,
    frame_sq: f64,
    sum_sq: f64,
    samples: u64,
    frame_db: Vec<f64>,
    rms_peak: f64,
}

impl LevelMeter {
    fn new(sample_rate: u32) -> Self {
        let frame = (sample_rate as usize * FRAME_MS / 1000).max(1);
        LevelMeter {
            frame,
            in_frame: 0,
            frame_sq: 0.0,
            sum_sq: 0.0,
            samples: 0,
            frame_db: Vec::new(),
            rms_peak: 0.0,
        }
    }

    fn push(&mut self, s: f32) {
        let sq = f64::from(s) * f64::from(s);
        self.frame_sq += sq;
        self.sum_sq += sq;
        self.samples += 1;
        self.in_frame += 1;
        if self.in_frame == self.frame {
            let rms = (self.frame_sq / self.frame as f64).sqrt();
            self.rms_peak = self.rms_peak.max(rms);
            self.frame_db.push(to_db(rms));
            self.frame_sq = 0.0;
            self.in_frame = 0;
        }
    }

    /// The SNR estimate is the difference between the 90th and 10th percentile frame levels: speech
    /// frames against the noise floor between words.
    fn finish(mut self, info: &WavInfo) -> AudioMetrics {
        let rms_mean = (self.sum_sq / self.samples.max(1) as f64).sqrt();
        let rms_peak = if self.frame_db.is_empty() {
            rms_mean
        } else {
            self.rms_peak
        };
        let snr_estimate = if self.frame_db.len() >= 10 && info.peak > 0.0 {
            self.frame_db.sort_by(f64::total_cmp);
            let p = |q: f64| self.frame_db[((self.frame_db.len() - 1) as f64 * q).round() as usize];
            Some(p(0.9) - p(0.1))
        } else {
            None
        };
        AudioMetrics {
            sample_rate: info.sample_rate,
            channels: info.channels,
            bits_per_sample: info.bits_per_sample,
            duration_ms: info.frames as f64 * 1000.0 / info.sample_rate as f64,
            rms_mean,
            rms_peak,
            snr_estimate,
            peak_dbfs: (info.peak > 0.0).then(|| 20.0 * f64::from(info.peak).log10()),
            clipped_ratio: info.clipped_samples as f64 / info.total_samples.max(1) as f64,
        }
    }
}

/// Measures decoded audio.
pub fn measure(a: &DecodedAudio) -> AudioMetrics {
    let mut meter = LevelMeter::new(a.sample_rate);
    for &s in &a.samples {
        meter.push(s);
    }
    let info = WavInfo {
        sample_rate: a.sample_rate,
        channels: a.channels,
        bits_per_sample: a.bits_per_sample,
        frames: a.samples.len() as u64,
        clipped_samples: a.clipped_samples,
        total_samples: a.total_samples,
        peak: a.peak,
    };
    meter.finish(&info)
}

/// Decodes and measures a WAV file in one pass without holding its samples (the ingest path).
pub fn analyze_wav(bytes: &[u8]) -> Result<AudioMetrics, AudioError> {
    // The frame length depends on the sample rate: read the header first (cheap), then stream.
    let rate =
        hound::WavReader::new(std::io::Cursor::new(bytes)).map_or(1, |r| r.spec().sample_rate);
    let mut meter = LevelMeter::new(rate);
    let info = read_wav(bytes, |s| meter.push(s))?;
    Ok(meter.finish(&info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{analyze_wav, decode_wav, encode_wav_i16};

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
    fn streaming_analysis_equals_decode_then_measure() {
        let s: Vec<f32> = (0..40_000)
            .map(|i| 0.3 * (i as f32 * 0.05).sin() * if i % 7000 < 3500 { 1.0 } else { 0.01 })
            .collect();
        let bytes = encode_wav_i16(&s, 16000);
        assert_eq!(
            analyze_wav(&bytes).unwrap(),
            measure(&decode_wav(&bytes).unwrap())
        );
        assert!(analyze_wav(&bytes[..100]).is_err());
    }

    #[test]
    fn digital_silence_has_no_peak_dbfs() {
        let m = measure(&decode_wav(&encode_wav_i16(&[0.0; 8000], 16000)).unwrap());
        assert_eq!(m.peak_dbfs, None);
        assert_eq!(m.snr_estimate, None);
        assert_eq!(m.rms_mean, 0.0);
    }
}
