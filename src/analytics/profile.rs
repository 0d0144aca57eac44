//! Analytics profiles (`INSIGHTS_ANALYTICS_CONFIG`, TOML): per `agent_id`, with a default — the intent
//! list, extra fields stored in `custom`, the hot-lead rule, competitors to look for and the system
//! prompt. `prompt_version` is a hash of everything that shapes an answer, so any change bumps it.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const DEFAULT_INTENTS: [&str; 6] =
    ["info", "booking", "complaint", "sales", "support", "other"];

pub const DEFAULT_SYSTEM_PROMPT: &str = "You analyse a finished phone call between a caller (\"user\") and a voice AI agent (\"agent\"). \
Answer only with JSON matching the schema. Judge the caller's sentiment, not the agent's. \
Placeholders such as [EMAIL_1] or [PHONE_1] stand for personal data that was removed: copy them unchanged where a value is asked for, never invent values. \
summary: at most 240 characters, neutral, in English. lead_score: 0-100, how likely the caller is to buy or book. \
satisfaction: 1-5. escalated: true only when the call was handed to a human or the caller demanded one. \
resolution: resolved, escalated or dropped (the caller left before the need was met).";

/// Type of an extra field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Enum,
}

/// An extra field the analysis fills in (like Retell's custom analysis data).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub description: String,
    /// Allowed values of an `enum` field.
    #[serde(default)]
    pub values: Vec<String>,
}

/// When a call is a hot lead.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotLeadRule {
    #[serde(default = "default_min_score")]
    pub min_lead_score: i32,
    /// Intents that qualify (empty: any).
    #[serde(default = "default_hot_intents")]
    pub intents: Vec<String>,
}

fn default_min_score() -> i32 {
    80
}
fn default_hot_intents() -> Vec<String> {
    vec!["sales".into()]
}

impl Default for HotLeadRule {
    fn default() -> Self {
        HotLeadRule {
            min_lead_score: default_min_score(),
            intents: default_hot_intents(),
        }
    }
}

impl HotLeadRule {
    pub fn is_hot(&self, lead_score: i32, intent: &str) -> bool {
        lead_score >= self.min_lead_score
            && (self.intents.is_empty() || self.intents.iter().any(|i| i == intent))
    }
}

/// A profile as written in the file: every key optional (the default profile fills the gaps).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    intents: Option<Vec<String>>,
    #[serde(default)]
    fields: Option<Vec<CustomField>>,
    hot_lead: Option<HotLeadRule>,
    system_prompt: Option<String>,
    competitors: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    default: ProfileSpec,
    #[serde(default)]
    agents: BTreeMap<String, ProfileSpec>,
}

/// A resolved profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `default` or the agent id it was written for.
    pub name: String,
    pub intents: Vec<String>,
    pub fields: Vec<CustomField>,
    pub hot_lead: HotLeadRule,
    pub system_prompt: String,
    pub competitors: Vec<String>,
    /// `p<schema version>-<12 hex of the hash>`.
    pub prompt_version: String,
}

impl Profile {
    fn resolve(name: &str, spec: &ProfileSpec, base: Option<&Profile>) -> Result<Self, String> {
        let intents = spec
            .intents
            .clone()
            .or_else(|| base.map(|b| b.intents.clone()))
            .unwrap_or_else(|| DEFAULT_INTENTS.iter().map(|s| s.to_string()).collect());
        if intents.is_empty() {
            return Err(format!("profile {name}: intents must not be empty"));
        }
        let fields = spec
            .fields
            .clone()
            .or_else(|| base.map(|b| b.fields.clone()))
            .unwrap_or_default();
        let reserved = super::schema::FIELD_NAMES;
        for f in &fields {
            let ok = !f.name.is_empty()
                && f.name.len() <= 64
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "profile {name}: field name {:?} must be 1-64 of [A-Za-z0-9_]",
                    f.name
                ));
            }
            if reserved.contains(&f.name.as_str()) {
                return Err(format!(
                    "profile {name}: field {:?} is a built-in field",
                    f.name
                ));
            }
            if f.kind == FieldType::Enum && f.values.is_empty() {
                return Err(format!(
                    "profile {name}: enum field {:?} needs values",
                    f.name
                ));
            }
        }
        let mut p = Profile {
            name: name.to_string(),
            intents,
            fields,
            hot_lead: spec
                .hot_lead
                .clone()
                .or_else(|| base.map(|b| b.hot_lead.clone()))
                .unwrap_or_default(),
            system_prompt: spec
                .system_prompt
                .clone()
                .or_else(|| base.map(|b| b.system_prompt.clone()))
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string()),
            competitors: spec
                .competitors
                .clone()
                .or_else(|| base.map(|b| b.competitors.clone()))
                .unwrap_or_default(),
            prompt_version: String::new(),
        };
        p.prompt_version = p.version_hash();
        Ok(p)
    }

    fn version_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(super::schema::SCHEMA_VERSION.to_le_bytes());
        h.update(self.system_prompt.as_bytes());
        for i in &self.intents {
            h.update(b"\0i");
            h.update(i.as_bytes());
        }
        for f in &self.fields {
            h.update(format!(
                "\0f{}:{:?}:{}:{:?}",
                f.name, f.kind, f.description, f.values
            ));
        }
        for c in &self.competitors {
            h.update(b"\0c");
            h.update(c.as_bytes());
        }
        h.update(format!(
            "\0h{}:{:?}",
            self.hot_lead.min_lead_score, self.hot_lead.intents
        ));
        let digest = h.finalize();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("p{}-{hex}", super::schema::SCHEMA_VERSION)
    }
}

