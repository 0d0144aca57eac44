//! `call-insights produce`: a Rust Atlas simulator publishing realistic synthetic session reports (partials
//! then a final per call, ≈13 turns and ≈32 events per final, optional speech-like audio) exactly as the
//! contract lays them out, for demos, tests and benchmarks.

use crate::audio::encode_wav_i16;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{Value, json};
use std::io::Write;

#[derive(Debug, Clone, clap::Args)]
pub struct ProduceOptions {
    /// Calls to simulate.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    /// Partial reports per call before the final one.
    #[arg(long, default_value_t = 2)]
    pub partials: usize,
    /// Attach audio: full-call pre/post noise suppression recordings and one STT input per user turn
    /// (16 kHz mono 16-bit, raw WAV in `audio:<segment_id>` fields).
    #[arg(long)]
    pub audio: bool,
    /// gzip the JSON payloads (`payload_encoding gzip`).
    #[arg(long)]
    pub gzip: bool,
    /// Calls in flight at once: their reports interleave on the stream like concurrent calls do.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Seed of the generator (same seed, same reports).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Prefix of generated call ids.
    #[arg(long, default_value = "sim")]
    pub call_prefix: String,
    /// Date calls across the last D days, ending now (0: a fixed, reproducible timeline in 2026-10,
    /// as the tests and benchmarks use).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Share of calls with one planted fault: a slow LLM, an STT failure, near-miss speech or a
    /// dropped utterance (0 to 1).
    #[arg(long, default_value_t = 0.25)]
    pub faults: f64,
    /// Publish each call's partials over its real duration (calls start now and run in real time),
    /// so the Live page and active calls show calls in progress.
    #[arg(long)]
    pub realtime: bool,
    /// End of the `--days` window (set once per run; now when unset).
    #[arg(skip)]
    pub until: Option<chrono::DateTime<Utc>>,
}

impl Default for ProduceOptions {
    /// Clean calls on the fixed timeline: what tests and benchmarks compare against.
    fn default() -> Self {
        ProduceOptions {
            calls: 10,
            partials: 2,
            audio: false,
            gzip: false,
            concurrency: 100,
            seed: 42,
            call_prefix: "sim".into(),
            days: 0,
            faults: 0.0,
            realtime: false,
            until: None,
        }
    }
}

/// xorshift64*: small, fast, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// One scripted conversation per intent: what the caller says and what the agent answers, turn by
/// turn, with the agent that takes such calls and how the caller feels.
struct Script {
    intent: &'static str,
    agent: &'static str,
    exchanges: &'static [(&'static str, &'static str)],
}

