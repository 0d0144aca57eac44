//! The offline analyzer: no network, deterministic. VADER (vader-parity, exact to Python
//! vaderSentiment 3.3.2) over the caller's turns, keyword intent, lead score from intent, sentiment
//! and entities, escalation from transfer events and cues, entities by pattern.

use super::profile::Profile;
use super::redact::{PiiKind, Redactor};
use super::schema::{Analysis, Entities};
use super::{Analyzer, Answer, CallInput, Failure, sentiment_label, truncate_chars};
use regex::Regex;
use std::sync::LazyLock;
use vader_parity::SentimentIntensityAnalyzer;

static VADER: LazyLock<SentimentIntensityAnalyzer> = LazyLock::new(SentimentIntensityAnalyzer::new);

/// Keywords of the built-in intents (a profile's own intents also match their own name).
const INTENT_WORDS: &[(&str, &[&str])] = &[
    (
        "booking",
        &[
            "book",
            "booking",
            "appointment",
            "reschedule",
            "schedule",
            "reservation",
            "reserve",
            "move my",
            "slot",
            "available on",
            "cancel my appointment",
        ],
    ),
    (
        "complaint",
        &[
            "complain",
            "complaint",
            "charged twice",
            "overcharged",
            "unacceptable",
            "terrible",
            "worst",
            "angry",
            "frustrated",
            "ridiculous",
            "refund",
            "never arrived",
            "broken",
            "disappointed",
        ],
    ),
    (
        "sales",
        &[
            "buy",
            "purchase",
            "pricing",
            "price",
            "quote",
            "upgrade",
            "sign up",
            "subscribe",
            "plan",
            "interested in",
            "how much",
            "demo",
            "discount",
            "order",
        ],
    ),
    (
        "support",
        &[
            "not working",
            "doesn't work",
            "error",
            "help me",
            "issue",
            "problem",
            "reset",
            "password",
            "can't log",
            "cannot log",
            "fix",
            "troubleshoot",
            "login",
        ],
    ),
    (
        "info",
        &[
            "what are your",
            "opening hours",
            "hours",
            "where are you",
            "address",
            "information",
            "how do i",
            "do you have",
            "what is",
            "tell me about",
            "balance",
        ],
    ),
];

const TOPIC_WORDS: &[(&str, &[&str])] = &[
    (
        "appointment",
        &["appointment", "reschedule", "booking", "slot"],
    ),
    (
        "billing",
        &["bill", "charged", "charge", "invoice", "payment", "balance"],
    ),
    ("refund", &["refund", "money back"]),
    (
        "pricing",
        &["price", "pricing", "cost", "quote", "how much", "discount"],
    ),
    (
        "account",
        &["account", "password", "login", "log in", "profile"],
    ),
    (
        "delivery",
        &[
            "delivery", "shipping", "shipped", "arrive", "package", "order",
        ],
    ),
    ("cancellation", &["cancel", "cancellation", "terminate"]),
    (
        "technical issue",
        &["not working", "error", "broken", "crash", "bug"],
    ),
    ("upgrade", &["upgrade", "premium", "plan"]),
];

const ESCALATION_CUES: &[&str] = &[
    "speak to a human",
    "talk to a human",
    "real person",
    "speak to a manager",
    "talk to a manager",
    "supervisor",
    "speak to someone",
    "talk to someone",
    "representative",
    "escalate",
    "live agent",
    "human agent",
    "transfer me",
];

const BUYING_CUES: &[&str] = &[
    "buy",
    "sign up",
    "purchase",
    "ready to",
    "interested",
    "quote",
    "demo",
    "upgrade",
    "subscribe",
    "how much",
    "price",
];

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:[Mm]y name is|[Tt]his is|[Ii]t's|[Ii] am|[Ii]'m|[Cc]all me) ((?:[A-Z][a-z]+)(?: [A-Z][a-z]+)?)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

static ACTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:i will|i'll|i have (?:opened|scheduled|sent|booked|moved|created|filed)|i've (?:opened|scheduled|sent|booked|moved|created|filed)|we will|we'll)\b[^.!?]*")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// Words that are not names after "I'm" ("I'm fine", "I'm calling").
const NOT_NAMES: &[&str] = &[
    "Fine",
    "Good",
    "Calling",
    "Sorry",
    "Not",
    "Just",
    "Looking",
    "Trying",
    "Okay",
    "Ok",
    "Here",
    "Interested",
    "Happy",
    "Still",
    "So",
    "Very",
    "Really",
    "Sure",
    "Done",
    "The",
    "Thursday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Friday",
    "Saturday",
    "Sunday",
];

#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineAnalyzer;

