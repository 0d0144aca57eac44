//! From a transcript's words to turns and speech intervals, by the rules of AWS's post-call analytics
//! sample: with a channel per party, words split into segments at gaps over 100 ms, every channel's
//! segments sorted by start, consecutive segments of one party merged unless 3 s or more apart (talk-over
//! stays interleaved); on one diarized channel, a new turn when the speaker changes or after 3 s.

use crate::conversation::{Input, Span, TurnSpan};
use serde::{Deserialize, Serialize};

/// A gap longer than this splits a party's speech into two intervals.
pub const SEGMENT_GAP_S: f64 = 0.1;
/// A pause this long (or longer) ends a turn even when the same party speaks next.
pub const TURN_PAUSE_S: f64 = 3.0;

/// One recognised word, normalised across providers: seconds from the start of the recording,
/// 0-based channel, the provider's speaker label on diarized audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Word {
    pub text: String,
    pub start: f64,
    pub end: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    pub channel: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// A derived turn: the party (by role), its time and words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    pub role: String,
    /// The channel (multi-channel) or the speaker's rank of first appearance (diarized).
    pub party: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub words: usize,
    pub confidence: Option<f64>,
}

fn ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// The role of party `p`: the map's entry, else `speaker_<p+1>`.
pub fn role_of(roles: &[String], p: usize) -> String {
    roles
        .get(p)
        .cloned()
        .unwrap_or_else(|| format!("speaker_{}", p + 1))
}

