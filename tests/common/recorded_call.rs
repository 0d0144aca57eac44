//! A two-party call synthesised with espeak-ng on two channels with planted timings: a 15 s silence,
//! a 2 s talk-over, a monologue of over a minute, a 3.5 s slow answer. Shared by the recording tests
//! and the browser test.

use crate::common::recording_fakes::Utterance;
use std::path::Path;

pub const RATE: u32 = 22050;
pub const CUSTOMER: usize = 0;
pub const AGENT: usize = 1;

/// espeak-ng's voice for `text`, leading and trailing silence trimmed (22050 Hz mono).
pub fn say(text: &str) -> Vec<i16> {
    let dir = std::env::temp_dir().join(format!("say-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("say.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-s", "170", "-w"])
        .arg(&out)
        .arg(text)
        .status()
        .expect("espeak-ng installed (scripts/services.sh installs it)");
    assert!(ok.success());
    let mut r = hound::WavReader::open(&out).unwrap();
    assert_eq!(r.spec().sample_rate, RATE);
    let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let _ = std::fs::remove_dir_all(&dir);
    let loud = |v: &i16| v.unsigned_abs() > 600;
    let first = s.iter().position(loud).unwrap_or(0);
    let last = s.iter().rposition(loud).unwrap_or(s.len());
    s[first..=last].to_vec()
}

pub fn ms_of(samples: usize) -> i64 {
    (samples as f64 * 1000.0 / f64::from(RATE)).round() as i64
}

/// A scripted two-party call: who says what when, and the audio of each channel.
pub struct Call {
    pub channels: [Vec<i16>; 2],
    /// (party, start ms, end ms, text), in order of start.
    pub lines: Vec<(usize, i64, i64, String)>,
}

impl Call {
    pub fn new() -> Self {
        Call {
            channels: [Vec::new(), Vec::new()],
            lines: Vec::new(),
        }
    }

    /// Places `texts` (joined by 250 ms pauses) on `party`'s channel at `at_ms`; returns its end.
    pub fn place(&mut self, party: usize, at_ms: i64, texts: &[&str]) -> i64 {
        let mut audio: Vec<i16> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                audio.extend(std::iter::repeat_n(0, (RATE / 4) as usize));
            }
            audio.extend(say(t));
        }
        let start = (at_ms as f64 * f64::from(RATE) / 1000.0).round() as usize;
        let ch = &mut self.channels[party];
        if ch.len() < start + audio.len() {
            ch.resize(start + audio.len(), 0);
        }
        ch[start..start + audio.len()].copy_from_slice(&audio);
        let end = ms_of(start + audio.len());
        self.lines.push((party, ms_of(start), end, texts.join(" ")));
        self.lines.sort_by_key(|l| l.1);
        end
    }

    pub fn script(&self) -> Vec<Utterance> {
        self.lines
            .iter()
            .map(|(p, _, _, t)| Utterance {
                party: *p,
                text: t.clone(),
            })
            .collect()
    }

    pub fn line(&self, i: usize) -> (usize, i64, i64) {
        let l = &self.lines[i];
        (l.0, l.1, l.2)
    }

    /// Stereo 16-bit WAV: channel 0 the customer, channel 1 the agent; 500 ms of room at the end.
    pub fn stereo_wav(&self, path: &Path) {
        let n = self.channels.iter().map(Vec::len).max().unwrap_or(0) + (RATE / 2) as usize;
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n {
            for c in &self.channels {
                w.write_sample(c.get(i).copied().unwrap_or(0)).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    pub fn mono_wav(&self, path: &Path) {
        let n = self.channels.iter().map(Vec::len).max().unwrap_or(0) + (RATE / 2) as usize;
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n {
            let s: i32 = self
                .channels
                .iter()
                .map(|c| i32::from(c.get(i).copied().unwrap_or(0)))
                .sum();
            w.write_sample(s.clamp(-32768, 32767) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
}

const MONOLOGUE: [&str; 8] = [
    "I can see there is an outage affecting several streets in your area, and our engineers were sent out early this morning to replace a damaged cable near the main exchange",
    "While they work on it your router will keep blinking orange, which is expected, and there is no need to restart it or change any of its settings during the repair",
    "Once the cable is replaced the connection comes back on its own within a few minutes, and you will get a text message on the number we have on file to confirm it",
    "If the service is still down an hour after that message, please call us again and mention this reference so that the next agent can see everything we discussed today",
    "I have also added a credit for the full day to your account, which will show on your next bill, together with a short note explaining the reason for the adjustment",
    "We are sorry for the trouble this has caused, we know how much people rely on a working connection at home, especially when they work from home like many of our customers",
    "In the meantime you can use the mobile data on your phone as a hotspot, and I have added twenty gigabytes of free mobile data to your plan for the rest of this week",
    "You can check the progress of the repair at any time on our status page or in the app, where the estimated time is updated by the engineers as soon as they know more",
];

/// The scripted call. With `overlap`, the customer talks over the last 2 s of the monologue.
pub fn scripted_call(overlap: bool) -> Call {
    let mut c = Call::new();
    let a1 = c.place(
        AGENT,
        500,
        &["Thank you for calling Acme support, how can I help you today"],
    );
    let c1 = c.place(
        CUSTOMER,
        a1 + 700,
        &["Hi, my internet has been down since this morning"],
    );
    let a2 = c.place(
        AGENT,
        c1 + 3_500,
        &["I am sorry to hear that, let me check your line right now"],
    );
    let c2 = c.place(CUSTOMER, a2 + 900, &["Okay, thank you"]);
    let a3 = c.place(AGENT, c2 + 15_000, &MONOLOGUE);
    assert!(
        a3 - (c2 + 15_000) >= 62_000,
        "the planted monologue is over a minute: {} ms",
        a3 - c2 - 15_000
    );
    let c3_at = if overlap { a3 - 2_000 } else { a3 + 700 };
    let c3 = c.place(
        CUSTOMER,
        c3_at,
        &["Wait, can you just tell me when it will be fixed"],
    );
    c.place(
        AGENT,
        c3 + 800,
        &["It should be fixed by five this afternoon"],
    );
    c
}
