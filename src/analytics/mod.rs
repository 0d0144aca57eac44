//! Post-call analytics: what a call meant for the business (summary, sentiment, intent, lead score,
//! escalation). Owns the analyzers (an OpenAI-compatible LLM, or the offline one), PII redaction,
//! profiles, the durable queue and its worker, backfill jobs, reviews and the dashboard queries.

pub mod backfill;
pub mod dashboards;
pub mod llm;
pub mod offline;
pub mod profile;
pub mod redact;
pub mod review;
pub mod rollup;
pub mod schema;
pub mod store;
pub mod worker;

use entity::{
    call_sessions as cs, conversation_turns as ct, diagnosis_issues as di, session_events as ev,
};
use profile::Profile;
use schema::Analysis;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Which analyzer runs (`INSIGHTS_ANALYTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Llm,
    Offline,
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "llm" => Some(Mode::Llm),
            "offline" => Some(Mode::Offline),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// A call as the analyzers read it.
#[derive(Debug, Clone)]
pub struct CallInput {
    pub session: cs::Model,
    pub turns: Vec<ct::Model>,
    pub events: Vec<ev::Model>,
    pub issues: Vec<di::Model>,
}

impl CallInput {
    pub async fn load<C: ConnectionTrait>(db: &C, session: cs::Model) -> Result<Self, DbErr> {
        let turns = ct::Entity::find()
            .filter(ct::Column::SessionId.eq(session.id))
            .order_by_asc(ct::Column::TurnIndex)
            .all(db)
            .await?;
        let events = ev::Entity::find()
            .filter(ev::Column::SessionId.eq(session.id))
            .order_by_asc(ev::Column::Seq)
            .all(db)
            .await?;
        let issues = di::Entity::find()
            .filter(di::Column::SessionId.eq(session.id))
            .order_by_asc(di::Column::Ordinal)
            .all(db)
            .await?;
        Ok(CallInput {
            session,
            turns,
            events,
            issues,
        })
    }

    /// Turns that carry words.
    pub fn spoken_turns(&self) -> impl Iterator<Item = &ct::Model> {
        self.turns
            .iter()
            .filter(|t| t.content.chars().any(char::is_alphanumeric))
    }

    pub fn caller_turns(&self) -> impl Iterator<Item = &ct::Model> {
        self.spoken_turns().filter(|t| t.role == "user")
    }

    /// `transfer` events and the outcome flag: the call's own record of an escalation.
    pub fn transfer(&self) -> Option<String> {
        let event = self.events.iter().find(|e| e.event_type == "transfer");
        if let Some(e) = event {
            let target = e
                .data
                .as_ref()
                .and_then(|d| d.get("target"))
                .and_then(|t| t.as_str())
                .map(str::to_string);
            return Some(match target {
                Some(t) => format!("transferred to {t}"),
                None => "transferred".to_string(),
            });
        }
        (self.session.was_transferred == Some(true)).then(|| "transferred".to_string())
    }

    /// Identity of what is analysed: role and words of every turn, in order.
    pub fn conversation_hash(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.turns {
            h.update(t.turn_index.to_le_bytes());
            h.update(t.role.as_bytes());
            h.update([0]);
            h.update(t.content.as_bytes());
            h.update([0]);
        }
        h.update(self.transfer().unwrap_or_default().as_bytes());
        let d = h.finalize();
        d[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Tokens an LLM call used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// What an analyzer produced for one call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub analysis: Analysis,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// Requests sent (LLM: including retries and repairs).
    pub attempts: i32,
}

/// Why an analyzer produced nothing usable.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    pub raw_answer: Option<String>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub attempts: i32,
    /// True when trying again later may succeed (rate limits, outages): the item is re-queued.
    pub transient: bool,
}

/// One analyzer: the LLM or the offline one.
#[async_trait::async_trait]
pub trait Analyzer: Send + Sync + std::fmt::Debug {
    /// `llm` or `offline`.
    fn kind(&self) -> &'static str;
    fn model(&self) -> Option<String>;
    async fn analyze(&self, call: &CallInput, profile: &Profile) -> Result<Answer, Failure>;
    /// USD for the tokens used, from the price table (None when the model has no price).
    fn cost(&self, _usage: &Usage) -> Option<f64> {
        None
    }
}

/// A contradiction between the analyzer's answer and the call's own record; the fact is kept.
pub fn reconcile(call: &CallInput, a: &mut Analysis) -> Vec<serde_json::Value> {
    let mut disagreements = Vec::new();
    if let Some(transfer) = call.transfer() {
        if !a.escalated {
            disagreements.push(json!({
                "field": "escalated", "analyzer": false, "kept": true,
                "evidence": format!("the report records the call as {transfer}"),
            }));
            a.escalated = true;
        }
        if a.escalation_reason.is_none() {
            a.escalation_reason = Some(transfer.clone());
        }
        if a.resolution != "escalated" {
            disagreements.push(json!({
                "field": "resolution", "analyzer": a.resolution, "kept": "escalated",
                "evidence": format!("the report records the call as {transfer}"),
            }));
            a.resolution = "escalated".into();
        }
    }
    // sentiment label and score must agree (VADER's thresholds).
    let label = sentiment_label(a.sentiment_score);
    if (a.sentiment == "positive" && a.sentiment_score < -0.05)
        || (a.sentiment == "negative" && a.sentiment_score > 0.05)
    {
        disagreements.push(json!({
            "field": "sentiment", "analyzer": a.sentiment, "kept": label,
            "evidence": format!("sentiment_score is {:.2}", a.sentiment_score),
        }));
        a.sentiment = label.to_string();
    }
    if a.summary.chars().count() > schema::SUMMARY_MAX_CHARS {
        a.summary = truncate_chars(&a.summary, schema::SUMMARY_MAX_CHARS);
    }
    disagreements
}

/// `positive` ≥ 0.05 > `neutral` > −0.05 ≥ `negative` (VADER's thresholds).
pub fn sentiment_label(score: f64) -> &'static str {
    if score >= 0.05 {
        "positive"
    } else if score <= -0.05 {
        "negative"
    } else {
        "neutral"
    }
}

pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The analyzer the settings ask for (None: analytics off).
pub fn build_analyzer(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Analyzer>>> {
    Ok(match settings.mode() {
        Mode::Off => None,
        Mode::Offline => Some(Arc::new(offline::OfflineAnalyzer)),
        Mode::Llm => Some(Arc::new(llm::LlmAnalyzer::new(settings.llm.clone())?)),
    })
}

/// Settings of analytics, read from `INSIGHTS_ANALYTICS*` and `INSIGHTS_LLM_*`. `Debug` leaves the
/// encryption key out.
#[derive(Clone)]
pub struct Settings {
    /// `INSIGHTS_ANALYTICS`: explicit mode; default `llm` when an LLM key or base URL is set, else `offline`.
    pub mode: Option<Mode>,
    pub llm: llm::LlmSettings,
    /// `INSIGHTS_ANALYTICS_CONFIG`: profile file.
    pub config_path: Option<String>,
    /// `INSIGHTS_ANALYTICS_REVIEW_PER_DAY` (default 10).
    pub review_per_day: usize,
    /// `INSIGHTS_ANALYTICS_ENCRYPTION_KEY`: `kid:base64key[,kid:base64key…]`, first one encrypts.
    pub encryption_key: Option<String>,
    /// `INSIGHTS_ANALYTICS_CONCURRENCY`: calls analysed at once by this process (default: the LLM
    /// concurrency; 0 takes no analytics work).
    pub concurrency: Option<usize>,
    /// Lease of a claimed queue item (renewed every quarter of it).
    pub lease_ms: u64,
    pub poll_ms: u64,
    /// `INSIGHTS_ANALYTICS_MAX_ATTEMPTS` (default 3): starts before an item fails for good.
    pub max_attempts: i32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("llm", &self.llm)
            .field("config_path", &self.config_path)
            .field("review_per_day", &self.review_per_day)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "***"),
            )
            .field("concurrency", &self.concurrency)
            .field("lease_ms", &self.lease_ms)
            .field("poll_ms", &self.poll_ms)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::defaults()
    }
}

impl Settings {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(if self.llm.configured() {
            Mode::Llm
        } else {
            Mode::Offline
        })
    }

    /// Defaults (offline analyzer), as tests start from.
    pub fn defaults() -> Self {
        Settings {
            mode: None,
            llm: llm::LlmSettings::default(),
            config_path: None,
            review_per_day: 10,
            encryption_key: None,
            concurrency: None,
            lease_ms: 60_000,
            poll_ms: 500,
            max_attempts: 3,
        }
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(match self.mode() {
            Mode::Llm => self.llm.concurrency,
            _ => 2,
        })
    }

    /// Reads the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut s = Settings::defaults();
        let num = |name: &str| -> anyhow::Result<Option<u64>> {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| anyhow::anyhow!("{name}={v:?}: expected a whole number"))
                })
                .transpose()
        };
        if let Some(m) = get("INSIGHTS_ANALYTICS").filter(|v| !v.trim().is_empty()) {
            s.mode = Some(Mode::parse(&m).ok_or_else(|| {
                anyhow::anyhow!("INSIGHTS_ANALYTICS={m:?}: expected llm, offline or off")
            })?);
        }
        s.llm = llm::LlmSettings::from_lookup(&get)?;
        s.config_path = get("INSIGHTS_ANALYTICS_CONFIG").filter(|v| !v.is_empty());
        if let Some(n) = num("INSIGHTS_ANALYTICS_REVIEW_PER_DAY")? {
            s.review_per_day = n as usize;
        }
        s.encryption_key = get("INSIGHTS_ANALYTICS_ENCRYPTION_KEY").filter(|v| !v.is_empty());
        s.concurrency = num("INSIGHTS_ANALYTICS_CONCURRENCY")?.map(|n| n as usize);
        if let Some(n) = num("INSIGHTS_ANALYTICS_LEASE_MS")? {
            s.lease_ms = n.max(100);
        }
        if let Some(n) = num("INSIGHTS_ANALYTICS_POLL_MS")? {
            s.poll_ms = n.max(10);
        }
        if let Some(n) = num("INSIGHTS_ANALYTICS_MAX_ATTEMPTS")? {
            s.max_attempts = n.clamp(1, 100) as i32;
        }
        if s.mode == Some(Mode::Llm) && !s.llm.configured() {
            anyhow::bail!(
                "INSIGHTS_ANALYTICS=llm needs INSIGHTS_LLM_API_KEY (or INSIGHTS_LLM_BASE_URL for a server without keys)"
            );
        }
        Ok(s)
    }
}

/// The transcript as `user:` / `agent:` lines, capped at `max_chars`: head and tail kept, the cut
/// marked with how much was left out.
pub fn transcript(lines: &[(String, String)], max_chars: usize) -> String {
    let full: Vec<String> = lines
        .iter()
        .map(|(role, text)| {
            let who = if role == "user" { "user" } else { "agent" };
            format!("{who}: {}", text.trim())
        })
        .collect();
    let total: usize = full.iter().map(|l| l.chars().count() + 1).sum();
    if total <= max_chars {
        return full.join("\n");
    }
    let budget = max_chars.saturating_sub(60);
    let (head_budget, tail_budget) = (budget * 2 / 3, budget / 3);
    let mut head = Vec::new();
    let mut used = 0;
    let mut i = 0;
    while i < full.len() && used + full[i].chars().count() < head_budget {
        used += full[i].chars().count() + 1;
        head.push(full[i].clone());
        i += 1;
    }
    let mut tail = Vec::new();
    let mut tail_used = 0;
    let mut j = full.len();
    while j > i && tail_used + full[j - 1].chars().count() < tail_budget {
        j -= 1;
        tail_used += full[j].chars().count() + 1;
        tail.push(full[j].clone());
    }
    tail.reverse();
    // A single very long turn: keep a part of it rather than nothing.
    if head.is_empty() && i < j {
        head.push(truncate_chars(&full[i], head_budget));
        i += 1;
    }
    let cut_lines = j.saturating_sub(i);
    let cut_chars: usize = full[i..j].iter().map(|l| l.chars().count() + 1).sum();
    let mut out = head.join("\n");
    out.push_str(&format!(
        "\n[… {cut_lines} turns ({cut_chars} characters) cut …]\n"
    ));
    out.push_str(&tail.join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_transcripts_keep_head_and_tail_and_mark_the_cut() {
        let lines: Vec<(String, String)> = (0..400)
            .map(|i| {
                (
                    if i % 2 == 0 { "user" } else { "assistant" }.to_string(),
                    format!("turn number {i} with some words in it"),
                )
            })
            .collect();
        let t = transcript(&lines, 12_000);
        assert!(t.chars().count() <= 12_000, "{}", t.chars().count());
        assert!(t.starts_with("user: turn number 0 "));
        assert!(t.ends_with("agent: turn number 399 with some words in it"));
        assert!(t.contains("turns (") && t.contains("characters) cut …]"));
        let short = transcript(&lines[..2], 12_000);
        assert_eq!(
            short,
            "user: turn number 0 with some words in it\nagent: turn number 1 with some words in it"
        );
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AnalyticsMetrics {
    pub completed: std::sync::atomic::AtomicU64,
    pub skipped: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub unchanged: std::sync::atomic::AtomicU64,
    pub requeued: std::sync::atomic::AtomicU64,
    pub lost: std::sync::atomic::AtomicU64,
    pub db_errors: std::sync::atomic::AtomicU64,
}

/// Analytics as the process runs it: settings, the analyzer, profiles and keys, built once.
#[derive(Debug)]
pub struct Analytics {
    pub settings: Settings,
    /// None when analytics is off.
    pub analyzer: Option<Arc<dyn Analyzer>>,
    pub profiles: profile::Profiles,
    pub keys: Arc<crate::crypto::Keys>,
    pub metrics: AnalyticsMetrics,
    /// Where `analytics_ready` events go (`None`: live events off).
    pub live: Option<Arc<crate::live::hub::Hub>>,
    /// Ingest's counters: its backlog flag throttles the worker (`None`: not throttled).
    pub ingest: Option<Arc<crate::metrics::IngestMetrics>>,
}

impl Analytics {
    pub fn build(
        settings: Settings,
        live: Option<Arc<crate::live::hub::Hub>>,
        ingest: Option<Arc<crate::metrics::IngestMetrics>>,
    ) -> anyhow::Result<Self> {
        let profiles = profile::Profiles::load(settings.config_path.as_deref())?;
        let keys = crate::crypto::Keys::parse(settings.encryption_key.as_deref())?;
        let analyzer = build_analyzer(&settings)?;
        Ok(Analytics {
            settings,
            analyzer,
            profiles,
            keys: Arc::new(keys),
            metrics: AnalyticsMetrics::default(),
            live,
            ingest,
        })
    }

    pub fn enabled(&self) -> bool {
        self.analyzer.is_some()
    }

    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settings.lease_ms.max(100))
    }

    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settings.poll_ms.max(10))
    }
}
