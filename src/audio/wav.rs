//! WAV decoding to mono `f32`: PCM 8/16/24/32-bit integer and 32-bit float (hound), G.711 μ-law and
//! A-law (telephony; read here, hound does not), any rate, mono or multi-channel (averaged to mono).
//! Truncated and unsupported files give a reason, never a panic.

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
    /// Largest absolute sample of each frame over its channels; empty for mono files (the frame's
    /// own sample is its peak). Lets a slice of a multi-channel recording measure its clipping.
    pub frame_peaks: Vec<f32>,
    /// `pcm`, `float`, `mulaw` or `alaw`.
    pub encoding: &'static str,
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

/// WAVE format tags (RIFF `fmt ` chunk).
const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_ALAW: u16 = 6;
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// What the RIFF chunks of a WAV file say, read without hound (which rejects G.711).
struct RiffWav<'a> {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits_per_sample: u16,
    /// The data chunk's bytes actually present.
    data: &'a [u8],
    /// The data chunk's declared length.
    declared_len: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the RIFF chunks. `None` when the bytes are not a RIFF/WAVE file with a `fmt ` chunk, or
/// when no data chunk follows it (hound then gives the precise reason).
fn parse_riff(bytes: &[u8]) -> Option<RiffWav<'_>> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4)? as usize;
        let body = at + 8;
        if id == b"fmt " {
            let mut tag = le16(bytes, body)?;
            if tag == WAVE_FORMAT_EXTENSIBLE && size >= 40 {
                // The sub-format GUID starts with the real format tag.
                tag = le16(bytes, body + 24)?;
            }
            fmt = Some((
                tag,
                le16(bytes, body + 2)?,
                le32(bytes, body + 4)?,
                le16(bytes, body + 14)?,
            ));
        } else if id == b"data" {
            let (format_tag, channels, sample_rate, bits_per_sample) = fmt?;
            let end = body.saturating_add(size).min(bytes.len());
            return Some(RiffWav {
                format_tag,
                channels,
                sample_rate,
                bits_per_sample,
                data: &bytes[body.min(end)..end],
                declared_len: size as u64,
            });
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    None
}

/// The sample rate a WAV header declares, `None` when it has no readable header.
pub fn wav_sample_rate(bytes: &[u8]) -> Option<u32> {
    parse_riff(bytes).map(|r| r.sample_rate).or_else(|| {
        hound::WavReader::new(Cursor::new(bytes))
            .ok()
            .map(|r| r.spec().sample_rate)
    })
}

/// G.711 μ-law code to linear (ITU-T G.711; magnitudes up to 32124).
fn mulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((i16::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }
}

/// G.711 A-law code to linear (ITU-T G.711; magnitudes up to 32256).
fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i16::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t } else { -t }
}

/// Largest magnitude each G.711 law can encode: its full scale, so a sample at the top code reads
/// as 1.0 and counts as clipped like a full-scale PCM sample.
const MULAW_FULL_SCALE: f32 = 32124.0;
const ALAW_FULL_SCALE: f32 = 32256.0;

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
    /// `pcm`, `float`, `mulaw` or `alaw`.
    pub encoding: &'static str,
}

/// Consecutive clipped samples that count as a clipping run (hard clipping, not a stray peak).
const CLIP_RUN: u32 = 3;

/// Decodes a whole WAV file held in memory.
pub fn decode_wav(bytes: &[u8]) -> Result<DecodedAudio, AudioError> {
    // Upper bound of the frame count for 16-bit and wider mono; grows if needed for 8-bit.
    let mut samples = Vec::with_capacity(bytes.len() / 2);
    let mut frame_peaks = Vec::new();
    let info = read_blocks(bytes, &mut |block, peaks| {
        samples.extend_from_slice(block);
        frame_peaks.extend_from_slice(peaks);
    })?;
    Ok(DecodedAudio {
        sample_rate: info.sample_rate,
        channels: info.channels,
        bits_per_sample: info.bits_per_sample,
        samples,
        clipped_samples: info.clipped_samples,
        total_samples: info.total_samples,
        peak: info.peak,
        clip_runs: info.clip_runs,
        frame_peaks,
        encoding: info.encoding,
    })
}

/// Streams a WAV file's samples, averaged to mono, to `on_frame` without holding them.
pub fn read_wav(bytes: &[u8], mut on_frame: impl FnMut(f32)) -> Result<WavInfo, AudioError> {
    read_blocks(bytes, &mut |block, _| {
        block.iter().for_each(|&s| on_frame(s))
    })
}