const SCRIPTS: [Script; 5] = [
    Script {
        intent: "booking",
        agent: "booking-bot",
        exchanges: &[
            (
                "Hi, I'd like to book an appointment for a haircut.",
                "Of course. Which day works best for you?",
            ),
            (
                "Is there a slot available on Thursday afternoon?",
                "I have three pm or four thirty on Thursday.",
            ),
            (
                "Three pm is perfect, please book it.",
                "Done. May I have your name for the booking?",
            ),
            (
                "It's Maria Lopez.",
                "Thank you Maria, you are booked for Thursday at three pm.",
            ),
            (
                "Can I reschedule later if I need to?",
                "Yes, you can move your appointment up to a day ahead at no fee.",
            ),
            (
                "Great, thank you so much!",
                "You're welcome, see you on Thursday.",
            ),
        ],
    },
    Script {
        intent: "complaint",
        agent: "support-bot",
        exchanges: &[
            (
                "I was charged twice for the same order and I am really frustrated.",
                "I'm sorry about that. Let me look at your account.",
            ),
            (
                "This is the second time it happened, it's unacceptable.",
                "I can see two identical charges from last Tuesday.",
            ),
            (
                "I want a refund right now, this is ridiculous.",
                "I have opened a refund request for the duplicate charge.",
            ),
            (
                "How long will the refund take? I'm very disappointed.",
                "The refund reaches your card within five business days.",
            ),
            (
                "Fine, but I'm not happy about this at all.",
                "I understand, and I have added a note to prevent this happening again.",
            ),
            (
                "Okay. Goodbye.",
                "Again, I apologise for the trouble. Goodbye.",
            ),
        ],
    },
    Script {
        intent: "sales",
        agent: "sales-bot",
        exchanges: &[
            (
                "Hi, I'm interested in upgrading to your business plan.",
                "Great choice. How many seats would you need?",
            ),
            (
                "About fifty seats. What's the pricing for that?",
                "For fifty seats it is twelve dollars per seat per month.",
            ),
            (
                "Is there a discount if we pay yearly?",
                "Yes, paying yearly gives you two months free.",
            ),
            (
                "That sounds good. Can I get a quote and a demo?",
                "Certainly, I will email a quote and book a demo for you.",
            ),
            (
                "We're ready to sign up this week if the demo goes well.",
                "Wonderful, the demo is booked for Wednesday at ten.",
            ),
            (
                "Perfect, thanks for your help!",
                "Thank you, we look forward to working with you.",
            ),
        ],
    },
    Script {
        intent: "support",
        agent: "support-bot",
        exchanges: &[
            (
                "Hi, I can't log in to my account, the app shows an error.",
                "Sorry to hear that. What does the error say?",
            ),
            (
                "It says my password is not valid, but it is.",
                "Let me send you a password reset link.",
            ),
            (
                "Okay, I got the email. I reset it.",
                "Great. Please try to log in again now.",
            ),
            (
                "Now it says the account is locked.",
                "I have unlocked the account for you. Please try once more.",
            ),
            (
                "It works now, thank you.",
                "Good. Is there anything else I can fix for you?",
            ),
            (
                "No, that's all. Thanks for the help.",
                "You're welcome. Have a nice day.",
            ),
        ],
    },
    Script {
        intent: "info",
        agent: "info-bot",
        exchanges: &[
            (
                "Hi, what are your opening hours on Saturdays?",
                "We are open from nine to five on Saturdays.",
            ),
            (
                "And where are you located?",
                "Our address is twelve Market Street, next to the station.",
            ),
            (
                "Do you have parking nearby?",
                "Yes, there is a public car park across the street.",
            ),
            (
                "What is the phone number of the front desk?",
                "You can reach the front desk at this same number.",
            ),
            (
                "Okay, tell me about the holiday hours too.",
                "On public holidays we open from ten to three.",
            ),
            ("Good to know, thank you.", "You're welcome. Goodbye."),
        ],
    },
];

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// One stream entry: the JSON payload and any audio fields.
pub struct SimEntry {
    pub call_id: String,
    /// When the agent would publish it, in ms after the call started (partials spread over the call).
    pub due_ms: i64,
    pub payload: Vec<u8>,
    pub audio: Vec<(String, Vec<u8>)>,
}

struct SimTurn {
    user: bool,
    start_ms: i64,
    end_ms: i64,
    json: Value,
}