/// The caller's sentiment over the call: VADER compound per caller turn, later turns weighing more
/// (how a call ends is what a caller remembers), in −1..1.
pub fn caller_sentiment<'a>(turns: impl Iterator<Item = &'a str>) -> f64 {
    let scores: Vec<f64> = turns.map(|t| VADER.polarity_scores(t).compound).collect();
    if scores.is_empty() {
        return 0.0;
    }
    let n = scores.len() as f64;
    let (mut sum, mut weights) = (0.0, 0.0);
    for (i, s) in scores.iter().enumerate() {
        let w = 1.0 + i as f64 / n;
        sum += w * s;
        weights += w;
    }
    (sum / weights).clamp(-1.0, 1.0)
}

/// VADER's compound of a whole text (the reference the offline sentiment is compared with).
pub fn vader_compound(text: &str) -> f64 {
    VADER.polarity_scores(text).compound
}

fn count_hits(text: &str, words: &[&str]) -> usize {
    words.iter().filter(|w| text.contains(*w)).count()
}

fn intent_of(caller: &str, profile: &Profile) -> String {
    let mut best: Option<(&str, usize)> = None;
    for intent in &profile.intents {
        let builtin = INTENT_WORDS
            .iter()
            .find(|(name, _)| name == intent)
            .map_or(0, |(_, words)| count_hits(caller, words));
        let own = usize::from(caller.contains(&intent.to_lowercase().replace('_', " ")));
        let hits = builtin + own;
        if hits > 0 && best.is_none_or(|(_, b)| hits > b) {
            best = Some((intent, hits));
        }
    }
    match best {
        Some((i, _)) => i.to_string(),
        None => profile
            .intents
            .iter()
            .find(|i| *i == "other")
            .or(profile.intents.last())
            .cloned()
            .unwrap_or_else(|| "other".into()),
    }
}