/// Like [`read_wav`], in runs of up to 4,096 samples: what a meter that sums whole slices wants.
pub fn read_wav_blocks(
    bytes: &[u8],
    mut on_block: impl FnMut(&[f32]),
) -> Result<WavInfo, AudioError> {
    read_blocks(bytes, &mut |block, _| on_block(block))
}

/// Frames per block handed on.
const BLOCK: usize = 4096;

/// Streams blocks of (mono averages, each frame's largest absolute sample — empty for mono).
fn read_blocks(
    bytes: &[u8],
    on_block: &mut impl FnMut(&[f32], &[f32]),
) -> Result<WavInfo, AudioError> {
    if let Some(riff) = parse_riff(bytes) {
        match riff.format_tag {
            WAVE_FORMAT_MULAW | WAVE_FORMAT_ALAW => return read_g711(&riff, on_block),
            // 16-bit PCM, by far the common case, is read straight from the data chunk: hound's
            // per-sample reader costs several times more than the decoding itself.
            WAVE_FORMAT_PCM
                if riff.bits_per_sample == 16 && riff.channels > 0 && riff.sample_rate > 0 =>
            {
                let info = WavInfo::new(&riff, 16, "pcm");
                const SCALE: f32 = 1.0 / 32768.0;
                return read_fixed(&riff, info, on_block, |b: [u8; 2]| {
                    f32::from(i16::from_le_bytes(b)) * SCALE
                });
            }
            WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT => {}
            tag => {
                return Err(AudioError::Unsupported(format!(
                    "WAV format tag {tag:#06x}{}; readable: PCM, 32-bit float, G.711 mu-law and A-law",
                    match tag {
                        2 => " (MS ADPCM)",
                        0x11 => " (IMA ADPCM)",
                        0x31 => " (GSM 6.10)",
                        0x55 => " (MP3)",
                        _ => "",
                    }
                )));
            }
        }
    }
    // Other PCM widths and float through hound, frame by frame, handed on in blocks.
    let (mut mono, mut peaks) = (Vec::with_capacity(BLOCK), Vec::new());
    let info = read_hound(bytes, &mut |s, peak, channels| {
        mono.push(s);
        if channels > 1 {
            peaks.push(peak);
        }
        if mono.len() == BLOCK {
            on_block(&mono, &peaks);
            mono.clear();
            peaks.clear();
        }
    })?;
    if !mono.is_empty() {
        on_block(&mono, &peaks);
    }
    Ok(info)
}

impl WavInfo {
    fn new(riff: &RiffWav<'_>, bits_per_sample: u16, encoding: &'static str) -> WavInfo {
        WavInfo {
            sample_rate: riff.sample_rate,
            channels: riff.channels,
            bits_per_sample,
            frames: 0,
            clipped_samples: 0,
            total_samples: 0,
            peak: 0.0,
            clip_runs: 0,
            encoding,
        }
    }
}

