//! Twilio: the accounts the service accepts recordings from (`INSIGHTS_TWILIO_ACCOUNTS_FILE`), the
//! `X-Twilio-Signature` check of the RecordingStatusCallback, and what a callback asks for.

use base64::Engine;
use ring::hmac;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use subtle::ConstantTimeEq;

/// One Twilio account: its recordings belong to `tenant_id`, channels mapped by `channels`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub sid: String,
    pub auth_token: String,
    pub tenant_id: String,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("sid", &self.sid)
            .field("auth_token", &"***")
            .field("tenant_id", &self.tenant_id)
            .field("channels", &self.channels)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    account: Vec<Account>,
}

/// The accounts, by `AccountSid`.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    by_sid: HashMap<String, Account>,
}

impl Accounts {
    /// Reads the TOML file (`[[account]] sid, auth_token, tenant_id, channels`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read INSIGHTS_TWILIO_ACCOUNTS_FILE {}: {e}",
                path.display()
            )
        })?;
        Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("INSIGHTS_TWILIO_ACCOUNTS_FILE {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: AccountsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_sid = HashMap::new();
        for a in file.account {
            if !(a.sid.starts_with("AC") && a.sid.len() == 34) {
                return Err(format!(
                    "account sid {:?} is not AC followed by 32 characters",
                    a.sid
                ));
            }
            if a.auth_token.trim().is_empty() || a.tenant_id.trim().is_empty() {
                return Err(format!(
                    "account {}: auth_token and tenant_id are required",
                    a.sid
                ));
            }
            if by_sid.insert(a.sid.clone(), a).is_some() {
                return Err("an account sid appears twice".into());
            }
        }
        Ok(Accounts { by_sid })
    }

    pub fn get(&self, sid: &str) -> Option<&Account> {
        self.by_sid.get(sid)
    }

    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }

    /// The accounts whose recordings belong to `tenant`.
    pub fn accounts_of_tenant<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Account> {
        self.by_sid.values().filter(move |a| a.tenant_id == tenant)
    }

    /// Every auth token, for the secrets check.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.by_sid.values().map(|a| a.auth_token.as_str())
    }
}

/// `base64(HMAC-SHA1(auth token, url + every param sorted by key then value, as key+value))`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut msg = url.to_string();
    for (k, v) in sorted {
        msg.push_str(k);
        msg.push_str(v);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, msg.as_bytes()).as_ref())
}

/// The URL as configured, and with the scheme's default port added or removed (Twilio signs the
/// URL as it called it, which a proxy may have changed).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some(bare) = host.strip_suffix(port) {
            out.push(format!("{scheme}{bare}{path}"));
        } else if !host.contains(':') {
            out.push(format!("{scheme}{host}{port}{path}"));
        }
    }
    out
}

/// True when `given` is the signature of this request under any form of its URL.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let given = given.trim().as_bytes();
    !given.is_empty()
        && url_variants(url).iter().any(|u| {
            let expected = signature(auth_token, u, params);
            bool::from(expected.as_bytes().ct_eq(given))
        })
}

/// What a callback asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub account_sid: String,
    pub call_sid: String,
    pub recording_sid: String,
    pub recording_url: String,
    pub status: String,
    pub channels: Option<u32>,
    pub duration_s: Option<f64>,
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    pub error_code: Option<String>,
}

impl Callback {
    /// Reads the callback's fields; `Err` names what is missing.
    pub fn from_params(params: &[(String, String)]) -> Result<Self, String> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let need = |k: &str| get(k).ok_or_else(|| format!("the callback has no {k}"));
        Ok(Callback {
            account_sid: need("AccountSid")?,
            call_sid: need("CallSid")?,
            recording_sid: need("RecordingSid")?,
            recording_url: need("RecordingUrl")?,
            status: need("RecordingStatus")?,
            channels: get("RecordingChannels").and_then(|c| c.parse().ok()),
            duration_s: get("RecordingDuration").and_then(|d| d.parse().ok()),
            start_time: get("RecordingStartTime").and_then(|t| parse_time(&t)),
            error_code: get("ErrorCode"),
        })
    }
}

/// RFC 2822 (what Twilio's resources use) or RFC 3339, leniently.
fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc2822(s)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn vector_params() -> Vec<(String, String)> {
        p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn twilios_own_test_vectors() {
        assert_eq!(
            signature("12345", URL, &vector_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &vector_params()
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        let repeated = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature("12345", URL, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn a_signature_verifies_with_and_without_the_default_port_and_nothing_else_does() {
        let params = vector_params();
        assert!(verify(
            "12345",
            URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Twilio called the URL with :443 while the service is configured without it.
        assert!(verify(
            "12345",
            URL,
            &params,
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        assert!(!verify("12345", URL, &params, ""));
        assert!(!verify(
            "54321",
            URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut changed = params.clone();
        changed[2].1 = "9999".into();
        assert!(!verify(
            "12345",
            URL,
            &changed,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn the_accounts_file_names_what_is_wrong() {
        let ok = Accounts::parse(
            "[[account]]\nsid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\ntenant_id = \"acme\"\nchannels = [\"agent\", \"customer\"]\n",
        )
        .unwrap();
        let a = ok.get("AC0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(a.channels.as_deref().unwrap()[0], "agent");
        assert!(!format!("{a:?}").contains("\"t\""));
        let e = Accounts::parse(
            "[[account]]\nsid = \"ACshort\"\nauth_token = \"t\"\ntenant_id = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.contains("ACshort"), "{e}");
        assert!(Accounts::parse("[[account]]\nsid = 1\n").is_err());
    }

    #[test]
    fn a_callback_reads_its_fields_and_names_the_missing_one() {
        let c = Callback::from_params(&p(&[
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("CallSid", "CA1"),
            ("RecordingSid", "RE1"),
            (
                "RecordingUrl",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            ),
            ("RecordingStatus", "completed"),
            ("RecordingChannels", "2"),
            ("RecordingDuration", "65"),
            ("RecordingStartTime", "Tue, 01 Dec 2026 10:00:00 +0000"),
        ]))
        .unwrap();
        assert_eq!((c.channels, c.duration_s), (Some(2), Some(65.0)));
        assert_eq!(
            c.start_time.unwrap().to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
        let e = Callback::from_params(&p(&[("AccountSid", "AC1")])).unwrap_err();
        assert!(e.contains("CallSid"), "{e}");
    }
}
