//! Per-segment audio metrics: level (RMS mean and 20 ms peak), peak dBFS, clipping ratio and an SNR
//! estimate (loud frames against the noise floor).

use super::{AudioError, DecodedAudio, WavInfo, read_wav_blocks};

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
    /// Fraction of samples at or near full scale.
    pub clipped_ratio: f64,
    /// Runs of 3 or more consecutive clipped samples.
    pub clip_runs: u64,
}

/// A stretch of the recording to measure: (turn index, start ms, end ms) relative to its first sample.
pub type Span = (i64, i64, i64);

/// Level over the user's speech spans of a full-call recording (what noise suppression must keep).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpeechLevels {
    /// RMS over all spans together, dBFS (`None` when no span falls inside the recording).
    pub overall_dbfs: Option<f64>,
    pub turns: Vec<TurnLevel>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TurnLevel {
    pub turn_index: i64,
    pub dbfs: f64,
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

/// The sum of squares of a run of samples, in four running sums so the additions pipeline. For
/// 16-bit PCM every square and every partial sum is exact in `f64` (below 2^53 units of 2^-30, about
/// eight million full-scale samples), so how a recording is split into runs does not change a bit.
fn sum_sq(s: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let mut quads = s.chunks_exact(4);
    for q in &mut quads {
        for (a, &x) in acc.iter_mut().zip(q) {
            *a += f64::from(x) * f64::from(x);
        }
    }
    let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for &x in quads.remainder() {
        total += f64::from(x) * f64::from(x);
    }
    total
}

/// Accumulates level statistics over 20 ms frames, a run of mono samples at a time.
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

    /// Adds a run of samples; frames close wherever they fall in it.
    fn push_block(&mut self, mut block: &[f32]) {
        while !block.is_empty() {
            let take = (self.frame - self.in_frame).min(block.len());
            let (head, rest) = block.split_at(take);
            let sq = sum_sq(head);
            self.frame_sq += sq;
            self.sum_sq += sq;
            self.samples += take as u64;
            self.in_frame += take;
            if self.in_frame == self.frame {
                let rms = (self.frame_sq / self.frame as f64).sqrt();
                self.rms_peak = self.rms_peak.max(rms);
                self.frame_db.push(to_db(rms));
                self.frame_sq = 0.0;
                self.in_frame = 0;
            }
            block = rest;
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
            clip_runs: info.clip_runs,
        }
    }
}

/// Measures decoded audio.
pub fn measure(a: &DecodedAudio) -> AudioMetrics {
    let mut meter = LevelMeter::new(a.sample_rate);
    meter.push_block(&a.samples);
    let info = WavInfo {
        sample_rate: a.sample_rate,
        channels: a.channels,
        bits_per_sample: a.bits_per_sample,
        frames: a.samples.len() as u64,
        clipped_samples: a.clipped_samples,
        total_samples: a.total_samples,
        peak: a.peak,
        clip_runs: a.clip_runs,
        encoding: a.encoding,
    };
    meter.finish(&info)
}

/// Decodes and measures a WAV file in one pass without holding its samples (the ingest path).
pub fn analyze_wav(bytes: &[u8]) -> Result<AudioMetrics, AudioError> {
    analyze_wav_spans(bytes, &[]).map(|(m, _)| m)
}

