//! Renditions of a user turn: the audio STT actually got (`stt_input`) and the turn's slice of the
//! full-call recordings before and after noise suppression. Slicing, clipping and the WAV a provider
//! is sent are computed here, purely.

use serde::Serialize;

use super::{AudioError, DecodedAudio, encode_wav_i16, resample};

/// Which version of a user turn's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenditionKind {
    /// The turn's slice of `full_pre_rnnoise`: what the microphone heard.
    PreRnnoise,
    /// The turn's slice of `full_post_rnnoise`: after noise suppression.
    PostRnnoise,
    /// The `stt_input` segment: exactly what the agent's STT received.
    SttInput,
}

impl RenditionKind {
    pub const ALL: [RenditionKind; 3] = [Self::PreRnnoise, Self::PostRnnoise, Self::SttInput];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreRnnoise => "pre_rnnoise",
            Self::PostRnnoise => "post_rnnoise",
            Self::SttInput => "stt_input",
        }
    }

    /// The `segment_type` this rendition is cut from.
    pub fn segment_type(self) -> &'static str {
        match self {
            Self::PreRnnoise => "full_pre_rnnoise",
            Self::PostRnnoise => "full_post_rnnoise",
            Self::SttInput => "stt_input",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How close a rendition came to full scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Clipping {
    /// Largest absolute sample, dBFS; `None` for digital silence.
    pub peak_dbfs: Option<f64>,
    /// Fraction of frames in which a channel is at or near full scale (≥ 0.999).
    pub clipped_ratio: f64,
}

/// A sample at or above this fraction of full scale counts as clipped (as in ingest).
const CLIP_LEVEL: f32 = 0.999;

impl Clipping {
    /// `frame_peaks` holds each frame's peak over its channels; empty for mono (the sample is it).
    pub fn measure(samples: &[f32], frame_peaks: &[f32]) -> Self {
        let peaks: Box<dyn Iterator<Item = f32>> = if frame_peaks.is_empty() {
            Box::new(samples.iter().map(|s| s.abs()))
        } else {
            Box::new(frame_peaks.iter().copied())
        };
        let (mut peak, mut clipped, mut n) = (0.0f32, 0u64, 0u64);
        for p in peaks {
            peak = peak.max(p);
            clipped += u64::from(p >= CLIP_LEVEL);
            n += 1;
        }
        Clipping {
            peak_dbfs: (peak > 0.0).then(|| 20.0 * f64::from(peak).log10()),
            clipped_ratio: clipped as f64 / n.max(1) as f64,
        }
    }
}

/// One rendition's audio, mono, at the recording's own rate.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub kind: RenditionKind,
    pub sample_rate: u32,
    pub samples: Vec<f32>,
    pub clipping: Clipping,
    /// Set when the turn reaches past the recording and the slice was shortened.
    pub note: Option<String>,
}

impl Rendition {
    pub fn duration_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / f64::from(self.sample_rate.max(1))
    }

    /// The rendition as 16-bit PCM mono WAV at `rate` (its own rate when `None`).
    pub fn wav(&self, rate: Option<u32>) -> Result<Vec<u8>, AudioError> {
        let rate = rate.unwrap_or(self.sample_rate);
        let samples = resample(&self.samples, self.sample_rate, rate)?;
        Ok(encode_wav_i16(&samples, rate))
    }
}

/// The whole of a decoded segment as a rendition (`stt_input`).
pub fn whole(kind: RenditionKind, audio: &DecodedAudio) -> Rendition {
    Rendition {
        kind,
        sample_rate: audio.sample_rate,
        clipping: Clipping::measure(&audio.samples, &audio.frame_peaks),
        samples: audio.samples.clone(),
        note: None,
    }
}

