//! Decoding a stored recording (WAV with PCM, μ-law or A-law; MP3; FLAC; Ogg/Vorbis; Ogg/Opus, the
//! format LiveKit's recorder writes, through the pure-Rust `opus-decoder`) with symphonia's demuxers,
//! streamed from its file: what it is (codec, channels, native rate, duration), a level envelope per
//! channel (for the waveforms and the checks), and per-channel WAVs for providers that take one channel
//! at a time. Nothing is resampled and the whole file is never held in memory.

use std::fs::File;
use std::path::Path;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Level envelope resolution: one value per this many milliseconds.
pub const ENVELOPE_MS: u32 = 10;
/// Waveform resolution for the page: one peak per this many milliseconds.
pub const WAVEFORM_MS: u32 = 100;
/// More channels than this is not a call recording.
pub const MAX_CHANNELS: usize = 8;

/// Why a file could not be read as audio, worded for the person who uploaded it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an audio file this service reads (WAV, MP3, FLAC, Ogg/Vorbis, Ogg/Opus): {0}")]
    Unsupported(String),
    #[error("the audio is damaged: {0}")]
    Corrupt(String),
    #[error(
        "the file is truncated: its header promises {promised_ms} ms of audio, only {decoded_ms} ms are there"
    )]
    Truncated { promised_ms: i64, decoded_ms: i64 },
    #[error("the file holds no audio")]
    Empty,
    #[error("{0} channels: a call recording has 1 to {MAX_CHANNELS}")]
    TooManyChannels(usize),
    #[error("cannot read the stored file: {0}")]
    Io(String),
}

/// What a recording is.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFacts {
    /// symphonia's short codec name: `pcm_s16le`, `pcm_mulaw`, `pcm_alaw`, `mp3`, `flac`, `vorbis` …
    pub codec: String,
    pub channels: usize,
    pub sample_rate: u32,
    pub frames: u64,
    pub duration_ms: i64,
    /// Per channel, RMS level per `ENVELOPE_MS` (0–1 full scale).
    pub envelope: Vec<Vec<f32>>,
    /// Per channel, peak level per `WAVEFORM_MS` (0–1), rounded to 3 decimals.
    pub waveform: Vec<Vec<f32>>,
}

/// Streams the decoded samples of `path` to `sink` as interleaved f32 blocks `(samples, channels,
/// rate)`. Returns codec name, channels, rate, the frame count the container promised (when it says)
/// and the frames decoded.
pub fn decode_with(
    path: &Path,
    extension: Option<&str>,
    mut sink: impl FnMut(&[f32], usize, u32) -> Result<(), DecodeError>,
) -> Result<(String, usize, u32, Option<u64>, u64), DecodeError> {
    let file = File::open(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| DecodeError::Unsupported(describe(&e)))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(DecodeError::Empty)?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    if params.codec == CODEC_TYPE_OPUS {
        return decode_opus(format, track_id, &params, sink);
    }
    let codec = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .map(|d| d.short_name.to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| DecodeError::Unsupported(describe(&e)))?;
    let mut channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut frames = 0u64;
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut bad_packets = 0u32;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                if frames > 0 {
                    return Err(DecodeError::Corrupt(describe(&e)));
                }
                return Err(DecodeError::Unsupported(describe(&e)));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // One damaged packet in a long MP3 is skipped; many are not.
            Err(SymError::DecodeError(e)) => {
                bad_packets += 1;
                if bad_packets > 50 {
                    return Err(DecodeError::Corrupt(e.to_string()));
                }
                continue;
            }
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(DecodeError::Corrupt(describe(&e))),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count();
        rate = spec.rate;
        if channels > MAX_CHANNELS {
            return Err(DecodeError::TooManyChannels(channels));
        }
        let needed = decoded.capacity() as u64;
        let b = match &mut buf {
            Some(b) if b.capacity() as u64 >= needed * channels as u64 => b,
            slot => slot.insert(SampleBuffer::<f32>::new(needed, spec)),
        };
        b.copy_interleaved_ref(decoded);
        let samples = b.samples();
        if let Some(n) = samples.len().checked_div(channels) {
            frames += n as u64;
            sink(samples, channels, rate)?;
        }
    }
    if frames == 0 || channels == 0 || rate == 0 {
        return Err(DecodeError::Empty);
    }
    Ok((codec, channels, rate, params.n_frames, frames))
}

