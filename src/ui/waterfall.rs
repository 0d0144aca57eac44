//! The per-turn latency waterfall as server-rendered SVG: end of turn, LLM time to first token and
//! TTS time to first byte stacked to scale up to the measured end-to-end, with transcription drawn
//! inside end of turn (it runs during it), what the parts do not explain drawn as "unaccounted",
//! and the budget line (`INSIGHTS_UI_LATENCY_BUDGET_MS`) across the bar.

use entity::conversation_turns as ct;
use std::fmt::Write;

/// The latency parts of the exchange an agent turn answers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Parts {
    pub end_of_turn: Option<f64>,
    pub transcription: Option<f64>,
    pub llm_ttft: Option<f64>,
    pub tts_ttfb: Option<f64>,
    pub e2e: Option<f64>,
}

impl Parts {
    /// An agent turn's own fields, and the preceding user turn's for those measured on user turns.
    pub fn of(turns: &[ct::Model], i: usize) -> Option<Self> {
        let t = turns.get(i)?;
        let prev_user = turns[..i].iter().rev().find(|u| u.role == "user");
        let pick = |own: Option<f64>, f: fn(&ct::Model) -> Option<f64>| {
            own.or_else(|| prev_user.and_then(f))
        };
        let p = Parts {
            end_of_turn: pick(t.end_of_turn_delay_ms, |u| u.end_of_turn_delay_ms),
            transcription: pick(t.transcription_delay_ms, |u| u.transcription_delay_ms),
            llm_ttft: t.llm_ttft_ms,
            tts_ttfb: t.tts_ttfb_ms,
            e2e: t.e2e_latency_ms,
        };
        (t.role != "user" && (p.e2e.is_some() || p.llm_ttft.is_some() || p.tts_ttfb.is_some()))
            .then_some(p)
    }

    /// The stacked parts' sum.
    pub fn stacked(&self) -> f64 {
        [self.end_of_turn, self.llm_ttft, self.tts_ttfb]
            .iter()
            .flatten()
            .sum()
    }

    /// What the parts leave unexplained of the measured end-to-end (negative: they overlap by that).
    pub fn unaccounted(&self) -> Option<f64> {
        self.e2e.map(|e| e - self.stacked())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `1,234 ms` below 10 s, `12.3 s` above.
pub fn fmt_ms(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        let r = v.round() as i64;
        let (sign, r) = if r < 0 { ("−", -r) } else { ("", r) };
        let s = r.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out} ms")
    }
}

/// The SVG of one exchange, `width` wide, on a scale where `scale_ms` fills the plot.
pub fn svg(p: &Parts, budget_ms: f64, scale_ms: f64, turn_index: i64) -> String {
    const W: f64 = 560.0;
    const LEFT: f64 = 4.0;
    const PLOT: f64 = W - 150.0;
    let scale = scale_ms.max(budget_ms).max(1.0);
    let x = |ms: f64| LEFT + (ms.max(0.0) / scale) * PLOT;
    let total = p.e2e.unwrap_or_else(|| p.stacked());
    let mut s = String::new();
    let label = format!(
        "Turn {turn_index} latency: end-to-end {}",
        p.e2e.map_or("not measured".into(), fmt_ms)
    );
    let _ = write!(
        s,
        r#"<svg data-waterfall data-turn-index="{turn_index}" class="waterfall" viewBox="0 0 {W} 34" width="{W}" height="34" role="img" aria-label="{}"><title>{}</title>"#,
        esc(&label),
        esc(&label)
    );
    let mut at = 0.0;
    for (name, class, v) in [
        ("end of turn", "eou", p.end_of_turn),
        ("LLM TTFT", "llm", p.llm_ttft),
        ("TTS TTFB", "tts", p.tts_ttfb),
    ] {
        let Some(v) = v.filter(|v| *v > 0.0) else {
            continue;
        };
        let (x0, x1) = (x(at), x(at + v));
        let _ = write!(
            s,
            r#"<rect class="part {class}" data-part="{class}" data-ms="{v:.1}" x="{x0:.1}" y="4" width="{:.1}" height="16"><title>{name}: {}</title></rect>"#,
            (x1 - x0).max(0.5),
            fmt_ms(v)
        );
        if x1 - x0 > 34.0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="15.5" class="part-label">{}</text>"#,
                x0 + 3.0,
                esc(&format!(
                    "{} {}",
                    short(class),
                    fmt_ms(v).trim_end_matches(" ms")
                ))
            );
        }
        at += v;
    }
    if let Some(t) = p.transcription.filter(|v| *v > 0.0) {
        let _ = write!(
            s,
            r#"<rect class="part stt" data-part="stt" data-ms="{t:.1}" x="{:.1}" y="20" width="{:.1}" height="4"><title>transcription: {} (runs inside end of turn)</title></rect>"#,
            x(0.0),
            (x(t) - x(0.0)).max(0.5),
            fmt_ms(t)
        );
    }
    match p.unaccounted() {
        Some(u) if u > 0.5 => {
            let _ = write!(
                s,
                r#"<rect class="part unaccounted" data-part="unaccounted" data-ms="{u:.1}" x="{:.1}" y="4" width="{:.1}" height="16"><title>unaccounted: {} of the measured end-to-end is not explained by the parts</title></rect>"#,
                x(at),
                (x(at + u) - x(at)).max(0.5),
                fmt_ms(u)
            );
        }
        Some(u) if u < -0.5 => {
            let _ = write!(
                s,
                r#"<line class="e2e-mark" x1="{0:.1}" x2="{0:.1}" y1="1" y2="23"><title>measured end-to-end {1}: the parts exceed it by {2} (they overlap)</title></line>"#,
                x(total),
                fmt_ms(total),
                fmt_ms(-u)
            );
        }
        _ => {}
    }
    let bx = x(budget_ms);
    let _ = write!(
        s,
        r#"<line class="budget" x1="{bx:.1}" x2="{bx:.1}" y1="0" y2="28"><title>budget {}</title></line>"#,
        fmt_ms(budget_ms)
    );
    let over = total > budget_ms;
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="16" class="total{}">{}{}</text>"#,
        LEFT + PLOT + 8.0,
        if over { " over" } else { "" },
        esc(&p
            .e2e
            .map_or("e2e —".into(), |e| format!("e2e {}", fmt_ms(e)))),
        if over { " ▲" } else { "" }
    );
    if let Some(u) = p.unaccounted().filter(|u| u.abs() > 0.5) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="30" class="note">{}</text>"#,
            LEFT + PLOT + 8.0,
            esc(&if u > 0.0 {
                format!("{} unaccounted", fmt_ms(u))
            } else {
                format!("parts overlap {}", fmt_ms(-u))
            })
        );
    }
    s.push_str("</svg>");
    s
}

