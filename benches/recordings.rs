//! Recordings benchmark, figures only (never fails on them):
//!
//! 1. decode + conversation metrics of one recording (WAV PCM, μ-law, MP3, FLAC), in × real time of
//!    one core, beside `sox <file> -n stats` on the same file (same run);
//! 2. recordings per second end to end (upload → store → decode → transcribe → turns → metrics →
//!    ingest) with a fake Deepgram answering in 200 ms, on SQLite and a folder;
//! 3. the service's peak RSS (VmHWM) while a one-hour stereo WAV is uploaded through the API and
//!    analysed (the release binary, `--rss`).
//!
//!   cargo bench --bench recordings [-- --seconds 600 --calls 40 --rss]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[path = "../tests/common/recording_fakes.rs"]
#[allow(dead_code)]
mod recording_fakes;

use call_insights::conversation::{self, Input, Span, TurnSpan};
use call_insights::recordings::decode;
use call_insights::stt::ProviderId;
use recording_fakes::{FakeTranscriber, Utterance};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// A two-party call: the parties take 4 s turns with 0.6 s gaps (speech-like harmonics with a
/// syllable envelope), the other channel silent meanwhile. 16-bit PCM.
fn write_call(path: &Path, rate: u32, seconds: usize) -> Vec<Utterance> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let turn = rate as usize * 46 / 10;
    let talk = rate as usize * 4;
    let mut script = Vec::new();
    for i in 0..rate as usize * seconds {
        let k = i / turn;
        let speaking = i % turn < talk;
        if i % turn == 0 {
            script.push(Utterance {
                party: k % 2,
                text: "one two three four five six seven eight nine ten".into(),
            });
        }
        let t = i as f32 / rate as f32;
        let env = (t * 4.0 * std::f32::consts::PI).sin().abs().max(0.2);
        let f0 = 140.0 + 30.0 * (t * 0.5).sin();
        let v: f32 = (1..6)
            .map(|h| (t * f0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
            .sum();
        let s = (0.3 * env * v * 32767.0) as i16;
        for c in 0..2 {
            w.write_sample(if speaking && k % 2 == c { s } else { 0 })
                .expect("write");
        }
    }
    w.finalize().expect("finalize");
    script
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Decode + metrics of `path`: seconds of one core (median of `runs`).
fn ours(path: &Path, ext: &str, runs: usize) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let facts = decode::inspect(path, Some(ext)).expect("decodes");
                // The metrics over speech regions found in the envelope (what the words would give).
                let mut input = Input {
                    channel_separated: true,
                    ..Default::default()
                };
                for (c, env) in facts.envelope.iter().enumerate() {
                    let role = if c == 0 { "customer" } else { "agent" };
                    for (a, b) in decode::active_regions(env, 0.01, 600, 150) {
                        let span = Span {
                            start_ms: a,
                            end_ms: b,
                        };
                        input.speech.entry(role.into()).or_default().push(span);
                        input.turns.push(TurnSpan {
                            role: role.into(),
                            span,
                            words: 10,
                        });
                    }
                }
                input.turns.sort_by_key(|t| t.span.start_ms);
                let m = conversation::compute(&input, 10_000);
                std::hint::black_box(m);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn sox_stats(path: &Path, runs: usize) -> Option<f64> {
    let ok = Command::new("sox")
        .arg("--version")
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    Some(median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new("sox")
                    .arg(path)
                    .args(["-n", "stats"])
                    .output()
                    .expect("sox runs");
                assert!(out.status.success(), "sox stats failed");
                t.elapsed().as_secs_f64()
            })
            .collect(),
    ))
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = arg("--seconds", 600);
    let calls = arg("--calls", 40);
    let runs = arg("--runs", 3);
    let dir = std::env::temp_dir().join(format!("bench-recordings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // 1. Decode + metrics beside sox.
    let wav = dir.join("call.wav");
    write_call(&wav, 8000, seconds);
    let mut inputs: Vec<(String, PathBuf, &str)> =
        vec![("WAV PCM 8 kHz stereo".into(), wav.clone(), "wav")];
    for (label, ext, args) in [
        ("WAV μ-law", "wav", vec!["-e", "u-law"]),
        ("MP3 64 kb/s", "mp3", vec!["-C", "64"]),
        ("FLAC", "flac", vec![]),
    ] {
        let out = dir.join(format!(
            "call-{}.{ext}",
            label.split(' ').next().unwrap_or("x")
        ));
        let ok = Command::new("sox")
            .arg(&wav)
            .args(&args)
            .arg(&out)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            inputs.push((label.into(), out, ext));
        }
    }
    println!(
        "decode + conversation metrics of a {seconds} s two-channel call (median of {runs}), × real time of one core:"
    );
    println!("| input | ours | `sox f -n stats` | ours / sox |");
    println!("| --- | --- | --- | --- |");
    for (label, path, ext) in &inputs {
        let o = ours(path, ext, runs);
        let s = sox_stats(path, runs);
        let x = |t: f64| seconds as f64 / t;
        match s {
            Some(s) => println!("| {label} | {:.0}× | {:.0}× | {:.2} |", x(o), x(s), s / o),
            None => println!("| {label} | {:.0}× | (sox missing) | — |", x(o)),
        }
    }

    // 2. End to end with a fake Deepgram answering in 200 ms.
    let e2e_seconds = 60;
    let call = dir.join("e2e.wav");
    let script = write_call(&call, 8000, e2e_seconds);
    let fake = FakeTranscriber::start(ProviderId::Deepgram, script).await;
    fake.set_latency(Duration::from_millis(200));
    let data = dir.join("data");
    let mut config = call_insights::config::Config::defaults();
    config.data_dir = data.clone();
    config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        data.join("insights.db").display()
    ));
    config.stream = format!("bench:{}:sessions", std::process::id());
    config.stt.providers = vec![fake.config()];
    config.recording_concurrency = 4;
    config.recording_poll_ms = 20;
    std::fs::create_dir_all(&data).expect("data dir");
    let app = std::sync::Arc::new(call_insights::app::App::build(config).await.expect("app"));
    let bytes = std::fs::read(&call).expect("read");
    let started = Instant::now();
    for i in 0..calls {
        // Different bytes per call (the same bytes would be one recording).
        let mut b = bytes.clone();
        b.extend((i as u32).to_le_bytes());
        let p = dir.join(format!("upload-{i}.wav"));
        std::fs::write(&p, &b).expect("write");
        let mut spool = call_insights::recordings::spool::Spool::create(
            &app.recordings.settings.spool_dir,
            u64::MAX,
        )
        .await
        .expect("spool");
        spool.write(&b).await.expect("spool write");
        let spooled = spool.finish().await.expect("spool");
        call_insights::recordings::intake::accept_upload(
            &app.recordings,
            &app.db,
            &app.store,
            None,
            &call_insights::recordings::intake::Metadata::default(),
            spooled,
            Some(format!("call-{i}.wav")),
            Some("audio/wav".into()),
        )
        .await
        .expect("accepted");
    }
    let accepted = started.elapsed();
    let results = app
        .recording_worker()
        .process_available()
        .await
        .expect("worker");
    let total = started.elapsed();
    let done = results
        .iter()
        .filter(|r| matches!(r, call_insights::recordings::pipeline::RunResult::Completed))
        .count();
    println!(
        "\nend to end: {done}/{calls} recordings of {e2e_seconds} s (8 kHz stereo, {:.1} MB each) in {:.2} s = {:.1} recordings/s ({:.0} s of audio per s); intake alone {:.2} s; fake Deepgram answering in 200 ms, 4 at a time, SQLite + folder",
        bytes.len() as f64 / 1e6,
        total.as_secs_f64(),
        done as f64 / total.as_secs_f64(),
        (done * e2e_seconds) as f64 / total.as_secs_f64(),
        accepted.as_secs_f64(),
    );

    // 3. Peak RSS of the service while a one-hour stereo WAV is uploaded and analysed.
    if flag("--rss") {
        let bin = std::env::var("CALL_INSIGHTS_BIN").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            format!("{target}/release/call-insights")
        });
        let hour = dir.join("hour.wav");
        write_call(&hour, 8000, 3600);
        let size = std::fs::metadata(&hour).map(|m| m.len()).unwrap_or(0);
        let rss_data = dir.join("rss-data");
        std::fs::create_dir_all(&rss_data).expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut child = Command::new(&bin)
            .env("INSIGHTS_DATA_DIR", &rss_data)
            .env("INSIGHTS_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "INSIGHTS_STREAM",
                format!("bench-rss:{}:sessions", std::process::id()),
            )
            .env("INSIGHTS_DEEPGRAM_API_KEY", fake.config().api_key)
            .env("INSIGHTS_DEEPGRAM_BASE_URL", fake.base_url())
            .env("INSIGHTS_RECORDING_POLL_MS", "100")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (cargo build --release first)"));
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle = peak_rss_kib(child.id());
        let file = tokio::fs::File::open(&hour).await.expect("open");
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)),
            size,
        )
        .file_name("hour.wav")
        .mime_str("audio/wav")
        .expect("mime");
        let t = Instant::now();
        let r = client
            .post(format!("{base}/api/v1/recordings"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("upload");
        let upload_s = t.elapsed().as_secs_f64();
        let v: serde_json::Value = r.json().await.expect("json");
        let id = v["recording_id"].as_str().unwrap_or_default().to_string();
        let after_upload = peak_rss_kib(child.id());
        let mut status = String::new();
        for _ in 0..1200 {
            let v: serde_json::Value = client
                .get(format!("{base}/api/v1/recordings/{id}"))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            status = v["status"].as_str().unwrap_or_default().to_string();
            if status == "completed" || status == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let peak = peak_rss_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "\none-hour stereo WAV ({:.0} MB): upload {:.1} s; service peak RSS idle {:.0} MB, after the upload {:.0} MB, after decode + transcription + ingest ({status}) {:.0} MB",
            size as f64 / 1e6,
            upload_s,
            idle as f64 / 1024.0,
            after_upload as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