/// Like `analyze_wav`, plus the level over each span (for full-call recordings: the user's turns).
pub fn analyze_wav_spans(
    bytes: &[u8],
    spans: &[Span],
) -> Result<(AudioMetrics, SpeechLevels), AudioError> {
    // The frame length depends on the sample rate: read the header first (cheap), then stream.
    let rate = super::wav::wav_sample_rate(bytes).unwrap_or(1).max(1);
    let mut meter = LevelMeter::new(rate);
    let to_sample = |ms: i64| (ms.max(0) as u64 * u64::from(rate)) / 1000;
    let mut ranges: Vec<(i64, u64, u64)> = spans
        .iter()
        .filter(|(_, s, e)| e > s)
        .map(|&(i, s, e)| (i, to_sample(s), to_sample(e)))
        .collect();
    ranges.sort_by_key(|r| r.1);
    let mut sums = vec![(0.0f64, 0u64); ranges.len()];
    // `n`: the index of the block's first sample.
    let mut n = 0u64;
    let mut first = 0usize;
    let info = read_wav_blocks(bytes, |block| {
        meter.push_block(block);
        let end = n + block.len() as u64;
        while first < ranges.len() && ranges[first].2 <= n {
            first += 1;
        }
        for (k, r) in ranges.iter().enumerate().skip(first) {
            if r.1 >= end {
                break;
            }
            let (from, to) = (r.1.max(n), r.2.min(end));
            if from < to {
                sums[k].0 += sum_sq(&block[(from - n) as usize..(to - n) as usize]);
                sums[k].1 += to - from;
            }
        }
        n = end;
    })?;
    let (mut all_sq, mut all_n) = (0.0, 0u64);
    let mut turns = Vec::new();
    for (r, (sq, count)) in ranges.iter().zip(&sums) {
        if *count > 0 {
            all_sq += sq;
            all_n += count;
            turns.push(TurnLevel {
                turn_index: r.0,
                dbfs: to_db((sq / *count as f64).sqrt()),
            });
        }
    }
    let overall_dbfs = (all_n > 0).then(|| to_db((all_sq / all_n as f64).sqrt()));
    Ok((
        meter.finish(&info),
        SpeechLevels {
            overall_dbfs,
            turns,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{AudioError, analyze_wav, analyze_wav_spans, decode_wav, encode_wav_i16};

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
    fn speech_spans_are_measured_per_turn() {
        // 1 s at 0.5 amplitude, then 1 s at 0.05.
        let s: Vec<f32> = (0..32_000)
            .map(|i| if i < 16_000 { 0.5 } else { 0.05 })
            .collect();
        let bytes = encode_wav_i16(&s, 16000);
        let (_, levels) =
            analyze_wav_spans(&bytes, &[(2, 1000, 2000), (0, 0, 1000), (9, 5000, 6000)]).unwrap();
        assert_eq!(
            levels.turns.len(),
            2,
            "a span outside the recording is skipped: {levels:?}"
        );
        assert_eq!(levels.turns[0].turn_index, 0);
        assert!((levels.turns[0].dbfs - (-6.02)).abs() < 0.05, "{levels:?}");
        assert!((levels.turns[1].dbfs - (-26.02)).abs() < 0.05, "{levels:?}");
        let overall = levels.overall_dbfs.unwrap();
        assert!((overall - 20.0 * ((0.25 + 0.0025) / 2.0f64).sqrt().log10()).abs() < 0.05);
    }

    /// A 16-bit mono recording with clipping runs across a block boundary, stray clipped samples
    /// and a length that is neither whole blocks nor whole frames.
    fn clipping_fixture() -> (Vec<f32>, Vec<u8>) {
        let mut s: Vec<f32> = (0..20_011)
            .map(|i| 0.4 * (i as f32 * 0.031).sin())
            .collect();
        for i in (4_093..4_101).chain([9_000, 12_000, 12_001, 12_002]) {
            s[i] = if i % 2 == 0 { 1.0 } else { -1.0 };
        }
        let bytes = encode_wav_i16(&s, 16000);
        (s, bytes)
    }

    #[test]
    fn block_reader_counts_clipping_as_a_sample_by_sample_reader_does() {
        let (_, bytes) = clipping_fixture();
        let m = analyze_wav(&bytes).unwrap();
        let d = decode_wav(&bytes).unwrap();
        assert_eq!(m, measure(&d));
        // Reference: hound's samples, counted one at a time.
        let mut r = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
        let (mut clipped, mut runs, mut run, mut peak) = (0u64, 0u64, 0u32, 0f32);
        for k in r.samples::<i16>() {
            let a = (f32::from(k.unwrap()) / 32768.0).abs();
            peak = peak.max(a);
            if a >= 0.999 {
                clipped += 1;
                run += 1;
                runs += u64::from(run == 3);
            } else {
                run = 0;
            }
        }
        assert_eq!((clipped, runs), (12, 2));
        assert_eq!(
            (d.clipped_samples, d.clip_runs, d.peak),
            (clipped, runs, peak)
        );
        assert_eq!(m.clip_runs, runs);
        // A data chunk shorter than its header says is refused.
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 100);
        assert!(matches!(
            crate::audio::read_wav_blocks(&cut, |_| {}),
            Err(AudioError::Truncated { .. })
        ));
    }

    #[test]
    fn stereo_runs_are_counted_per_channel_and_frames_keep_their_peaks() {
        // Left clips on frames 4,094–4,097 (a run across the block boundary); right alternates
        // clipped and not, so interleaved it would look like a run but per channel it is none.
        let frames = 9_000usize;
        let mut w = Vec::new();
        {
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut out = hound::WavWriter::new(std::io::Cursor::new(&mut w), spec).unwrap();
            for i in 0..frames {
                let left = if (4_094..4_098).contains(&i) {
                    32767
                } else {
                    1000
                };
                let right = if i % 2 == 0 && i < 100 { -32768 } else { -2000 };
                out.write_sample(left as i16).unwrap();
                out.write_sample(right as i16).unwrap();
            }
            out.finalize().unwrap();
        }
        let d = decode_wav(&w).unwrap();
        assert_eq!(d.samples.len(), frames);
        assert_eq!(d.frame_peaks.len(), frames);
        assert_eq!(d.clipped_samples, 4 + 50);
        assert_eq!(d.clip_runs, 1);
        assert_eq!(d.frame_peaks[0], 1.0);
        assert_eq!(d.frame_peaks[1], 2000.0 / 32768.0);
        assert_eq!(d.samples[1], (1000.0 - 2000.0) / 2.0 / 32768.0);
        assert_eq!(analyze_wav(&w).unwrap(), measure(&d));
    }

    #[test]
    fn span_levels_across_blocks_equal_a_sample_by_sample_sum() {
        let (s, bytes) = clipping_fixture();
        // Milliseconds; at 16 kHz they cross the 4,096-sample blocks, and the last one runs past
        // the end of the recording.
        let spans = [
            (0, 200, 300),
            (1, 250, 900),
            (2, 1_200, 1_251),
            (3, 1_250, 5_000),
        ];
        let (_, levels) = analyze_wav_spans(&bytes, &spans).unwrap();
        let q: Vec<f64> = s
            .iter()
            .map(|&x| f64::from((x.clamp(-1.0, 1.0) * 32767.0).round() as i16) / 32768.0)
            .collect();
        let level = |from: usize, to: usize| {
            let to = to.min(q.len());
            let sq: f64 = q[from..to].iter().map(|x| x * x).sum();
            20.0 * (sq / (to - from) as f64).sqrt().log10()
        };
        assert_eq!(levels.turns.len(), 4);
        for (t, &(i, a, b)) in levels.turns.iter().zip(&spans) {
            assert_eq!(t.turn_index, i);
            let want = level(a as usize * 16, b as usize * 16);
            assert!(
                (t.dbfs - want).abs() < 1e-9,
                "turn {i}: {} vs {want}",
                t.dbfs
            );
        }
    }

    #[test]
    fn digital_silence_has_no_peak_dbfs() {
        let m = measure(&decode_wav(&encode_wav_i16(&[0.0; 8000], 16000)).unwrap());
        assert_eq!(m.peak_dbfs, None);
        assert_eq!(m.snr_estimate, None);
        assert_eq!(m.rms_mean, 0.0);
    }
}
