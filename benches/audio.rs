//! Audio replay-path benchmark: decode + clipping/level metrics + resample to 16 kHz, in audio seconds
//! processed per second of one core, next to `sox <file> -n stats` and `sox <file> -r 16000 out.wav`
//! on the same files (when sox is installed). Figures only; never fails on them.
//!
//!   cargo bench --bench audio [-- --seconds 60 --files 4]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::audio::{Clipping, analyze_wav, decode_wav, measure, resample};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Input {
    label: &'static str,
    path: PathBuf,
    seconds: f64,
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Speech-like test signal: a few harmonics with a syllable envelope over faint noise.
fn signal(rate: u32, seconds: usize, channel: usize) -> Vec<f32> {
    let mut seed = 12345u32 + channel as u32;
    (0..rate as usize * seconds)
        .map(|i| {
            let t = i as f32 / rate as f32;
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.01;
            let env = (t * 4.0 * std::f32::consts::PI).sin().abs();
            let f0 = 140.0 + 30.0 * (t * 0.5).sin();
            let v: f32 = (1..6)
                .map(|h| (t * f0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                .sum();
            0.3 * env * v + noise
        })
        .collect()
}

fn write_pcm(path: &Path, rate: u32, channels: u16, seconds: usize) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let chans: Vec<Vec<f32>> = (0..channels as usize)
        .map(|c| signal(rate, seconds, c))
        .collect();
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..chans[0].len() {
        for c in &chans {
            w.write_sample((c[i].clamp(-1.0, 1.0) * 32767.0) as i16)
                .expect("write");
        }
    }
    w.finalize().expect("finalize");
}

/// μ-law WAV (format tag 7) by nearest-code encoding, as telephony recordings arrive.
fn write_mulaw(path: &Path, rate: u32, seconds: usize) {
    fn decode(code: u8) -> i16 {
        let u = !code;
        let t = ((i16::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
        if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }
    }
    let mut table: Vec<(i16, u8)> = (0..=255u8).map(|c| (decode(c), c)).collect();
    table.sort();
    let codes: Vec<u8> = signal(rate, seconds, 0)
        .iter()
        .map(|&x| {
            let v = (x * 32124.0) as i16;
            let i = table.partition_point(|(d, _)| *d < v).min(255);
            table[i].1
        })
        .collect();
    let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    out.extend_from_slice(&18u32.to_le_bytes());
    out.extend_from_slice(&7u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
    out.extend_from_slice(&codes);
    let len = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    std::fs::write(path, out).expect("write mulaw");
}

/// The ingest path's metering: one streaming pass over the file (`analyze_wav`), no samples held.
fn ours_streaming(input: &Input, runs: usize) -> Duration {
    let bytes = std::fs::read(&input.path).expect("read");
    std::hint::black_box(analyze_wav(&bytes).expect("analyze"));
    let t = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(analyze_wav(&bytes).expect("analyze"));
    }
    t.elapsed() / runs as u32
}

fn ours(input: &Input, runs: usize) -> (Duration, Duration) {
    let bytes = std::fs::read(&input.path).expect("read");
    // Warm-up builds the pooled resampler once.
    let a = decode_wav(&bytes).expect("decode");
    let _ = resample(&a.samples, a.sample_rate, 16_000);
    let mut metrics_time = Duration::ZERO;
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let t = Instant::now();
        let a = decode_wav(&bytes).expect("decode");
        let m = measure(&a);
        let c = Clipping::measure(&a.samples, &a.frame_peaks);
        std::hint::black_box((&m, &c));
        metrics_time += t.elapsed();
        let out = resample(&a.samples, a.sample_rate, 16_000).expect("resample");
        std::hint::black_box(out.len());
        total += t.elapsed();
    }
    (metrics_time / runs as u32, total / runs as u32)
}

fn sox(args: &[&str], runs: usize) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new("sox").args(args).output().ok()?;
        if !out.status.success() {
            eprintln!("sox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        total += t.elapsed();
    }
    Some(total / runs as u32)
}

fn main() {
    let seconds = arg("--seconds", 60);
    let runs = arg("--runs", 5);
    let dir =
        std::env::temp_dir().join(format!("call-insights-audio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let inputs = [
        ("48 kHz stereo PCM16", 48_000, 2, false),
        ("44.1 kHz mono PCM16", 44_100, 1, false),
        ("16 kHz mono PCM16", 16_000, 1, false),
        ("8 kHz mono mu-law", 8_000, 1, true),
    ]
    .into_iter()
    .map(|(label, rate, ch, mulaw)| {
        let path = dir.join(format!("{}.wav", label.replace([' ', '.'], "_")));
        if mulaw {
            write_mulaw(&path, rate, seconds);
        } else {
            write_pcm(&path, rate, ch, seconds);
        }
        Input {
            label,
            path,
            seconds: seconds as f64,
        }
    })
    .collect::<Vec<_>>();
    let have_sox = Command::new("sox")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "audio replay path: {seconds} s files, mean of {runs} runs, one core (audio s per wall s; higher is faster)"
    );
    println!(
        "{:<22} {:>16} {:>16} {:>22} {:>16} {:>12} {:>22}",
        "input",
        "ours ingest metr",
        "ours decode+metr",
        "ours +resample 16k",
        "sox stats",
        "ingest/stats",
        "sox -r 16000"
    );
    let out_path = dir.join("sox-out.wav");
    for input in &inputs {
        let streaming = ours_streaming(input, runs);
        let (m, full) = ours(input, runs);
        let rate = |d: Duration| input.seconds / d.as_secs_f64();
        let path = input.path.to_string_lossy().to_string();
        let out = out_path.to_string_lossy().to_string();
        let (stats, conv) = if have_sox {
            (
                sox(&[&path, "-n", "stats"], runs),
                sox(&[&path, "-r", "16000", &out], runs),
            )
        } else {
            (None, None)
        };
        let show =
            |d: Option<Duration>| d.map_or("n/a".to_string(), |d| format!("{:.0}x", rate(d)));
        let ratio = stats.map_or("n/a".to_string(), |d| {
            format!("{:.2}", d.as_secs_f64() / streaming.as_secs_f64())
        });
        println!(
            "{:<22} {:>15.0}x {:>15.0}x {:>21.0}x {:>16} {:>12} {:>22}",
            input.label,
            rate(streaming),
            rate(m),
            rate(full),
            show(stats),
            ratio,
            show(conv)
        );
    }
    if !have_sox {
        println!("(sox not installed: `apt-get install sox` for the comparison)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
