//! Waveform peaks computed on the server, so the browser draws a long call without decoding it:
//! the largest absolute sample of each of `buckets` equal stretches of the recording.

use super::{AudioError, read_wav};
use serde::Serialize;

/// A waveform's peaks (0–1, one per bucket) and the recording's length.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Peaks {
    pub duration_ms: f64,
    pub sample_rate: u32,
    pub peaks: Vec<f32>,
}

/// At most this many buckets, and about one per 20 ms below it.
pub const MAX_BUCKETS: usize = 4000;

/// Peaks of a WAV file: two passes over the bytes (count, then bucket) hold no samples.
pub fn peaks(wav: &[u8]) -> Result<Peaks, AudioError> {
    let info = read_wav(wav, |_| {})?;
    let frames = info.frames.max(1);
    let duration_ms = info.frames as f64 * 1000.0 / f64::from(info.sample_rate.max(1));
    let buckets = ((duration_ms / 20.0).ceil() as usize).clamp(1, MAX_BUCKETS);
    let mut out = vec![0f32; buckets];
    let mut i: u64 = 0;
    read_wav(wav, |s| {
        let b = ((i * buckets as u64) / frames) as usize;
        if let Some(p) = out.get_mut(b) {
            *p = p.max(s.abs().min(1.0));
        }
        i += 1;
    })?;
    for p in &mut out {
        *p = (*p * 1000.0).round() / 1000.0;
    }
    Ok(Peaks {
        duration_ms,
        sample_rate: info.sample_rate,
        peaks: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loud_second_after_a_quiet_one_shows_in_the_second_half() {
        let rate = 16_000;
        let mut samples = vec![0.01f32; rate as usize];
        samples.extend((0..rate).map(|i| if i % 2 == 0 { 0.8 } else { -0.8 }));
        let wav = crate::audio::encode_wav_i16(&samples, rate);
        let p = peaks(&wav).unwrap();
        assert_eq!(p.peaks.len(), 100);
        assert!((p.duration_ms - 2000.0).abs() < 1e-6);
        assert!(
            p.peaks[..50].iter().all(|v| *v < 0.02),
            "{:?}",
            &p.peaks[..50]
        );
        assert!(p.peaks[50..].iter().all(|v| (*v - 0.8).abs() < 0.01));
        assert!(peaks(b"not a wav").is_err());
    }
}