/// Generates every report (partials, then the final) of call number `n`.
pub fn generate_call(n: usize, opts: &ProduceOptions) -> Vec<SimEntry> {
    let mut rng = Rng::new(opts.seed ^ (n as u64).wrapping_mul(0x1000_0000_01B3));
    let call_id = format!("{}-{n:07}-{:08x}", opts.call_prefix, rng.next_u64() as u32);
    let tenant = *rng.pick(&TENANTS);
    let script = rng.pick(&SCRIPTS);
    // At most one planted fault per call, in the first half of the conversation.
    let fault = if rng.f64() < opts.faults {
        Some(*rng.pick(&Fault::ALL))
    } else {
        None
    };
    let fault_at = (rng.next_u64() % 3) as usize;
    let started_at =
        call_start(n, opts, &mut rng) + ChronoDuration::milliseconds(realtime_offset_ms(n, opts));

    // Conversation: the intent's scripted exchanges, ending with the agent.
    let exchanges = script.exchanges.len();
    let mut turns: Vec<SimTurn> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let mut t = 800i64;
    for x in 0..exchanges {
        let (user_line, agent_line) = script.exchanges[x];
        if x == fault_at {
            match fault {
                Some(Fault::NearMiss) => {
                    // The caller murmured below the VAD's threshold before speaking up.
                    let seq = events.len() as i64;
                    events.push(json!({"seq": seq, "type": "near_miss", "at_ms": t,
                        "data": {"max_probability": (rng.range(0.3, 0.48) * 100.0).round() / 100.0, "duration_ms": 640}}));
                    t += 900;
                }
                Some(Fault::DroppedUtterance) => {
                    // Speech the VAD heard that never became a transcript or a turn.
                    let seq = events.len() as i64;
                    let speech = rng.range(1200.0, 2200.0) as i64;
                    events.push(json!({"seq": seq, "type": "user_started_speaking", "at_ms": t}));
                    events.push(
                        json!({"seq": seq + 1, "type": "user_stopped_speaking", "at_ms": t + speech,
                        "data": {"speech_duration_ms": speech}}),
                    );
                    t += speech + 6000;
                }
                _ => {}
            }
        }
        let u_start = t;
        let u_end = u_start + rng.range(900.0, 3000.0) as i64;
        let conf = (rng.range(0.78, 0.98) * 1000.0).round() / 1000.0;
        let transcription = (rng.range(80.0, 280.0) * 10.0).round() / 10.0;
        let eot = (rng.range(250.0, 480.0) * 10.0).round() / 10.0;
        let stt_failed = fault == Some(Fault::SttFailure) && x == fault_at;
        let user_line = if stt_failed { "" } else { user_line };
        let ui = turns.len() as i64;
        turns.push(SimTurn {
            user: true,
            start_ms: u_start,
            end_ms: u_end,
            json: json!({"index": ui, "role": "user", "content": user_line, "start_ms": u_start, "end_ms": u_end,
                "stt_confidence": conf, "transcription_delay_ms": transcription, "end_of_turn_delay_ms": eot, "interrupted": false}),
        });
        let seq0 = events.len() as i64;
        events.push(json!({"seq": seq0, "type": "user_started_speaking", "at_ms": u_start, "turn_index": ui}));
        events.push(json!({"seq": seq0 + 1, "type": "user_stopped_speaking", "at_ms": u_end, "turn_index": ui, "data": {"speech_duration_ms": u_end - u_start}}));
        if stt_failed {
            events.push(json!({"seq": seq0 + 2, "type": "stt_error", "at_ms": u_end + 300, "turn_index": ui,
                "data": {"message": "deepgram: websocket closed (1011) while streaming", "recoverable": false}}));
        } else {
            events.push(json!({"seq": seq0 + 2, "type": "user_transcript", "at_ms": u_end + transcription as i64, "turn_index": ui,
                "data": {"final": true, "transcript": user_line, "confidence": conf}}));
        }

        let slow = fault == Some(Fault::SlowLlm) && x == fault_at;
        let ttft = if slow {
            (rng.range(1400.0, 2600.0) * 10.0).round() / 10.0
        } else {
            (rng.range(220.0, 420.0) * 10.0).round() / 10.0
        };
        let ttfb = (rng.range(150.0, 360.0) * 10.0).round() / 10.0;
        let e2e = ((eot + ttft + ttfb + rng.range(20.0, 80.0)) * 10.0).round() / 10.0;
        let a_start = u_end + e2e as i64;
        let a_end = a_start + rng.range(1800.0, 3600.0) as i64;
        let ai = turns.len() as i64;
        let tool_calls = if x == 0 {
            let tool = match script.intent {
                "booking" => "check_availability",
                "complaint" => "lookup_order",
                "sales" => "get_pricing",
                "support" => "lookup_account",
                _ => "get_store_info",
            };
            json!([{"name": tool, "arguments": {"tenant": tenant}, "result": {"ok": true}, "error": null,
                "duration_ms": (rng.range(60.0, 200.0) * 10.0).round() / 10.0}])
        } else {
            Value::Null
        };
        turns.push(SimTurn {
            user: false,
            start_ms: a_start,
            end_ms: a_end,
            json: json!({"index": ai, "role": "assistant", "content": agent_line, "start_ms": a_start, "end_ms": a_end,
                "llm_ttft_ms": ttft, "tts_ttfb_ms": ttfb, "e2e_latency_ms": e2e, "interrupted": false, "tool_calls": tool_calls}),
        });
        let seq0 = events.len() as i64;
        events.push(json!({"seq": seq0, "type": "agent_started_speaking", "at_ms": a_start, "turn_index": ai}));
        events.push(json!({"seq": seq0 + 1, "type": "agent_stopped_speaking", "at_ms": a_end, "turn_index": ai}));
        t = a_end + rng.range(400.0, 1500.0) as i64;
    }
    let call_ms = t;
    let ended_at = started_at + ChronoDuration::milliseconds(call_ms);

    let base = json!({
        "schema_version": 1, "call_id": call_id, "room_id": format!("RM_{n:07}"), "job_id": format!("AJ_{n:07}"),
        "tenant_id": tenant, "agent_id": script.agent, "channel_type": if n.is_multiple_of(2) { "webrtc" } else { "sip" },
        "pipeline": {"stt": {"provider": "deepgram", "model": "nova-3"}, "llm": {"provider": "openai", "model": "gpt-4o-mini"},
            "tts": {"provider": "cartesia", "model": "sonic-2"},
            "vad": {"threshold": 0.5, "noise_suppression_enabled": true, "rnnoise_enabled": true}},
        "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });

    let total = opts.partials + 1;
    let mut out = Vec::with_capacity(total);
    for seq in 0..total {
        let is_final = seq + 1 == total;
        // A partial knows the conversation up to a point in time.
        let horizon = if is_final {
            i64::MAX
        } else {
            // Spread over the call, the first early: the call shows as in progress soon after it starts.
            call_ms * (2 * seq as i64 + 1) / (2 * total as i64)
        };
        let known_turns: Vec<&SimTurn> = turns.iter().filter(|t| t.end_ms <= horizon).collect();
        let known_events: Vec<&Value> = events
            .iter()
            .filter(|e| e["at_ms"].as_i64().unwrap_or(0) <= horizon)
            .collect();
        let mut report = base.clone();
        report["report_type"] = json!(if is_final { "final" } else { "partial" });
        report["seq"] = json!(seq);
        report["turns"] = Value::Array(known_turns.iter().map(|t| t.json.clone()).collect());
        report["events"] = Value::Array(known_events.into_iter().cloned().collect());
        let mut audio = Vec::new();
        if is_final {
            report["ended_at"] =
                json!(ended_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            report["duration_seconds"] = json!(call_ms as f64 / 1000.0);
            report["outcome"] = if fault == Some(Fault::SttFailure) {
                json!({"close_reason": "error", "was_transferred": false, "error": "STT stream failed: deepgram websocket closed (1011)"})
            } else {
                json!({"close_reason": "user_hangup", "was_transferred": false, "error": null})
            };
            let mut segments = Vec::new();
            if opts.audio {
                let user_spans: Vec<(i64, i64)> = turns
                    .iter()
                    .filter(|t| t.user)
                    .map(|t| (t.start_ms, t.end_ms))
                    .collect();
                let pre = synth_user_track(&mut rng, call_ms, &user_spans, 0.006);
                let post = synth_user_track(&mut rng, call_ms, &user_spans, 0.0004);
                for (id, kind, samples) in [
                    ("full_pre_rnnoise", "full_pre_rnnoise", &pre),
                    ("full_post_rnnoise", "full_post_rnnoise", &post),
                ] {
                    segments.push(json!({"segment_id": id, "segment_type": kind, "turn_index": null, "offset_ms": 0,
                        "duration_ms": call_ms, "audio": {"field": format!("audio:{id}")}}));
                    audio.push((format!("audio:{id}"), encode_wav_i16(samples, SAMPLE_RATE)));
                }
                for (i, turn) in turns.iter().enumerate().filter(|(_, t)| t.user) {
                    let id = format!("stt_input-{i}");
                    let slice = slice_ms(&post, turn.start_ms, turn.end_ms);
                    segments.push(json!({"segment_id": id, "segment_type": "stt_input", "turn_index": i, "offset_ms": turn.start_ms,
                        "duration_ms": turn.end_ms - turn.start_ms, "audio": {"field": format!("audio:{id}")}}));
                    audio.push((format!("audio:{id}"), encode_wav_i16(slice, SAMPLE_RATE)));
                }
            }
            report["audio_segments"] = Value::Array(segments);
        } else {
            report["ended_at"] = Value::Null;
            report["outcome"] = json!({});
            report["audio_segments"] = json!([]);
        }
        let json_bytes = serde_json::to_vec(&report).unwrap_or_default();
        out.push(SimEntry {
            call_id: call_id.clone(),
            due_ms: horizon.min(call_ms),
            payload: if opts.gzip {
                gzip(&json_bytes)
            } else {
                json_bytes
            },
            audio,
        });
    }
    out
}

/// Faults `produce` plants so diagnosis, dashboards and the review queue have something to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    SlowLlm,
    SttFailure,
    NearMiss,
    DroppedUtterance,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::SlowLlm,
        Fault::SttFailure,
        Fault::NearMiss,
        Fault::DroppedUtterance,
    ];
}

/// With `--realtime`, calls begin one after another, `REALTIME_SPACING_MS` apart.
const REALTIME_SPACING_MS: i64 = 4_000;

fn realtime_offset_ms(n: usize, opts: &ProduceOptions) -> i64 {
    if opts.realtime {
        n as i64 * REALTIME_SPACING_MS
    } else {
        0
    }
}

/// When call `n` started: on the fixed timeline (`--days 0`), now (`--realtime`), or spread over the
/// last `--days` days, at office hours more often than at night.
fn call_start(n: usize, opts: &ProduceOptions, rng: &mut Rng) -> chrono::DateTime<Utc> {
    let until = opts.until.unwrap_or_else(Utc::now);
    if opts.realtime {
        return until;
    }
    if opts.days == 0 {
        return Utc
            .timestamp_opt(1_793_000_000 + n as i64 * 37, 0)
            .single()
            .unwrap_or(until);
    }
    let day = (rng.next_u64() % u64::from(opts.days)) as i64;
    // Between 08:00 and 20:00 of the day (UTC), except that today only up to now.
    let day_start = (until - ChronoDuration::days(day))
        .date_naive()
        .and_hms_opt(8, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(until);
    let at = day_start + ChronoDuration::seconds(rng.range(0.0, 12.0 * 3600.0) as i64);
    if at > until {
        until - ChronoDuration::seconds(rng.range(60.0, 6.0 * 3600.0) as i64)
    } else {
        at
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e =
        flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 4), flate2::Compression::fast());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

pub const SAMPLE_RATE: u32 = 16_000;

fn slice_ms(s: &[f32], start_ms: i64, end_ms: i64) -> &[f32] {
    let at = |ms: i64| ((ms.max(0) as usize) * SAMPLE_RATE as usize / 1000).min(s.len());
    &s[at(start_ms)..at(end_ms)]
}

/// Speech-like audio: voiced harmonics with a syllable-rate envelope during the user's turns, over
/// background noise of the given amplitude.
fn synth_user_track(rng: &mut Rng, call_ms: i64, spans: &[(i64, i64)], noise: f32) -> Vec<f32> {
    let sr = SAMPLE_RATE as f32;
    let n = (call_ms.max(0) as usize) * SAMPLE_RATE as usize / 1000;
    let mut out = Vec::with_capacity(n);
    let mut seed = rng.next_u64() as u32 | 1;
    let mut span = 0usize;
    let mut phase = 0.0f32;
    let f0 = rng.range(110.0, 210.0) as f32;
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let white = (seed as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let ms = (i as i64) * 1000 / SAMPLE_RATE as i64;
        while span < spans.len() && spans[span].1 <= ms {
            span += 1;
        }
        let mut v = noise * white;
        if span < spans.len() && spans[span].0 <= ms {
            let t = i as f32 / sr;
            let pitch = f0 * (1.0 + 0.08 * (t * 1.3 * std::f32::consts::TAU).sin());
            phase = (phase + pitch / sr) % 1.0;
            let p = phase * std::f32::consts::TAU;
            let voiced =
                p.sin() + 0.5 * (2.0 * p).sin() + 0.3 * (3.0 * p).sin() + 0.15 * (5.0 * p).sin();
            let syllables = 0.5 + 0.5 * (t * 4.0 * std::f32::consts::TAU).sin();
            v += 0.22 * voiced * syllables;
        }
        out.push(v);
    }
    out
}

const PIPELINE_BYTES: usize = 8 << 20;

/// Pipelines of XADDs, one per partition (a cluster takes a pipeline only within one slot),
/// flushed every few MB (entries with audio are large).
struct Batch<'a, C> {
    conn: &'a mut C,
    pipes: Vec<redis::Pipeline>,
    queued: u64,
    queued_bytes: usize,
    entries: u64,
    bytes: u64,
    progress: Option<&'a indicatif::ProgressBar>,
}

impl<C: redis::aio::ConnectionLike + Send> Batch<'_, C> {
    async fn push(
        &mut self,
        partition: u32,
        cmd: redis::Cmd,
        size: usize,
    ) -> redis::RedisResult<()> {
        let i = partition as usize;
        if self.pipes.len() <= i {
            self.pipes.resize_with(i + 1, redis::pipe);
        }
        self.pipes[i].add_command(cmd).ignore();
        self.queued += 1;
        self.queued_bytes += size;
        if self.queued_bytes >= PIPELINE_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> redis::RedisResult<()> {
        if self.queued == 0 {
            return Ok(());
        }
        for pipe in &mut self.pipes {
            if pipe.cmd_iter().next().is_some() {
                let _: () = pipe.query_async(self.conn).await?;
                pipe.clear();
            }
        }
        self.entries += self.queued;
        self.bytes += self.queued_bytes as u64;
        if let Some(p) = self.progress {
            p.inc(self.queued);
        }
        self.queued = 0;
        self.queued_bytes = 0;
        Ok(())
    }
}

/// A connection for publishing: large pipelines need more than redis-rs's 500 ms default.
pub async fn connect(client: &crate::broker::Broker) -> redis::RedisResult<crate::broker::Conn> {
    client
        .connect(crate::broker::Timeouts::new(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(60),
        ))
        .await
}

/// Publishes `opts.calls` calls to `stream`, interleaving up to `opts.concurrency` calls at a time.
/// Returns the number of entries and bytes published.
pub async fn publish<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    opts: &ProduceOptions,
    progress: Option<&indicatif::ProgressBar>,
) -> redis::RedisResult<(u64, u64)> {
    let single = crate::ingest::partition::Partitions::new(stream, "", 1, false);
    publish_partitioned(conn, &single, opts, progress).await
}