/// Interleaved fixed-width samples straight from the data chunk, a block of frames at a time:
/// the mono average, peak, clipped samples and clip runs exactly as [`collect`] counts them, in
/// tight loops instead of a call per sample.
fn read_fixed<const W: usize>(
    riff: &RiffWav<'_>,
    mut info: WavInfo,
    on_block: &mut impl FnMut(&[f32], &[f32]),
    to_f32: impl Fn([u8; W]) -> f32,
) -> Result<WavInfo, AudioError> {
    let sample = |b: &[u8]| to_f32(std::array::from_fn(|i| b[i]));
    let channels = usize::from(riff.channels);
    let frame_bytes = W * channels;
    // A partial last frame is dropped, as hound does.
    let whole = riff.data.len() / frame_bytes * frame_bytes;
    let declared = riff.declared_len / W as u64 / channels as u64 * channels as u64;
    let inv = 1.0 / channels as f32;
    let mut mono = vec![0f32; BLOCK];
    let mut peaks = vec![0f32; if channels > 1 { BLOCK } else { 0 }];
    let mut runs = vec![0u32; channels];
    for bytes in riff.data[..whole].chunks(frame_bytes * BLOCK) {
        let frames = bytes.len() / frame_bytes;
        let out = &mut mono[..frames];
        let mut clipped = 0u64;
        if channels == 1 {
            let mut peak = info.peak;
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(W)) {
                let v = sample(b);
                let a = v.abs();
                peak = peak.max(a);
                clipped += u64::from(a >= CLIP_LEVEL);
                *o = (0.0 + v) * inv;
            }
            info.peak = peak;
        } else {
            for ((o, p), f) in out
                .iter_mut()
                .zip(&mut peaks[..frames])
                .zip(bytes.chunks_exact(frame_bytes))
            {
                let (mut acc, mut frame_peak) = (0.0f32, 0.0f32);
                for b in f.chunks_exact(W) {
                    let v = sample(b);
                    let a = v.abs();
                    frame_peak = frame_peak.max(a);
                    clipped += u64::from(a >= CLIP_LEVEL);
                    acc += v;
                }
                info.peak = info.peak.max(frame_peak);
                *o = acc * inv;
                *p = frame_peak;
            }
        }
        if clipped == 0 {
            runs.fill(0);
        } else {
            // Runs are rare: counted sample by sample only in a block that clips.
            for (i, b) in bytes.chunks_exact(W).enumerate() {
                let r = &mut runs[i % channels];
                if sample(b).abs() >= CLIP_LEVEL {
                    *r += 1;
                    if *r == CLIP_RUN {
                        info.clip_runs += 1;
                    }
                } else {
                    *r = 0;
                }
            }
        }
        info.clipped_samples += clipped;
        info.total_samples += (frames * channels) as u64;
        info.frames += frames as u64;
        on_block(out, &peaks[..if channels > 1 { frames } else { 0 }]);
    }
    if info.total_samples < declared {
        return Err(AudioError::Truncated {
            declared,
            present: info.total_samples,
        });
    }
    if info.frames == 0 {
        return Err(AudioError::Empty);
    }
    Ok(info)
}

fn read_g711(
    riff: &RiffWav<'_>,
    on_block: &mut impl FnMut(&[f32], &[f32]),
) -> Result<WavInfo, AudioError> {
    let law = if riff.format_tag == WAVE_FORMAT_MULAW {
        "mulaw"
    } else {
        "alaw"
    };
    if riff.bits_per_sample != 8 {
        return Err(AudioError::Unsupported(format!(
            "{law} with {} bits per sample (G.711 is 8-bit)",
            riff.bits_per_sample
        )));
    }
    if riff.channels == 0 {
        return Err(AudioError::Unsupported("zero channels".into()));
    }
    if riff.sample_rate == 0 {
        return Err(AudioError::Unsupported("sample rate 0".into()));
    }
    let mulaw = riff.format_tag == WAVE_FORMAT_MULAW;
    let mut table = [0f32; 256];
    for (code, v) in table.iter_mut().enumerate() {
        *v = if mulaw {
            f32::from(mulaw_to_linear(code as u8)) / MULAW_FULL_SCALE
        } else {
            f32::from(alaw_to_linear(code as u8)) / ALAW_FULL_SCALE
        };
    }
    read_fixed(
        riff,
        WavInfo::new(riff, 8, law),
        on_block,
        |[c]: [u8; 1]| table[usize::from(c)],
    )
}

