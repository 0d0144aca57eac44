//! Provider settings from the environment: `INSIGHTS_<PROVIDER>_API_KEY` enables a provider,
//! `_BASE_URL`, `_MODEL`, `_CONCURRENCY` and `_TIMEOUT_MS` override its defaults, and
//! `INSIGHTS_STT_*` sets the defaults shared by all of them. API keys never appear in `Debug`.

use std::time::Duration;

use super::{ProviderId, RetryPolicy};

/// Settings of one enabled provider.
#[derive(Clone)]
pub struct ProviderConfig {
    pub id: ProviderId,
    pub api_key: String,
    /// Without a trailing slash.
    pub base_url: String,
    pub model: String,
    /// Requests in flight to this provider across the whole process.
    pub concurrency: usize,
    /// Per attempt (Gladia: the whole upload → poll cycle).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Gladia's poll interval.
    pub poll_interval: Duration,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("api_key", &"***")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ProviderConfig {
    /// A provider with the defaults and the given key and endpoint (tests, benchmarks).
    pub fn new(id: ProviderId, api_key: &str, base_url: &str) -> Self {
        ProviderConfig {
            id,
            api_key: api_key.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            model: id.default_model().to_string(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_millis(DEFAULT_POLL_MS),
        }
    }
}

/// Every enabled provider, in the order of `ProviderId::ALL`.
#[derive(Debug, Clone, Default)]
pub struct SttConfig {
    pub providers: Vec<ProviderConfig>,
    /// Language hint sent with each request (`INSIGHTS_STT_LANGUAGE`, default `en`; empty = detect).
    pub language: Option<String>,
}

const DEFAULT_CONCURRENCY: usize = 4;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_POLL_MS: u64 = 150;
const DEFAULT_MAX_RETRIES: u32 = 3;

/// A setting that is present but unusable: named, with what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub reason: &'static str,
}

impl SttConfig {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Empty values count as
    /// unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> Result<u64, SettingError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| SettingError {
                    name: name.to_string(),
                    value: v,
                    reason: "expected a whole number",
                }),
            }
        };
        let concurrency = number("INSIGHTS_STT_CONCURRENCY", DEFAULT_CONCURRENCY as u64)?;
        let timeout_ms = number("INSIGHTS_STT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS)?;
        let max_retries = number("INSIGHTS_STT_MAX_RETRIES", u64::from(DEFAULT_MAX_RETRIES))?;
        let poll_ms = number("INSIGHTS_GLADIA_POLL_MS", DEFAULT_POLL_MS)?;
        let mut providers = Vec::new();
        for id in ProviderId::CONFIGURABLE {
            let prefix = format!("INSIGHTS_{}_", id.env_prefix());
            let Some(api_key) = get(&format!("{prefix}API_KEY")) else {
                continue;
            };
            let base_url = get(&format!("{prefix}BASE_URL"))
                .unwrap_or_else(|| id.default_base_url().to_string());
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(SettingError {
                    name: format!("{prefix}BASE_URL"),
                    value: base_url,
                    reason: "expected an http:// or https:// URL",
                });
            }
            let mut p = ProviderConfig::new(id, api_key.trim(), &base_url);
            if let Some(model) = get(&format!("{prefix}MODEL")) {
                p.model = model.trim().to_string();
            }
            p.concurrency = number(&format!("{prefix}CONCURRENCY"), concurrency)?.max(1) as usize;
            p.timeout =
                Duration::from_millis(number(&format!("{prefix}TIMEOUT_MS"), timeout_ms)?.max(1));
            p.retry.max_retries = max_retries.min(20) as u32;
            p.poll_interval = Duration::from_millis(poll_ms.max(10));
            providers.push(p);
        }
        let language = match lookup("INSIGHTS_STT_LANGUAGE") {
            None => Some("en".to_string()),
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v.trim().to_ascii_lowercase()),
        };
        Ok(SttConfig {
            providers,
            language,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<SttConfig, SettingError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SttConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn a_provider_is_enabled_by_its_key_and_keeps_its_defaults() {
        let c = from(&[
            ("INSIGHTS_DEEPGRAM_API_KEY", "dg-key"),
            ("INSIGHTS_GROQ_API_KEY", ""),
        ])
        .unwrap();
        assert_eq!(c.providers.len(), 1, "an empty key leaves a provider off");
        let p = &c.providers[0];
        assert_eq!(
            (p.id, p.base_url.as_str(), p.model.as_str()),
            (ProviderId::Deepgram, "https://api.deepgram.com", "nova-3")
        );
        assert_eq!((p.concurrency, p.timeout), (4, Duration::from_secs(30)));
        assert_eq!(c.language.as_deref(), Some("en"));
        assert!(
            !format!("{p:?}").contains("dg-key"),
            "keys are never printed"
        );
    }

    #[test]
    fn overrides_apply_per_provider_over_the_shared_defaults() {
        let c = from(&[
            ("INSIGHTS_OPENAI_API_KEY", "k"),
            ("INSIGHTS_OPENAI_BASE_URL", "http://127.0.0.1:9000/v1/"),
            ("INSIGHTS_OPENAI_MODEL", "whisper-1"),
            ("INSIGHTS_OPENAI_CONCURRENCY", "2"),
            ("INSIGHTS_STT_CONCURRENCY", "8"),
            ("INSIGHTS_STT_TIMEOUT_MS", "5000"),
            ("INSIGHTS_GLADIA_API_KEY", "g"),
            ("INSIGHTS_STT_LANGUAGE", ""),
        ])
        .unwrap();
        let ids: Vec<_> = c.providers.iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![ProviderId::Gladia, ProviderId::Openai]);
        let o = &c.providers[1];
        assert_eq!(
            (o.base_url.as_str(), o.model.as_str(), o.concurrency),
            ("http://127.0.0.1:9000/v1", "whisper-1", 2)
        );
        assert_eq!(
            (c.providers[0].concurrency, c.providers[0].timeout),
            (8, Duration::from_secs(5))
        );
        assert_eq!(
            c.language, None,
            "an empty language lets providers detect it"
        );
    }

    #[test]
    fn unusable_settings_are_named() {
        let e = from(&[
            ("INSIGHTS_GROQ_API_KEY", "k"),
            ("INSIGHTS_GROQ_CONCURRENCY", "many"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "INSIGHTS_GROQ_CONCURRENCY");
        let e = from(&[
            ("INSIGHTS_GROQ_API_KEY", "k"),
            ("INSIGHTS_GROQ_BASE_URL", "api.groq.com"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("http"), "{e}");
    }
}