/// The `[start_ms, end_ms)` slice of a recording whose first sample is at `offset_ms` (all offsets
/// from the call's start). `Err` says why there is nothing to cut.
pub fn slice(
    kind: RenditionKind,
    audio: &DecodedAudio,
    offset_ms: i64,
    start_ms: i64,
    end_ms: i64,
) -> Result<Rendition, String> {
    if end_ms <= start_ms {
        return Err(format!("turn has no duration ([{start_ms}, {end_ms}) ms)"));
    }
    let rate = i128::from(audio.sample_rate);
    let len = audio.samples.len();
    let recording_end_ms = offset_ms as f64 + audio.duration_ms();
    // Sample index of a call offset, rounded down; may fall outside the recording.
    let index = |ms: i64| (i128::from(ms) - i128::from(offset_ms)) * rate / 1000;
    let (from, to) = (index(start_ms), index(end_ms));
    if to <= 0 || from >= len as i128 {
        return Err(format!(
            "turn [{start_ms}, {end_ms}) ms lies outside the recording [{offset_ms}, {recording_end_ms:.0}) ms"
        ));
    }
    let (a, b) = (from.max(0) as usize, to.min(len as i128) as usize);
    let mut notes = Vec::new();
    if from < 0 {
        notes.push(format!(
            "recording starts {offset_ms} ms, after the turn does"
        ));
    }
    if to > len as i128 {
        notes.push(format!(
            "recording ends at {recording_end_ms:.0} ms, before the turn does ({end_ms} ms)"
        ));
    }
    let peaks = if audio.frame_peaks.is_empty() {
        &[][..]
    } else {
        &audio.frame_peaks[a..b]
    };
    Ok(Rendition {
        kind,
        sample_rate: audio.sample_rate,
        clipping: Clipping::measure(&audio.samples[a..b], peaks),
        samples: audio.samples[a..b].to_vec(),
        note: (!notes.is_empty()).then(|| format!("slice shortened: {}", notes.join("; "))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode_wav;

    fn ramp_recording(rate: u32, secs: u32) -> DecodedAudio {
        // Sample i holds i / len so a slice's first sample tells where it was cut.
        let n = (rate * secs) as usize;
        let s: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * 0.5).collect();
        decode_wav(&encode_wav_i16(&s, rate)).unwrap()
    }

    #[test]
    fn a_slice_is_cut_relative_to_the_recording_offset() {
        let rec = ramp_recording(16_000, 10);
        let r = slice(RenditionKind::PreRnnoise, &rec, 2_000, 3_000, 4_500).unwrap();
        assert_eq!(r.samples.len(), 24_000);
        assert_eq!(r.samples[0], rec.samples[16_000]);
        assert!((r.duration_ms() - 1500.0).abs() < 1e-9);
        assert_eq!(r.note, None);
        assert_eq!(r.clipping.clipped_ratio, 0.0);
    }

    #[test]
    fn turns_outside_the_recording_are_missing_with_a_reason() {
        let rec = ramp_recording(8_000, 2);
        let err = slice(RenditionKind::PostRnnoise, &rec, 1_000, 5_000, 6_000).unwrap_err();
        assert!(
            err.contains("outside the recording [1000, 3000) ms"),
            "{err}"
        );
        assert!(slice(RenditionKind::PostRnnoise, &rec, 1_000, 0, 1_000).is_err());
        assert!(
            slice(RenditionKind::PostRnnoise, &rec, 0, 500, 500)
                .unwrap_err()
                .contains("no duration")
        );
        let partial = slice(RenditionKind::PostRnnoise, &rec, 0, 1_500, 2_500).unwrap();
        assert_eq!(partial.samples.len(), 4_000);
        assert!(partial.note.unwrap().contains("before the turn does"));
    }

    #[test]
    fn clipping_is_measured_per_slice() {
        let mut s = vec![0.1f32; 16_000];
        for v in &mut s[8_000..8_100] {
            *v = 1.0;
        }
        let rec = decode_wav(&encode_wav_i16(&s, 16_000)).unwrap();
        let quiet = slice(RenditionKind::SttInput, &rec, 0, 0, 400).unwrap();
        let loud = slice(RenditionKind::SttInput, &rec, 0, 500, 600).unwrap();
        assert!((quiet.clipping.peak_dbfs.unwrap() + 20.0).abs() < 0.01);
        assert!(
            loud.clipping.peak_dbfs.unwrap().abs() < 0.001,
            "{:?}",
            loud.clipping
        );
        assert!((loud.clipping.clipped_ratio - 100.0 / 1600.0).abs() < 1e-12);
        assert_eq!(
            whole(RenditionKind::SttInput, &rec).clipping.clipped_ratio,
            100.0 / 16_000.0
        );
    }

    #[test]
    fn wav_output_is_resampled_on_request() {
        let rec = ramp_recording(48_000, 1);
        let r = whole(RenditionKind::SttInput, &rec);
        let at16 = decode_wav(&r.wav(Some(16_000)).unwrap()).unwrap();
        assert_eq!((at16.sample_rate, at16.samples.len()), (16_000, 16_000));
        let own = decode_wav(&r.wav(None).unwrap()).unwrap();
        assert_eq!(own.sample_rate, 48_000);
    }
}