fn short(class: &str) -> &'static str {
    match class {
        "eou" => "eou",
        "llm" => "llm",
        _ => "tts",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(i: i64, role: &str) -> ct::Model {
        ct::Model {
            session_id: uuid::Uuid::nil(),
            turn_index: i,
            role: role.into(),
            content: String::new(),
            start_ms: None,
            end_ms: None,
            interrupted: None,
            stt_confidence: None,
            transcription_delay_ms: None,
            end_of_turn_delay_ms: None,
            llm_ttft_ms: None,
            tts_ttfb_ms: None,
            e2e_latency_ms: None,
            tool_calls: None,
            report_seq: 0,
        }
    }

    #[test]
    fn parts_add_up_and_the_remainder_is_shown() {
        let mut u = turn(0, "user");
        u.end_of_turn_delay_ms = Some(335.7);
        u.transcription_delay_ms = Some(110.7);
        let mut a = turn(1, "assistant");
        a.llm_ttft_ms = Some(296.1);
        a.tts_ttfb_ms = Some(327.4);
        a.e2e_latency_ms = Some(959.2);
        let turns = vec![u, a.clone()];
        assert!(
            Parts::of(&turns, 0).is_none(),
            "user turns have no waterfall"
        );
        let p = Parts::of(&turns, 1).unwrap();
        assert!(p.unaccounted().unwrap().abs() < 1e-9);
        let svg = svg(&p, 800.0, 1000.0, 1);
        assert!(svg.starts_with("<svg data-waterfall"));
        assert!(svg.contains(r#"data-part="eou" data-ms="335.7""#));
        assert!(svg.contains(r#"data-part="stt""#));
        assert!(!svg.contains("unaccounted:"), "{svg}");
        assert!(
            svg.contains("e2e 959 ms ▲"),
            "over the 800 ms budget: {svg}"
        );

        let mut slow = a;
        slow.e2e_latency_ms = Some(2400.0);
        let p = Parts::of(&[turns[0].clone(), slow], 1).unwrap();
        let svg = super::svg(&p, 800.0, 2400.0, 1);
        assert!(
            svg.contains(r#"data-part="unaccounted" data-ms="1440.8""#),
            "{svg}"
        );
        assert!(svg.contains("1,441 ms unaccounted"));
    }

    #[test]
    fn milliseconds_read_like_a_person_writes_them() {
        assert_eq!(fmt_ms(959.2), "959 ms");
        assert_eq!(fmt_ms(2480.0), "2,480 ms");
        assert_eq!(fmt_ms(12_345.0), "12.3 s");
        assert_eq!(fmt_ms(-40.0), "−40 ms");
    }
}
