//! Sample-rate conversion with rubato's FFT resampler. Resamplers are expensive to build (FFT plans,
//! filter) and cheap to reset, so they are pooled per (from, to) rate pair and reused.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::AudioError;

/// Input chunk of the FFT resampler, in frames.
const CHUNK: usize = 1024;
/// Idle resamplers kept per rate pair (one per worker thread is enough).
const POOL_PER_PAIR: usize = 8;

type Pool = Mutex<HashMap<(u32, u32), Vec<Fft<f32>>>>;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Resamples mono audio from `from` Hz to `to` Hz. The output has `ceil(len × to / from)` samples,
/// aligned with the input (the resampler's delay is trimmed). Same rate: a copy.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    if from == 0 || to == 0 {
        return Err(AudioError::Unsupported(format!(
            "cannot resample {from} Hz to {to} Hz"
        )));
    }
    let reused = pool()
        .lock()
        .ok()
        .and_then(|mut p| p.get_mut(&(from, to)).and_then(Vec::pop));
    let mut resampler = match reused {
        Some(r) => r,
        None => Fft::<f32>::new(from as usize, to as usize, CHUNK, 1, FixedSync::Input)
            .map_err(|e| AudioError::Unsupported(format!("resampler {from}→{to} Hz: {e}")))?,
    };
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| AudioError::Unsupported(format!("resampler input: {e}")))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| AudioError::Unsupported(format!("resampling {from}→{to} Hz: {e}")));
    if let Ok(mut p) = pool().lock() {
        let idle = p.entry((from, to)).or_default();
        if idle.len() < POOL_PER_PAIR {
            idle.push(resampler);
        }
    }
    Ok(out?.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| 0.5 * (i as f32 * freq * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    fn rms(s: &[f32]) -> f32 {
        (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt()
    }

    #[test]
    fn a_tone_keeps_its_level_and_phase_across_rates() {
        for (from, to) in [
            (48_000, 16_000),
            (8_000, 16_000),
            (44_100, 16_000),
            (16_000, 24_000),
        ] {
            let input = sine(440.0, from, 1.0);
            let out = resample(&input, from, to).unwrap();
            assert_eq!(
                out.len(),
                (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize
            );
            let expected = sine(440.0, to, 1.0);
            // Away from the edges the output is the same tone sampled at the new rate.
            let mid = &out[out.len() / 4..out.len() * 3 / 4];
            let want = &expected[out.len() / 4..out.len() * 3 / 4];
            let worst = mid
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // −30 dB below the tone at worst (the 441:160 ratio is the hardest).
            assert!(worst < 0.016, "{from}→{to}: worst error {worst}");
            assert!((rms(mid) - rms(want)).abs() < 0.005);
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        let out = resample(&sine(7_000.0, 48_000, 1.0), 48_000, 8_000).unwrap();
        assert!(
            rms(&out[1000..7000]) < 0.01,
            "7 kHz must not alias into 8 kHz audio"
        );
    }

    #[test]
    fn reused_resamplers_give_identical_output() {
        let input = sine(300.0, 48_000, 0.3);
        let a = resample(&input, 48_000, 16_000).unwrap();
        let b = resample(&input, 48_000, 16_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(resample(&input, 16_000, 16_000).unwrap(), input);
        assert!(resample(&input, 0, 16_000).is_err());
    }
}