/// `--realtime`: every call's reports published when the agent would send them (calls start
/// `REALTIME_SPACING_MS` apart, partials spread over the call, the final at its end), one `XADD` each.
async fn publish_realtime<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    partitions: &crate::ingest::partition::Partitions,
    opts: &ProduceOptions,
    progress: Option<&indicatif::ProgressBar>,
) -> redis::RedisResult<(u64, u64)> {
    let mut due: Vec<(i64, SimEntry)> = (0..opts.calls)
        .flat_map(|n| {
            let offset = realtime_offset_ms(n, opts);
            generate_call(n, opts)
                .into_iter()
                .map(move |e| (offset + e.due_ms, e))
        })
        .collect();
    due.sort_by_key(|(at, _)| *at);
    let start = tokio::time::Instant::now();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for (at, e) in due {
        tokio::time::sleep_until(start + std::time::Duration::from_millis(at.max(0) as u64)).await;
        let partition = partitions.of_call(&e.call_id);
        let (cmd, size) = xadd(&partitions.stream(partition), &e, opts.gzip);
        let _: String = cmd.query_async(conn).await?;
        entries += 1;
        bytes += size as u64;
        if let Some(p) = progress {
            p.inc(1);
        }
    }
    Ok((entries, bytes))
}

fn xadd(stream: &str, e: &SimEntry, gzip: bool) -> (redis::Cmd, usize) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(1_000_000)
        .arg("*")
        .arg("payload")
        .arg(&e.payload);
    if gzip {
        cmd.arg("payload_encoding").arg("gzip");
    }
    let mut size = e.payload.len();
    for (k, v) in &e.audio {
        cmd.arg(k).arg(v);
        size += v.len();
    }
    (cmd, size)
}

