//! WAV decoding to mono `f32` (hound): PCM 8/16/24/32-bit integer and 32-bit float, any rate, mono or
//! multi-channel (averaged to mono). Truncated and unsupported files give a reason, never a panic.

use std::io::Cursor;

/// Why a segment's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioError {
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("unsupported WAV: {0}")]
    Unsupported(String),
    #[error("truncated WAV: the header declares {declared} samples, only {present} are present")]
    Truncated { declared: u64, present: u64 },
    #[error("empty WAV: no samples")]
    Empty,
}

/// Decoded audio: mono samples in [-1, 1] plus what the file said about itself.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// One sample per frame (channels averaged).
    pub samples: Vec<f32>,
    /// Samples (per channel, before averaging) at or near full scale.
    pub clipped_samples: u64,
    /// Samples read over all channels.
    pub total_samples: u64,
    /// Largest absolute sample value over all channels, full scale = 1.0.
    pub peak: f32,
    /// Runs of 3 or more consecutive clipped samples in one channel.
    pub clip_runs: u64,
}

impl DecodedAudio {
    pub fn duration_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / self.sample_rate as f64
    }
}

/// A sample is "clipped" when it is within this fraction of full scale.
const CLIP_LEVEL: f32 = 0.999;

fn map_hound(e: hound::Error) -> AudioError {
    match e {
        hound::Error::FormatError(m) => AudioError::NotWav(m.to_string()),
        hound::Error::Unsupported => AudioError::Unsupported(
            "encoding not supported (PCM integer or 32-bit float only)".into(),
        ),
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::NotWav("file ends inside its header".into())
        }
        other => AudioError::NotWav(other.to_string()),
    }
}

/// What a WAV file said about itself and what reading its samples found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WavInfo {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// Mono frames delivered.
    pub frames: u64,
    /// Samples (per channel, before averaging) at or near full scale.
    pub clipped_samples: u64,
    /// Samples read over all channels.
    pub total_samples: u64,
    /// Largest absolute sample value over all channels, full scale = 1.0.
    pub peak: f32,
    /// Runs of at least `CLIP_RUN` consecutive clipped samples in one channel.
    pub clip_runs: u64,
}

/// Consecutive clipped samples that count as a clipping run (hard clipping, not a stray peak).
const CLIP_RUN: u32 = 3;

/// Decodes a whole WAV file held in memory.
pub fn decode_wav(bytes: &[u8]) -> Result<DecodedAudio, AudioError> {
    // Upper bound of the frame count for 16-bit and wider mono; grows if needed for 8-bit.
    let mut samples = Vec::with_capacity(bytes.len() / 2);
    let info = read_wav(bytes, |s| samples.push(s))?;
    Ok(DecodedAudio {
        sample_rate: info.sample_rate,
        channels: info.channels,
        bits_per_sample: info.bits_per_sample,
        samples,
        clipped_samples: info.clipped_samples,
        total_samples: info.total_samples,
        peak: info.peak,
        clip_runs: info.clip_runs,
    })
}

/// Streams a WAV file's samples, averaged to mono, to `on_frame` without holding them.
pub fn read_wav(bytes: &[u8], mut on_frame: impl FnMut(f32)) -> Result<WavInfo, AudioError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(map_hound)?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(AudioError::Unsupported("zero channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(AudioError::Unsupported("sample rate 0".into()));
    }
    let declared = u64::from(reader.len());
    let channels = usize::from(spec.channels);
    let mut info = WavInfo {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        frames: 0,
        clipped_samples: 0,
        total_samples: 0,
        peak: 0.0,
        clip_runs: 0,
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => collect(
            reader.into_samples::<f32>(),
            channels,
            declared,
            &mut info,
            &mut on_frame,
            |s| s,
        )?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            collect(
                reader.into_samples::<i32>(),
                channels,
                declared,
                &mut info,
                &mut on_frame,
                |s| s as f32 * scale,
            )?
        }
        (format, bits) => {
            return Err(AudioError::Unsupported(format!(
                "{bits}-bit {} samples",
                if format == hound::SampleFormat::Float {
                    "float"
                } else {
                    "integer"
                }
            )));
        }
    }
    if info.frames == 0 {
        return Err(AudioError::Empty);
    }
    Ok(info)
}