impl OfflineAnalyzer {
    pub fn analyse(&self, call: &CallInput, profile: &Profile) -> Analysis {
        let caller_turns: Vec<&str> = call.caller_turns().map(|t| t.content.as_str()).collect();
        let caller = caller_turns.join(" ").to_lowercase();
        let all_text: String = call
            .spoken_turns()
            .map(|t| t.content.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let all_lower = all_text.to_lowercase();
        let sentiment_score =
            (caller_sentiment(caller_turns.iter().copied()) * 1000.0).round() / 1000.0;
        let intent = intent_of(&caller, profile);

        let mut redactor = Redactor::new();
        redactor.redact(&caller_turns.join("\n"));
        let value = |kind: PiiKind| {
            let label = format!("[{}_1]", kind.label());
            let v = redactor.restore(&label);
            (v != label).then_some(v)
        };
        let name = caller_turns.iter().find_map(|t| {
            NAME.captures(t)
                .map(|c| c[1].to_string())
                .filter(|n| !NOT_NAMES.contains(&n.split(' ').next().unwrap_or("")))
        });
        let topics: Vec<String> = TOPIC_WORDS
            .iter()
            .filter(|(_, words)| count_hits(&all_lower, words) > 0)
            .map(|(t, _)| t.to_string())
            .take(5)
            .collect();
        let entities = Entities {
            name,
            email: value(PiiKind::Email),
            phone: value(PiiKind::Phone),
            topic: topics.first().cloned(),
        };
        let competitor_mentions: Vec<String> = profile
            .competitors
            .iter()
            .filter(|c| caller.contains(&c.to_lowercase()))
            .cloned()
            .collect();

        let transfer = call.transfer();
        let cue = ESCALATION_CUES.iter().find(|c| caller.contains(*c));
        let escalated = transfer.is_some() || cue.is_some();
        let escalation_reason = transfer
            .clone()
            .or_else(|| cue.map(|c| format!("caller asked: \"{c}\"")));

        let last_spoken = call.spoken_turns().last();
        let dropped = call.session.error.is_some()
            || matches!(
                call.session.close_reason.as_deref(),
                Some("error" | "timeout" | "connection_lost")
            )
            || last_spoken.is_some_and(|t| t.role == "user" && t.content.trim_end().ends_with('?'));
        let resolution = if escalated {
            "escalated"
        } else if dropped {
            "dropped"
        } else {
            "resolved"
        };

        let base = match intent.as_str() {
            "sales" => 55,
            "booking" => 45,
            "info" => 25,
            "support" => 15,
            "complaint" => 5,
            _ => 10,
        };
        let mut lead = base as f64 + sentiment_score * 15.0;
        lead += 6.0 * count_hits(&caller, BUYING_CUES).min(4) as f64;
        if entities.email.is_some() || entities.phone.is_some() {
            lead += 8.0;
        }
        if entities.name.is_some() {
            lead += 4.0;
        }
        if resolution == "dropped" {
            lead -= 10.0;
        }
        let lead_score = lead.round().clamp(0.0, 100.0) as i32;
        let satisfaction = (3.0 + 2.0 * sentiment_score).round().clamp(1.0, 5.0) as i32;

        let action_items: Vec<String> = call
            .spoken_turns()
            .filter(|t| t.role != "user")
            .flat_map(|t| {
                ACTION
                    .find_iter(&t.content)
                    .map(|m| m.as_str().trim().to_string())
            })
            .take(5)
            .collect();
        let hot = profile.hot_lead.is_hot(lead_score, &intent);
        let next_action = if escalated {
            Some(match &transfer {
                Some(t) => format!("Follow up on the call {t}"),
                None => "Have a human call the customer back".to_string(),
            })
        } else if hot {
            Some("Call back: hot lead".to_string())
        } else if resolution == "dropped" {
            Some("Call the customer back: the call ended before their need was met".to_string())
        } else {
            action_items.first().cloned()
        };
        let sentiment = sentiment_label(sentiment_score).to_string();
        let mut tags = vec![intent.clone(), sentiment.clone()];
        if escalated {
            tags.push("escalated".into());
        }
        if hot {
            tags.push("hot_lead".into());
        }
        let first_need = caller_turns
            .iter()
            .find(|t| t.split_whitespace().count() >= 4)
            .or(caller_turns.first())
            .map(|t| t.trim().trim_end_matches(['.', '!']).to_string())
            .unwrap_or_default();
        let outcome = match resolution {
            "escalated" => "The call was escalated.",
            "dropped" => "The call ended unresolved.",
            _ => "The agent handled it.",
        };
        let summary = truncate_chars(
            &format!(
                "{} call ({} caller): \"{}\". {outcome}",
                capitalise(&intent),
                sentiment,
                truncate_chars(&first_need, 140)
            ),
            super::schema::SUMMARY_MAX_CHARS,
        );
        let mut custom = serde_json::Map::new();
        for f in &profile.fields {
            custom.insert(f.name.clone(), serde_json::Value::Null);
        }
        Analysis {
            summary,
            sentiment,
            sentiment_score,
            intent,
            lead_score,
            satisfaction,
            escalated,
            escalation_reason,
            resolution: resolution.to_string(),
            topics,
            action_items,
            competitor_mentions,
            tags,
            entities,
            next_action,
            custom,
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[async_trait::async_trait]
impl Analyzer for OfflineAnalyzer {
    fn kind(&self) -> &'static str {
        "offline"
    }

    fn model(&self) -> Option<String> {
        Some("vader-3.3.2+rules-1".into())
    }

    async fn analyze(&self, call: &CallInput, profile: &Profile) -> Result<Answer, Failure> {
        Ok(Answer {
            analysis: self.analyse(call, profile),
            usage: None,
            model: self.model(),
            attempts: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vader_matches_the_python_reference() {
        // Values printed by Python vaderSentiment 3.3.2's SentimentIntensityAnalyzer.
        assert_eq!(
            vader_compound("VADER is smart, handsome, and funny."),
            0.8316
        );
        assert_eq!(vader_compound("The book was good."), 0.4404);
        assert_eq!(vader_compound("Today SUX!"), -0.5461);
    }

    #[test]
    fn later_caller_turns_weigh_more() {
        let ends_well =
            caller_sentiment(["this is terrible", "great, thank you so much"].into_iter());
        let ends_badly =
            caller_sentiment(["great, thank you so much", "this is terrible"].into_iter());
        assert!(ends_well > ends_badly);
        assert_eq!(caller_sentiment(std::iter::empty()), 0.0);
    }
}

#[cfg(test)]
mod human_judgement {
    use super::*;

    fn pearson(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    }

    /// On hand-labelled calls, the offline call sentiment correlates with people at least as well as
    /// VADER's compound of the caller's whole text does.
    #[test]
    fn offline_sentiment_correlates_with_people_at_least_as_well_as_vader() {
        let text = include_str!("../../tests/fixtures/sentiment-calls.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let calls = v["calls"].as_array().unwrap();
        let human: Vec<f64> = calls
            .iter()
            .map(|c| c["rating"].as_f64().unwrap())
            .collect();
        let turns: Vec<Vec<String>> = calls
            .iter()
            .map(|c| {
                c["turns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .collect();
        let ours: Vec<f64> = turns
            .iter()
            .map(|t| caller_sentiment(t.iter().map(String::as_str)))
            .collect();
        let vader: Vec<f64> = turns.iter().map(|t| vader_compound(&t.join(" "))).collect();
        let (r_ours, r_vader) = (pearson(&ours, &human), pearson(&vader, &human));
        eprintln!(
            "Pearson r with human ratings over {} calls: offline {r_ours:.3}, VADER compound {r_vader:.3}",
            calls.len()
        );
        assert!(
            r_ours >= r_vader,
            "offline r={r_ours:.3} < VADER r={r_vader:.3}"
        );
        assert!(r_ours > 0.6, "offline r={r_ours:.3}");
    }
}