/// Each word's party: its channel when the audio had a channel per party, else its speaker's rank of
/// first appearance (words without a speaker go to the previous word's speaker).
fn parties(words: &[Word], channel_separated: bool) -> Vec<usize> {
    if channel_separated {
        return words.iter().map(|w| w.channel as usize).collect();
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut last = 0;
    words
        .iter()
        .map(|w| {
            if let Some(s) = w.speaker.as_deref() {
                last = match seen.iter().position(|x| *x == s) {
                    Some(i) => i,
                    None => {
                        seen.push(s);
                        seen.len() - 1
                    }
                };
            }
            last
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Segment {
    party: usize,
    start: f64,
    end: f64,
    words: Vec<usize>,
}

/// Words in time order, each with its party.
fn ordered(words: &[Word], channel_separated: bool) -> Vec<(usize, usize)> {
    let party = parties(words, channel_separated);
    let mut idx: Vec<(usize, usize)> = (0..words.len()).map(|i| (i, party[i])).collect();
    idx.sort_by(|a, b| {
        words[a.0]
            .start
            .total_cmp(&words[b.0].start)
            .then(a.1.cmp(&b.1))
    });
    idx
}

/// Per party, its words joined into segments across gaps of at most `SEGMENT_GAP_S`.
fn segments(words: &[Word], channel_separated: bool) -> Vec<Segment> {
    let mut open: Vec<Option<Segment>> = Vec::new();
    let mut out = Vec::new();
    for (i, p) in ordered(words, channel_separated) {
        let w = &words[i];
        if open.len() <= p {
            open.resize(p + 1, None);
        }
        match &mut open[p] {
            Some(s) if w.start - s.end <= SEGMENT_GAP_S => {
                s.end = s.end.max(w.end);
                s.words.push(i);
            }
            slot => {
                if let Some(done) = slot.take() {
                    out.push(done);
                }
                *slot = Some(Segment {
                    party: p,
                    start: w.start,
                    end: w.end.max(w.start),
                    words: vec![i],
                });
            }
        }
    }
    out.extend(open.into_iter().flatten());
    out.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.party.cmp(&b.party)));
    out
}

fn turn_of(words: &[Word], roles: &[String], seg: &Segment) -> Turn {
    let text = seg
        .words
        .iter()
        .map(|i| words[*i].text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let confs: Vec<f64> = seg
        .words
        .iter()
        .filter_map(|i| words[*i].confidence)
        .collect();
    Turn {
        role: role_of(roles, seg.party),
        party: seg.party,
        start_ms: ms(seg.start),
        end_ms: ms(seg.end),
        text,
        words: seg.words.len(),
        confidence: (!confs.is_empty()).then(|| confs.iter().sum::<f64>() / confs.len() as f64),
    }
}

/// The turns of a transcript.
pub fn build_turns(words: &[Word], roles: &[String], channel_separated: bool) -> Vec<Turn> {
    let merged: Vec<Segment> = if channel_separated {
        let mut merged: Vec<Segment> = Vec::new();
        for s in segments(words, true) {
            match merged.last_mut() {
                Some(last) if last.party == s.party && s.start - last.end < TURN_PAUSE_S => {
                    last.end = last.end.max(s.end);
                    last.words.extend(s.words);
                }
                _ => merged.push(s),
            }
        }
        merged
    } else {
        let mut merged: Vec<Segment> = Vec::new();
        for (i, p) in ordered(words, false) {
            let w = &words[i];
            match merged.last_mut() {
                Some(last) if last.party == p && w.start - last.end < TURN_PAUSE_S => {
                    last.end = last.end.max(w.end);
                    last.words.push(i);
                }
                _ => merged.push(Segment {
                    party: p,
                    start: w.start,
                    end: w.end.max(w.start),
                    words: vec![i],
                }),
            }
        }
        merged
    };
    merged.iter().map(|s| turn_of(words, roles, s)).collect()
}

/// What the conversation metrics read: per role the speech intervals, and the turns.
pub fn metrics_input(
    words: &[Word],
    turns: &[Turn],
    roles: &[String],
    channel_separated: bool,
) -> Input {
    let mut input = Input {
        channel_separated,
        ..Default::default()
    };
    for s in segments(words, channel_separated) {
        input
            .speech
            .entry(role_of(roles, s.party))
            .or_default()
            .push(Span {
                start_ms: ms(s.start),
                end_ms: ms(s.end),
            });
    }
    input.turns = turns
        .iter()
        .map(|t| TurnSpan {
            role: t.role.clone(),
            span: Span {
                start_ms: t.start_ms,
                end_ms: t.end_ms,
            },
            words: t.words,
        })
        .collect();
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str, start: f64, end: f64, channel: u32) -> Word {
        Word {
            text: text.into(),
            start,
            end,
            confidence: Some(0.9),
            channel,
            speaker: None,
        }
    }

    fn roles() -> Vec<String> {
        vec!["customer".into(), "agent".into()]
    }

    #[test]
    fn channels_interleave_and_a_party_continues_across_short_pauses() {
        let words = vec![
            w("hello", 0.0, 0.4, 1),
            w("there", 0.45, 0.8, 1),
            // a 2 s pause: same turn
            w("how", 2.8, 3.0, 1),
            w("hi", 4.0, 4.3, 0),
            // talk-over: the agent starts while the customer is speaking
            w("I", 4.2, 4.4, 1),
            w("need", 4.5, 4.8, 0),
            // 3 s later, the customer again: a new turn
            w("help", 7.9, 8.1, 0),
        ];
        let turns = build_turns(&words, &roles(), true);
        let shape: Vec<(&str, i64, i64, &str)> = turns
            .iter()
            .map(|t| (t.role.as_str(), t.start_ms, t.end_ms, t.text.as_str()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("agent", 0, 3_000, "hello there how"),
                ("customer", 4_000, 4_300, "hi"),
                ("agent", 4_200, 4_400, "I"),
                ("customer", 4_500, 4_800, "need"),
                ("customer", 7_900, 8_100, "help"),
            ]
        );
        let input = metrics_input(&words, &turns, &roles(), true);
        // 0.4 → 0.45 is under 100 ms: one interval; 0.8 → 2.8 splits.
        assert_eq!(
            input.speech["agent"][0],
            Span {
                start_ms: 0,
                end_ms: 800
            }
        );
        assert_eq!(input.speech["agent"].len(), 3);
    }

    #[test]
    fn diarized_mono_turns_change_with_the_speaker() {
        let mut words = vec![
            w("good", 0.0, 0.3, 0),
            w("morning", 0.35, 0.8, 0),
            w("hi", 1.0, 1.2, 0),
            w("ok", 5.0, 5.2, 0),
        ];
        words[0].speaker = Some("B".into());
        words[1].speaker = Some("B".into());
        words[2].speaker = Some("A".into());
        words[3].speaker = Some("A".into());
        let turns = build_turns(&words, &roles(), false);
        let shape: Vec<(&str, usize)> = turns.iter().map(|t| (t.role.as_str(), t.party)).collect();
        // The first speaker heard takes the first role; 3.8 s apart is a new turn.
        assert_eq!(shape, vec![("customer", 0), ("agent", 1), ("agent", 1)]);
    }

    #[test]
    fn a_party_without_a_role_is_named_by_number() {
        assert_eq!(role_of(&roles(), 2), "speaker_3");
    }
}
