//! Audio: WAV decoding and the per-segment metrics the diagnosis and the QA views read. Pure and
//! synchronous; async callers run it in `spawn_blocking`.

mod metrics;
mod wav;

pub use metrics::{
    AudioMetrics, Span, SpeechLevels, TurnLevel, analyze_wav, analyze_wav_spans, measure,
};
pub use wav::{AudioError, DecodedAudio, WavInfo, decode_wav, encode_wav_i16, read_wav};
