//! Conversation metrics of a call between parties (talk time and ratio, longest monologue,
//! interruptions, silences and dead air, response gaps, talk speed), computed from who spoke when: a
//! recording's word-level speech intervals, or an agent-reported call's turns. Pure, no I/O; the
//! recording pipeline stores them and the diagnosis rules read them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The role an agent-reported `user` turn plays in a conversation.
pub const CUSTOMER: &str = "customer";
/// The role an agent-reported `assistant` turn plays.
pub const AGENT: &str = "agent";

/// A stretch of time, in milliseconds from the start of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Span {
    pub fn len(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One turn: a party speaking, possibly with short pauses, until someone else speaks or a long pause.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSpan {
    pub role: String,
    pub span: Span,
    /// Words spoken in the turn.
    pub words: usize,
}

/// Who spoke when.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Per role, the stretches of actual speech (words joined across gaps ≤ 100 ms).
    pub speech: BTreeMap<String, Vec<Span>>,
    /// Every turn, in order of start.
    pub turns: Vec<TurnSpan>,
    /// True when each party had their own channel (overlap is measured, not inferred).
    pub channel_separated: bool,
}

impl Input {
    /// Turns as their own speech (an agent-reported call: no word timings). Turns without both times
    /// are left out; `user` is the customer, `assistant` the agent.
    pub fn from_turns(turns: impl IntoIterator<Item = (String, Span, usize)>) -> Self {
        let mut input = Input {
            channel_separated: true,
            ..Default::default()
        };
        for (role, span, words) in turns {
            if span.end_ms < span.start_ms {
                continue;
            }
            input.speech.entry(role.clone()).or_default().push(span);
            input.turns.push(TurnSpan { role, span, words });
        }
        input
            .turns
            .sort_by_key(|t| (t.span.start_ms, t.span.end_ms));
        input
    }
}

/// Interruptions made by one role.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interruptions {
    pub count: u32,
    /// Time both spoke at once, summed.
    pub ms: i64,
}

/// One talk-over: `by` started speaking while another party was speaking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overlap {
    pub by: String,
    /// The party spoken over.
    pub over: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Customer end → agent start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GapStats {
    pub p50: i64,
    pub p95: i64,
    pub max: i64,
    pub count: u32,
}

/// One response gap, where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseGap {
    /// End of the customer's turn.
    pub start_ms: i64,
    /// Start of the agent's answer.
    pub end_ms: i64,
}

/// The metrics QA tools compute from a call. Every time is in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationMetrics {
    /// Per role, the sum of its speech (overlapping speech counts for both parties).
    pub talk_time_ms: BTreeMap<String, i64>,
    /// Per role, its talk time over every party's talk time (silence excluded).
    pub talk_ratio: BTreeMap<String, f64>,
    /// Per role, its longest turn.
    pub longest_monologue_ms: BTreeMap<String, i64>,
    /// Per interrupting role.
    pub interruptions: BTreeMap<String, Interruptions>,
    /// Each talk-over, in order.
    pub overlaps: Vec<Overlap>,
    /// Every stretch between the first and the last speech with nobody speaking for at least
    /// `dead_air_threshold_ms`.
    pub silences: Vec<Span>,
    pub dead_air_ms: i64,
    pub dead_air_threshold_ms: i64,
    /// `None` when the agent never answered the customer.
    pub response_gap_ms: Option<GapStats>,
    pub response_gaps: Vec<ResponseGap>,
    pub words_per_minute: BTreeMap<String, f64>,
    /// `exact` (a channel per party) or `indicative` (one channel, speakers told apart by diarization).
    pub overlap: String,
}