/// Ogg/Opus: symphonia demuxes the packets, `opus-decoder` decodes them at 48 kHz (Opus's own rate);
/// the encoder's pre-skip is dropped from the start.
fn decode_opus(
    mut format: Box<dyn symphonia::core::formats::FormatReader>,
    track_id: u32,
    params: &symphonia::core::codecs::CodecParameters,
    mut sink: impl FnMut(&[f32], usize, u32) -> Result<(), DecodeError>,
) -> Result<(String, usize, u32, Option<u64>, u64), DecodeError> {
    const RATE: u32 = 48_000;
    let channels = params.channels.map(|c| c.count()).unwrap_or(1);
    if !(1..=2).contains(&channels) {
        return Err(DecodeError::Unsupported(format!(
            "Opus with {channels} channels (multistream); 1 or 2 are read"
        )));
    }
    let mut decoder = opus_decoder::OpusDecoder::new(RATE, channels)
        .map_err(|e| DecodeError::Unsupported(format!("Opus: {e}")))?;
    let mut pcm = vec![0.0f32; opus_decoder::OpusDecoder::MAX_FRAME_SIZE_48K * channels];
    let mut skip = params.delay.unwrap_or(0) as usize;
    let mut frames = 0u64;
    let mut bad_packets = 0u32;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(DecodeError::Corrupt(describe(&e))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let n = match decoder.decode_float(&packet.data, &mut pcm, false) {
            Ok(n) => n,
            Err(e) => {
                bad_packets += 1;
                if bad_packets > 50 {
                    return Err(DecodeError::Corrupt(format!("Opus: {e}")));
                }
                continue;
            }
        };
        let dropped = skip.min(n);
        skip -= dropped;
        let samples = &pcm[dropped * channels..n * channels];
        if !samples.is_empty() {
            frames += (n - dropped) as u64;
            sink(samples, channels, RATE)?;
        }
    }
    if frames == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(("opus".into(), channels, RATE, None, frames))
}

fn describe(e: &SymError) -> String {
    match e {
        SymError::Unsupported(what) => format!("unsupported {what}"),
        SymError::DecodeError(what) => what.to_string(),
        SymError::IoError(io) => io.to_string(),
        SymError::SeekError(_) => "cannot seek".into(),
        SymError::LimitError(what) => format!("limit reached: {what}"),
        SymError::ResetRequired => "the stream changed mid-file".into(),
    }
}

fn ms_of(frames: u64, rate: u32) -> i64 {
    (frames as f64 * 1000.0 / f64::from(rate.max(1))).round() as i64
}

/// Reads `path` whole (streamed) and says what it is. `extension` (from the file name or content type)
/// only helps the probe; the bytes decide.
pub fn inspect(path: &Path, extension: Option<&str>) -> Result<AudioFacts, DecodeError> {
    let mut env: Vec<Vec<f32>> = Vec::new();
    let mut wave: Vec<Vec<f32>> = Vec::new();
    // Running sums per channel for the current envelope window and waveform window.
    let mut sq: Vec<f64> = Vec::new();
    let mut peak: Vec<f32> = Vec::new();
    let mut in_env = 0usize;
    let mut in_wave = 0usize;
    let mut env_len = 0usize;
    let mut wave_len = 0usize;
    let (codec, channels, rate, promised, frames) = decode_with(path, extension, |s, ch, rate| {
        if env.len() != ch {
            env = vec![Vec::new(); ch];
            wave = vec![Vec::new(); ch];
            sq = vec![0.0; ch];
            peak = vec![0.0; ch];
            env_len = (rate as usize * ENVELOPE_MS as usize / 1000).max(1);
            wave_len = (rate as usize * WAVEFORM_MS as usize / 1000).max(1);
        }
        for frame in s.chunks_exact(ch) {
            for (c, v) in frame.iter().enumerate() {
                sq[c] += f64::from(*v) * f64::from(*v);
                peak[c] = peak[c].max(v.abs());
            }
            in_env += 1;
            in_wave += 1;
            if in_env == env_len {
                for c in 0..ch {
                    env[c].push((sq[c] / env_len as f64).sqrt() as f32);
                    sq[c] = 0.0;
                }
                in_env = 0;
            }
            if in_wave == wave_len {
                for c in 0..ch {
                    wave[c].push((peak[c].min(1.0) * 1000.0).round() / 1000.0);
                    peak[c] = 0.0;
                }
                in_wave = 0;
            }
        }
        Ok(())
    })?;
    if in_env > 0 {
        for c in 0..channels.min(env.len()) {
            env[c].push((sq[c] / in_env as f64).sqrt() as f32);
        }
    }
    if in_wave > 0 {
        for c in 0..channels.min(wave.len()) {
            wave[c].push((peak[c].min(1.0) * 1000.0).round() / 1000.0);
        }
    }
    let decoded_ms = ms_of(frames, rate);
    if let Some(promised) = promised {
        // A header that promises more than 1 % (and 200 ms) beyond what is there: cut short.
        let promised_ms = ms_of(promised, rate);
        if promised > frames && promised_ms - decoded_ms > (promised_ms / 100).max(200) {
            return Err(DecodeError::Truncated {
                promised_ms,
                decoded_ms,
            });
        }
    }
    Ok(AudioFacts {
        codec,
        channels,
        sample_rate: rate,
        frames,
        duration_ms: decoded_ms,
        envelope: env,
        waveform: wave,
    })
}