fn collect<S, I, F>(
    samples: I,
    channels: usize,
    declared: u64,
    info: &mut WavInfo,
    on_frame: &mut impl FnMut(f32),
    to_f32: F,
) -> Result<(), AudioError>
where
    I: Iterator<Item = hound::Result<S>>,
    F: Fn(S) -> f32,
{
    let inv = 1.0 / channels as f32;
    let mut acc = 0.0f32;
    let mut in_frame = 0usize;
    let mut run = vec![0u32; channels];
    for s in samples {
        let v = match s {
            Ok(s) => to_f32(s),
            // hound reports a short read as an I/O or a format error: past the header, a sample that
            // cannot be read means the data chunk is shorter than the header says.
            Err(_) if info.total_samples < declared => {
                return Err(AudioError::Truncated {
                    declared,
                    present: info.total_samples,
                });
            }
            Err(e) => return Err(map_hound(e)),
        };
        let a = v.abs();
        let r = &mut run[in_frame];
        if a >= CLIP_LEVEL {
            info.clipped_samples += 1;
            *r += 1;
            if *r == CLIP_RUN {
                info.clip_runs += 1;
            }
        } else {
            *r = 0;
        }
        if a > info.peak {
            info.peak = a;
        }
        info.total_samples += 1;
        acc += v;
        in_frame += 1;
        if in_frame == channels {
            on_frame(acc * inv);
            info.frames += 1;
            acc = 0.0;
            in_frame = 0;
        }
    }
    if info.total_samples < declared {
        return Err(AudioError::Truncated {
            declared,
            present: info.total_samples,
        });
    }
    Ok(())
}

/// Encodes mono samples as 16-bit PCM WAV (used by the simulator and the replay layer).
pub fn encode_wav_i16(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(44 + samples.len() * 2);
    buf.extend_from_slice(b"RIFF");
    buf.extend_from_slice(&(36 + samples.len() as u32 * 2).to_le_bytes());
    buf.extend_from_slice(b"WAVEfmt ");
    buf.extend_from_slice(&16u32.to_le_bytes());
    buf.extend_from_slice(&1u16.to_le_bytes());
    buf.extend_from_slice(&1u16.to_le_bytes());
    buf.extend_from_slice(&sample_rate.to_le_bytes());
    buf.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    buf.extend_from_slice(&2u16.to_le_bytes());
    buf.extend_from_slice(&16u16.to_le_bytes());
    buf.extend_from_slice(b"data");
    buf.extend_from_slice(&(samples.len() as u32 * 2).to_le_bytes());
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        cursor.into_inner()
    }

    #[test]
    fn decodes_16_bit_pcm_and_averages_stereo() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let bytes = wav(spec, |w| {
            for _ in 0..800 {
                w.write_sample(16384i16).unwrap();
                w.write_sample(0i16).unwrap();
            }
        });
        let a = decode_wav(&bytes).unwrap();
        assert_eq!((a.sample_rate, a.channels, a.samples.len()), (8000, 2, 800));
        assert!((a.samples[0] - 0.25).abs() < 1e-6);
        assert!((a.duration_ms() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn decodes_float_and_counts_clipped_samples() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let bytes = wav(spec, |w| {
            for i in 0..1000 {
                w.write_sample(if i % 10 == 0 { 1.0f32 } else { 0.1 })
                    .unwrap();
            }
        });
        let a = decode_wav(&bytes).unwrap();
        assert_eq!(a.clipped_samples, 100);
        assert_eq!(
            a.clip_runs, 0,
            "isolated full-scale samples are not a clipping run"
        );
        assert_eq!(a.peak, 1.0);
    }

    #[test]
    fn truncated_file_is_reported_as_truncated() {
        let bytes = encode_wav_i16(&vec![0.1; 1600], 16000);
        let err = decode_wav(&bytes[..bytes.len() - 1000]).unwrap_err();
        assert_eq!(
            err,
            AudioError::Truncated {
                declared: 1600,
                present: 1100
            }
        );
    }

    #[test]
    fn garbage_is_not_wav() {
        assert!(matches!(
            decode_wav(b"hello world, not audio"),
            Err(AudioError::NotWav(_))
        ));
        assert!(matches!(decode_wav(b""), Err(AudioError::NotWav(_))));
    }

    #[test]
    fn encode_roundtrips() {
        let bytes = encode_wav_i16(&[0.0, 0.5, -0.5], 16000);
        let a = decode_wav(&bytes).unwrap();
        assert_eq!(a.samples.len(), 3);
        assert!((a.samples[1] - 0.5).abs() < 1e-3);
    }
}