/// Union of spans: sorted, overlapping and touching ones joined.
pub fn union(spans: &[Span]) -> Vec<Span> {
    let mut sorted: Vec<Span> = spans.iter().copied().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| (s.start_ms, s.end_ms));
    let mut out: Vec<Span> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match out.last_mut() {
            Some(last) if s.start_ms <= last.end_ms => last.end_ms = last.end_ms.max(s.end_ms),
            _ => out.push(s),
        }
    }
    out
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Computes every metric. `dead_air_threshold_ms` is the shortest silence listed.
pub fn compute(input: &Input, dead_air_threshold_ms: i64) -> ConversationMetrics {
    let mut talk_time_ms = BTreeMap::new();
    let mut all = Vec::new();
    for (role, spans) in &input.speech {
        let joined = union(spans);
        talk_time_ms.insert(role.clone(), joined.iter().map(Span::len).sum::<i64>());
        all.extend(joined);
    }
    for t in &input.turns {
        talk_time_ms.entry(t.role.clone()).or_insert(0);
    }
    let total: i64 = talk_time_ms.values().sum();
    let talk_ratio = talk_time_ms
        .iter()
        .map(|(r, ms)| {
            let ratio = if total > 0 {
                *ms as f64 / total as f64
            } else {
                0.0
            };
            (r.clone(), (ratio * 1000.0).round() / 1000.0)
        })
        .collect();

    let mut longest_monologue_ms: BTreeMap<String, i64> = BTreeMap::new();
    let mut words: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &input.turns {
        let e = longest_monologue_ms.entry(t.role.clone()).or_insert(0);
        *e = (*e).max(t.span.len());
        *words.entry(t.role.as_str()).or_insert(0) += t.words;
    }

    // Interruptions: a turn that starts while another party's turn is still going.
    let mut interruptions: BTreeMap<String, Interruptions> = BTreeMap::new();
    let mut overlaps = Vec::new();
    for (i, t) in input.turns.iter().enumerate() {
        let over = input.turns[..i]
            .iter()
            .filter(|o| {
                o.role != t.role
                    && o.span.start_ms < t.span.start_ms
                    && o.span.end_ms > t.span.start_ms
            })
            .max_by_key(|o| o.span.end_ms);
        if let Some(o) = over {
            let end = o.span.end_ms.min(t.span.end_ms);
            let e = interruptions.entry(t.role.clone()).or_default();
            e.count += 1;
            e.ms += end - t.span.start_ms;
            overlaps.push(Overlap {
                by: t.role.clone(),
                over: o.role.clone(),
                start_ms: t.span.start_ms,
                end_ms: end,
            });
        }
    }

    let speech = union(&all);
    let silences: Vec<Span> = speech
        .windows(2)
        .map(|w| Span {
            start_ms: w[0].end_ms,
            end_ms: w[1].start_ms,
        })
        .filter(|s| s.len() >= dead_air_threshold_ms.max(1))
        .collect();
    let dead_air_ms = silences.iter().map(Span::len).sum();

    // Response gaps: a customer turn followed by an agent turn that starts after it ended.
    let mut response_gaps = Vec::new();
    for w in input.turns.windows(2) {
        if w[0].role == CUSTOMER && w[1].role == AGENT && w[1].span.start_ms >= w[0].span.end_ms {
            response_gaps.push(ResponseGap {
                start_ms: w[0].span.end_ms,
                end_ms: w[1].span.start_ms,
            });
        }
    }
    let mut gaps: Vec<i64> = response_gaps
        .iter()
        .map(|g| g.end_ms - g.start_ms)
        .collect();
    gaps.sort_unstable();
    let response_gap_ms = (!gaps.is_empty()).then(|| GapStats {
        p50: percentile(&gaps, 50.0),
        p95: percentile(&gaps, 95.0),
        max: gaps.last().copied().unwrap_or(0),
        count: gaps.len() as u32,
    });

    let words_per_minute = talk_time_ms
        .iter()
        .map(|(role, ms)| {
            let n = words.get(role.as_str()).copied().unwrap_or(0);
            let wpm = if *ms > 0 {
                n as f64 / (*ms as f64 / 60_000.0)
            } else {
                0.0
            };
            (role.clone(), (wpm * 10.0).round() / 10.0)
        })
        .collect();

    ConversationMetrics {
        talk_time_ms,
        talk_ratio,
        longest_monologue_ms,
        interruptions,
        overlaps,
        silences,
        dead_air_ms,
        dead_air_threshold_ms,
        response_gap_ms,
        response_gaps,
        words_per_minute,
        overlap: if input.channel_separated {
            "exact"
        } else {
            "indicative"
        }
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(a: i64, b: i64) -> Span {
        Span {
            start_ms: a,
            end_ms: b,
        }
    }

    fn turn(role: &str, a: i64, b: i64, words: usize) -> (String, Span, usize) {
        (role.to_string(), span(a, b), words)
    }

    #[test]
    fn a_scripted_call_gives_every_metric() {
        // agent 0–5 s; customer 6–10 s; 15 s of nothing; agent 25–70 s, talked over by the customer
        // at 68–71 s; agent answers 74.5 s.
        let input = Input::from_turns([
            turn(AGENT, 0, 5_000, 10),
            turn(CUSTOMER, 6_000, 10_000, 8),
            turn(AGENT, 25_000, 70_000, 100),
            turn(CUSTOMER, 68_000, 71_000, 6),
            turn(AGENT, 74_500, 76_000, 3),
        ]);
        let m = compute(&input, 10_000);
        assert_eq!(m.talk_time_ms[AGENT], 5_000 + 45_000 + 1_500);
        assert_eq!(m.talk_time_ms[CUSTOMER], 7_000);
        assert_eq!(m.talk_ratio[AGENT], 0.88);
        assert_eq!(m.longest_monologue_ms[AGENT], 45_000);
        assert_eq!(
            m.interruptions[CUSTOMER],
            Interruptions {
                count: 1,
                ms: 2_000
            }
        );
        assert!(!m.interruptions.contains_key(AGENT));
        assert_eq!(m.silences, vec![span(10_000, 25_000)]);
        assert_eq!(m.dead_air_ms, 15_000);
        let g = m.response_gap_ms.unwrap();
        // 10 s → 25 s (after the silence) and 71 s → 74.5 s.
        assert_eq!((g.p50, g.max, g.count), (3_500, 15_000, 2));
        assert_eq!(
            m.response_gaps[1],
            ResponseGap {
                start_ms: 71_000,
                end_ms: 74_500
            }
        );
        assert_eq!(
            m.words_per_minute[AGENT],
            (113.0 / (51_500.0 / 60_000.0) * 10.0f64).round() / 10.0
        );
        assert_eq!(m.overlap, "exact");
    }

    #[test]
    fn overlapping_speech_counts_for_both_parties_and_silence_needs_nobody_speaking() {
        let mut input = Input::default();
        input.speech.insert(
            "a".into(),
            vec![span(0, 1_000), span(900, 2_000), span(30_000, 31_000)],
        );
        input.speech.insert("b".into(), vec![span(1_500, 3_000)]);
        let m = compute(&input, 10_000);
        assert_eq!(m.talk_time_ms["a"], 3_000);
        assert_eq!(m.talk_time_ms["b"], 1_500);
        assert_eq!(m.silences, vec![span(3_000, 30_000)]);
        assert!(m.response_gap_ms.is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=20).map(|x| x * 100).collect();
        assert_eq!(percentile(&v, 50.0), 1_000);
        assert_eq!(percentile(&v, 95.0), 1_900);
        assert_eq!(percentile(&[], 95.0), 0);
    }
}