/// Every profile: the default and per agent.
#[derive(Debug, Clone)]
pub struct Profiles {
    default: Profile,
    agents: BTreeMap<String, Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles::parse("").unwrap_or_else(|e| unreachable!("empty profile file parses: {e}"))
    }
}

impl Profiles {
    pub fn parse(toml_text: &str) -> Result<Self, String> {
        let spec: FileSpec = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let default = Profile::resolve("default", &spec.default, None)?;
        let mut agents = BTreeMap::new();
        for (agent, p) in &spec.agents {
            agents.insert(agent.clone(), Profile::resolve(agent, p, Some(&default))?);
        }
        Ok(Profiles { default, agents })
    }

    /// Reads `INSIGHTS_ANALYTICS_CONFIG` (none: built-in defaults).
    pub fn load(path: Option<&str>) -> anyhow::Result<Self> {
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Ok(Profiles::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("INSIGHTS_ANALYTICS_CONFIG {path}: {e}"))?;
        Profiles::parse(&text).map_err(|e| anyhow::anyhow!("INSIGHTS_ANALYTICS_CONFIG {path}: {e}"))
    }

    pub fn for_agent(&self, agent_id: Option<&str>) -> &Profile {
        agent_id
            .and_then(|a| self.agents.get(a))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_inherit_the_default_and_changes_bump_the_prompt_version() {
        let p = Profiles::parse(
            r#"
            [default]
            competitors = ["Acme Rival"]
            [agents.sales-bot]
            intents = ["pricing", "demo", "other"]
            hot_lead = { min_lead_score = 70, intents = ["demo"] }
            [[agents.sales-bot.fields]]
            name = "plan"
            type = "enum"
            values = ["basic", "pro"]
            description = "plan the caller asked about"
            "#,
        )
        .unwrap();
        let d = p.for_agent(None);
        let s = p.for_agent(Some("sales-bot"));
        assert_eq!(d.intents, DEFAULT_INTENTS);
        assert_eq!(s.intents, ["pricing", "demo", "other"]);
        assert_eq!(s.competitors, ["Acme Rival"]);
        assert!(s.hot_lead.is_hot(75, "demo") && !s.hot_lead.is_hot(75, "pricing"));
        assert!(d.hot_lead.is_hot(80, "sales") && !d.hot_lead.is_hot(79, "sales"));
        assert_ne!(d.prompt_version, s.prompt_version);
        assert_eq!(p.for_agent(Some("unknown")).name, "default");
        let again = Profiles::parse("[default]\ncompetitors = [\"Acme Rival\"]").unwrap();
        assert_eq!(again.for_agent(None).prompt_version, d.prompt_version);
        let changed = Profiles::parse("[default]\ncompetitors = [\"Other\"]").unwrap();
        assert_ne!(changed.for_agent(None).prompt_version, d.prompt_version);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        assert!(
            Profiles::parse("[default]\nintents = []")
                .unwrap_err()
                .contains("intents")
        );
        let e = Profiles::parse("[[default.fields]]\nname = \"summary\"\ntype = \"string\"")
            .unwrap_err();
        assert!(e.contains("built-in"), "{e}");
        let e = Profiles::parse("[[default.fields]]\nname = \"x\"\ntype = \"enum\"").unwrap_err();
        assert!(e.contains("needs values"), "{e}");
        assert!(Profiles::parse("[default]\nbogus = 1").is_err());
    }
}
