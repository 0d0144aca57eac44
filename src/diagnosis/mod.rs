//! Diagnosis: a rules engine over a session's stored snapshot. Each rule is a small pure function
//! (`rules.rs`) returning issues with evidence; the engine runs them all, orders the issues (most
//! severe first) and derives the session flags. Persistence runs it in the ingest transaction.

mod persist;
pub mod rules;
#[cfg(test)]
mod tests;
mod thresholds;

pub use persist::{rediagnose, replace_issues};
pub use thresholds::{Thresholds, ThresholdsError};

use entity::{audio_segments, call_sessions, conversation_turns, session_events};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// Stable snake_case code (part of the API).
    pub code: &'static str,
    pub severity: Severity,
    /// One human line.
    pub title: String,
    pub detail: Option<String>,
    pub turn_index: Option<i64>,
    /// Offset from the session start.
    pub at_ms: Option<i64>,
    /// The measured values and the thresholds they crossed.
    pub evidence: Value,
}

/// What the rules read: the session and every stored child row, turns by index and events by seq.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub session: &'a call_sessions::Model,
    pub turns: &'a [conversation_turns::Model],
    pub events: &'a [session_events::Model],
    pub segments: &'a [audio_segments::Model],
}

/// A rule: pure, no I/O.
pub type Rule = fn(&Snapshot<'_>, &Thresholds) -> Vec<Issue>;

/// The engine's result for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// Most severe first, then by time.
    pub issues: Vec<Issue>,
    /// Any warning or critical issue.
    pub has_issues: bool,
    pub has_near_miss: bool,
    /// e.g. `2 critical, 1 warning: dropped utterance at 00:41; STT total failure`.
    pub summary: Option<String>,
}

/// Runs every rule of `rules::ALL`.
pub fn diagnose(s: &Snapshot<'_>, t: &Thresholds) -> Diagnosis {
    let mut issues: Vec<Issue> = rules::ALL.iter().flat_map(|(_, rule)| rule(s, t)).collect();
    issues.sort_by(|a, b| {
        (a.severity, a.at_ms.is_none(), a.at_ms, a.turn_index, a.code).cmp(&(
            b.severity,
            b.at_ms.is_none(),
            b.at_ms,
            b.turn_index,
            b.code,
        ))
    });
    let has_issues = issues.iter().any(|i| i.severity != Severity::Info);
    let has_near_miss = issues.iter().any(|i| i.code == "near_miss_speech");
    let summary = summarize(&issues);
    Diagnosis {
        issues,
        has_issues,
        has_near_miss,
        summary,
    }
}

/// `mm:ss` of an offset.
pub fn clock(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn summarize(issues: &[Issue]) -> Option<String> {
    let count = |sev| issues.iter().filter(|i| i.severity == sev).count();
    let (c, w, i) = (
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let mut parts = Vec::new();
    for (n, label) in [
        (c, "critical"),
        (w, if w == 1 { "warning" } else { "warnings" }),
    ] {
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    // The headline lists the serious issues; a call with only info findings lists those.
    let listed: Vec<&Issue> = if c + w > 0 {
        issues
            .iter()
            .filter(|i| i.severity != Severity::Info)
            .collect()
    } else if i > 0 {
        parts.push(format!("{i} info"));
        issues.iter().collect()
    } else {
        return None;
    };
    let mut seen: Vec<(&str, usize, Option<i64>)> = Vec::new();
    for issue in listed {
        match seen.iter_mut().find(|(code, ..)| *code == issue.code) {
            Some(entry) => entry.1 += 1,
            None => seen.push((issue.code, 1, issue.at_ms)),
        }
    }
    let items: Vec<String> = seen
        .iter()
        .map(|(code, n, at)| {
            let mut s = rules::label(code).to_string();
            if *n > 1 {
                s.push_str(&format!(" ×{n}"));
            }
            if let Some(at) = at {
                s.push_str(&format!(" at {}", clock(*at)));
            }
            s
        })
        .collect();
    Some(format!("{}: {}", parts.join(", "), items.join("; ")))
}