/// Formats hound reads (8/24/32-bit PCM, 32-bit float), frame by frame.
fn read_hound(
    bytes: &[u8],
    on_frame: &mut impl FnMut(f32, f32, u16),
) -> Result<WavInfo, AudioError> {
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
        encoding: if spec.sample_format == hound::SampleFormat::Float {
            "float"
        } else {
            "pcm"
        },
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => collect(
            reader.into_samples::<f32>(),
            channels,
            declared,
            &mut info,
            on_frame,
            |s| s,
        )?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            collect(
                reader.into_samples::<i32>(),
                channels,
                declared,
                &mut info,
                on_frame,
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
    on_frame: &mut impl FnMut(f32, f32, u16),
    to_f32: F,
) -> Result<(), AudioError>
where
    I: Iterator<Item = hound::Result<S>>,
    F: Fn(S) -> f32,
{
    let inv = 1.0 / channels as f32;
    let mut acc = 0.0f32;
    let mut frame_peak = 0.0f32;
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
        frame_peak = frame_peak.max(a);
        info.total_samples += 1;
        acc += v;
        in_frame += 1;
        if in_frame == channels {
            on_frame(acc * inv, frame_peak, info.channels);
            info.frames += 1;
            acc = 0.0;
            frame_peak = 0.0;
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

    /// A G.711 WAV written by hand: `fmt ` with the given tag (optionally WAVE_FORMAT_EXTENSIBLE).
    fn g711_wav(tag: u16, extensible: bool, channels: u16, rate: u32, codes: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(
            &(if extensible {
                WAVE_FORMAT_EXTENSIBLE
            } else {
                tag
            })
            .to_le_bytes(),
        );
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(channels)).to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        if extensible {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&8u16.to_le_bytes());
            fmt.extend_from_slice(&0u32.to_le_bytes());
            fmt.extend_from_slice(&tag.to_le_bytes());
            fmt.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        } else {
            fmt.extend_from_slice(&0u16.to_le_bytes());
        }
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(&fmt);
        // A chunk a reader must skip.
        out.extend_from_slice(b"fact\x04\0\0\0");
        out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
        out.extend_from_slice(codes);
        let riff_len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff_len.to_le_bytes());
        out
    }

    #[test]
    fn g711_codes_decode_to_the_itu_values() {
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0xEF), 132);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        // Both laws are odd-symmetric and monotonic over their positive codes.
        for c in 0..=255u8 {
            assert_eq!(mulaw_to_linear(c), -mulaw_to_linear(c ^ 0x80));
            assert_eq!(alaw_to_linear(c), -alaw_to_linear(c ^ 0x80));
        }
    }

    #[test]
    fn mulaw_and_alaw_wavs_decode_like_the_pcm_they_encode() {
        let rate = 8000;
        let sine: Vec<f32> = (0..rate)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect();
        for (tag, full, decode) in [
            (
                WAVE_FORMAT_MULAW,
                MULAW_FULL_SCALE,
                mulaw_to_linear as fn(u8) -> i16,
            ),
            (
                WAVE_FORMAT_ALAW,
                ALAW_FULL_SCALE,
                alaw_to_linear as fn(u8) -> i16,
            ),
        ] {
            // Nearest code for each sample: a reference encoder.
            let codes: Vec<u8> = sine
                .iter()
                .map(|&x| {
                    (0..=255u8)
                        .min_by_key(|&c| ((f32::from(decode(c)) / full - x).abs() * 1e6) as i64)
                        .unwrap()
                })
                .collect();
            for extensible in [false, true] {
                let a = decode_wav(&g711_wav(tag, extensible, 1, rate as u32, &codes)).unwrap();
                assert_eq!(
                    (a.sample_rate, a.channels, a.samples.len()),
                    (8000, 1, 8000)
                );
                let worst = a
                    .samples
                    .iter()
                    .zip(&sine)
                    .map(|(d, s)| (d - s).abs())
                    .fold(0.0, f32::max);
                assert!(worst < 0.01, "tag {tag}: worst sample error {worst}");
                assert!((a.peak - 0.5).abs() < 0.01);
                assert_eq!(a.clipped_samples, 0);
            }
        }
        // Full-scale codes count as clipped; stereo is averaged.
        let a = decode_wav(&g711_wav(
            WAVE_FORMAT_MULAW,
            false,
            2,
            8000,
            &[0x80, 0xFF, 0x80, 0xFF, 0x80, 0xFF],
        ))
        .unwrap();
        assert_eq!(a.samples, vec![0.5, 0.5, 0.5]);
        assert_eq!(a.frame_peaks, vec![1.0, 1.0, 1.0]);
        assert_eq!((a.clipped_samples, a.clip_runs), (3, 1));
        assert_eq!(a.encoding, "mulaw");
    }

    #[test]
    fn truncated_and_unsupported_g711_give_reasons() {
        let mut bytes = g711_wav(WAVE_FORMAT_ALAW, false, 1, 8000, &[0xD5; 100]);
        bytes.truncate(bytes.len() - 40);
        assert_eq!(
            decode_wav(&bytes).unwrap_err(),
            AudioError::Truncated {
                declared: 100,
                present: 60
            }
        );
        let adpcm = g711_wav(2, false, 1, 8000, &[0; 10]);
        let err = decode_wav(&adpcm).unwrap_err().to_string();
        assert!(err.contains("MS ADPCM"), "{err}");
        assert_eq!(
            decode_wav(&g711_wav(WAVE_FORMAT_MULAW, false, 1, 8000, &[])).unwrap_err(),
            AudioError::Empty
        );
    }

    #[test]
    fn encode_roundtrips() {
        let bytes = encode_wav_i16(&[0.0, 0.5, -0.5], 16000);
        let a = decode_wav(&bytes).unwrap();
        assert_eq!(a.samples.len(), 3);
        assert!((a.samples[1] - 0.5).abs() < 1e-3);
    }
}