/// Writes channel `channel` of `path` as a 16-bit PCM WAV at the native rate to `out`.
pub fn extract_channel(
    path: &Path,
    extension: Option<&str>,
    channel: usize,
    out: &Path,
) -> Result<(), DecodeError> {
    let mut writer: Option<hound::WavWriter<std::io::BufWriter<File>>> = None;
    let io = |e: hound::Error| DecodeError::Io(e.to_string());
    decode_with(path, extension, |s, ch, rate| {
        let w = match &mut writer {
            Some(w) => w,
            slot => slot.insert(
                hound::WavWriter::create(
                    out,
                    hound::WavSpec {
                        channels: 1,
                        sample_rate: rate,
                        bits_per_sample: 16,
                        sample_format: hound::SampleFormat::Int,
                    },
                )
                .map_err(io)?,
            ),
        };
        for frame in s.chunks_exact(ch) {
            let v = frame.get(channel).copied().unwrap_or(0.0);
            w.write_sample((v.clamp(-1.0, 1.0) * 32767.0) as i16)
                .map_err(io)?;
        }
        Ok(())
    })?;
    match writer {
        Some(w) => w.finalize().map_err(io),
        None => Err(DecodeError::Empty),
    }
}

/// Speech regions of one channel's envelope: runs above `threshold` (RMS), joined across gaps shorter
/// than `join_ms`, each at least `min_ms` long. Milliseconds from the start.
pub fn active_regions(
    envelope: &[f32],
    threshold: f32,
    join_ms: i64,
    min_ms: i64,
) -> Vec<(i64, i64)> {
    let step = i64::from(ENVELOPE_MS);
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut start: Option<i64> = None;
    for (i, v) in envelope.iter().enumerate() {
        let t = i as i64 * step;
        match (start, *v >= threshold) {
            (None, true) => start = Some(t),
            (Some(s), false) => {
                out.push((s, t));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, envelope.len() as i64 * step));
    }
    let mut joined: Vec<(i64, i64)> = Vec::new();
    for r in out {
        match joined.last_mut() {
            Some(last) if r.0 - last.1 < join_ms => last.1 = r.1,
            _ => joined.push(r),
        }
    }
    joined.retain(|r| r.1 - r.0 >= min_ms);
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, channels: u16, rate: u32, seconds: f64, tone_channel: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (seconds * f64::from(rate)) as usize;
        for i in 0..n {
            for c in 0..channels as usize {
                let on = c == tone_channel && (i as f64 / f64::from(rate)) >= 1.0;
                let v = if on {
                    ((i as f64 * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin() * 16000.0)
                        as i16
                } else {
                    0
                };
                w.write_sample(v).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_stereo_wav_is_read_per_channel_at_its_native_rate() {
        let dir = std::env::temp_dir().join(format!("ci-decode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("call.wav");
        wav(&p, 2, 8000, 3.0, 1);
        let f = inspect(&p, Some("wav")).unwrap();
        assert_eq!(
            (f.codec.as_str(), f.channels, f.sample_rate),
            ("pcm_s16le", 2, 8000)
        );
        assert_eq!(f.duration_ms, 3000);
        assert_eq!(f.envelope[0].len(), 300);
        assert!(f.envelope[0].iter().all(|v| *v == 0.0));
        let regions = active_regions(&f.envelope[1], 0.01, 300, 100);
        assert_eq!(regions, vec![(1000, 3000)]);
        assert_eq!(f.waveform[1].len(), 30);
        let out = dir.join("ch1.wav");
        extract_channel(&p, Some("wav"), 1, &out).unwrap();
        let one = inspect(&out, Some("wav")).unwrap();
        assert_eq!((one.channels, one.duration_ms), (1, 3000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_and_non_audio_files_fail_with_a_reason() {
        let dir = std::env::temp_dir().join(format!("ci-decode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("call.wav");
        wav(&p, 1, 8000, 4.0, 0);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = inspect(&p, Some("wav")).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Truncated {
                    promised_ms: 4000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
        let t = dir.join("notes.txt");
        std::fs::write(&t, "this is not audio at all, just some words").unwrap();
        let e = inspect(&t, None).unwrap_err();
        assert!(matches!(e, DecodeError::Unsupported(_)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