/// Publishes as `publish` does, each call to its partition (`crc32(call_id) mod N`), as Atlas
/// does with `INSIGHTS_STREAM_PARTITIONS` > 1.
pub async fn publish_partitioned<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    partitions: &crate::ingest::partition::Partitions,
    opts: &ProduceOptions,
    progress: Option<&indicatif::ProgressBar>,
) -> redis::RedisResult<(u64, u64)> {
    if opts.realtime {
        return publish_realtime(conn, partitions, opts, progress).await;
    }
    let window = opts.concurrency.max(1);
    let mut batch = Batch {
        conn,
        pipes: Vec::new(),
        queued: 0,
        queued_bytes: 0,
        entries: 0,
        bytes: 0,
        progress,
    };
    for first in (0..opts.calls).step_by(window) {
        let calls: Vec<Vec<SimEntry>> = (first..(first + window).min(opts.calls))
            .map(|n| generate_call(n, opts))
            .collect();
        for seq in 0..=opts.partials {
            for call in &calls {
                let e = &call[seq];
                let partition = partitions.of_call(&e.call_id);
                let (cmd, size) = xadd(&partitions.stream(partition), e, opts.gzip);
                batch.push(partition, cmd, size).await?;
            }
        }
    }
    batch.flush().await?;
    Ok((batch.entries, batch.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode_report;

    #[test]
    fn generated_reports_are_valid_and_realistic() {
        let opts = ProduceOptions {
            calls: 1,
            partials: 2,
            audio: true,
            gzip: false,
            concurrency: 1,
            seed: 7,
            call_prefix: "t".into(),
            ..Default::default()
        };
        let entries = generate_call(3, &opts);
        assert_eq!(entries.len(), 3);
        let reports: Vec<_> = entries
            .iter()
            .map(|e| decode_report(&e.payload).unwrap())
            .collect();
        assert_eq!(
            reports.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let last = &reports[2];
        assert!(last.is_final());
        assert!((12..=14).contains(&last.turns.len()));
        assert!((30..=35).contains(&last.events.len()));
        assert!(reports[0].turns.len() < last.turns.len());
        assert_eq!(entries[2].audio.len(), last.audio_segments.len());
        let pre = crate::audio::decode_wav(&entries[2].audio[0].1).unwrap();
        assert!(pre.duration_ms() > 15_000.0);
        let m = crate::audio::measure(&pre);
        assert!(m.snr_estimate.unwrap() > 15.0, "{m:?}");
        // Same seed, same reports.
        assert_eq!(generate_call(3, &opts)[0].payload, entries[0].payload);
    }
}
