//! Audio: WAV decoding (PCM, float, G.711), the per-segment metrics the diagnosis and the QA views
//! read, turn renditions and resampling for STT replay. Pure and synchronous; async callers run it in
//! `spawn_blocking`.

mod metrics;
mod rendition;
mod resample;
mod wav;

pub use metrics::{
    AudioMetrics, Span, SpeechLevels, TurnLevel, analyze_wav, analyze_wav_spans, measure,
};
pub mod peaks;
pub use rendition::{Clipping, Rendition, RenditionKind, slice, whole};
pub use resample::resample;
pub use wav::{
    AudioError, DecodedAudio, WavInfo, decode_wav, encode_wav_i16, read_wav, read_wav_blocks,
    wav_sample_rate,
};
