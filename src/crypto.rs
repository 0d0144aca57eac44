//! Encryption at rest of personal fields (analytics' `summary` and `entities`, webhook secrets):
//! AES-256-GCM with a random 96-bit nonce, stored as `enc:<key id>:<base64(nonce ‖ ciphertext)>`.
//! `INSIGHTS_ANALYTICS_ENCRYPTION_KEY` holds `kid:base64key[,kid:base64key…]`: the first key
//! encrypts, every key decrypts (rotation: put the new key first, keep the old ones until re-written).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "enc:";

/// The configured keys (none: values are stored as they are).
#[derive(Default)]
pub struct Keys {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Keys({ids:?})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("INSIGHTS_ANALYTICS_ENCRYPTION_KEY: {0}")]
    Config(String),
    #[error("encrypted with key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("stored value cannot be decrypted (corrupt or wrong key)")]
    Corrupt,
}

impl Keys {
    pub fn parse(spec: Option<&str>) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        for item in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (kid, b64) = item.split_once(':').unwrap_or(("k1", item));
            let kid = kid.trim();
            if kid.is_empty() || kid.contains(':') {
                return Err(CryptoError::Config("empty key id".into()));
            }
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| CryptoError::Config(format!("key {kid:?} is not base64")))?;
            if raw.len() != 32 {
                return Err(CryptoError::Config(format!(
                    "key {kid:?} has {} bytes, AES-256 needs 32 (openssl rand -base64 32)",
                    raw.len()
                )));
            }
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| CryptoError::Config(format!("key {kid:?} is unusable")))?;
            keys.push((kid.to_string(), LessSafeKey::new(key)));
        }
        Ok(Keys { keys })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Encrypts with the first key; without keys returns the value as it is.
    pub fn seal(&self, plain: &str) -> String {
        let Some((kid, key)) = self.keys.first() else {
            return plain.to_string();
        };
        let mut nonce = [0u8; NONCE_LEN];
        if SystemRandom::new().fill(&mut nonce).is_err() {
            // The system RNG failing is not survivable for a cipher: refuse to write weak data.
            tracing::error!("system random generator failed; value stored unencrypted is refused");
            return String::new();
        }
        let mut data = plain.as_bytes().to_vec();
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut data,
            )
            .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend(data);
        format!("{PREFIX}{kid}:{}", STANDARD.encode(out))
    }

    /// Decrypts a value `seal` wrote; a plain value (written before encryption was on) passes through.
    pub fn open(&self, stored: &str) -> Result<String, CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (kid, b64) = rest.split_once(':').ok_or(CryptoError::Corrupt)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let raw = STANDARD.decode(b64).map_err(|_| CryptoError::Corrupt)?;
        if raw.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Corrupt)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[test]
    fn values_round_trip_and_rotation_keeps_old_values_readable() {
        let old = Keys::parse(Some(&format!("k1:{K1}"))).unwrap();
        let sealed = old.seal("Jane Doe, jane@example.com");
        assert!(sealed.starts_with("enc:k1:") && !sealed.contains("jane"));
        assert_ne!(
            sealed,
            old.seal("Jane Doe, jane@example.com"),
            "random nonce"
        );
        let rotated = Keys::parse(Some(&format!("k2:{K2},k1:{K1}"))).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), "Jane Doe, jane@example.com");
        assert!(rotated.seal("x").starts_with("enc:k2:"));
        let only_new = Keys::parse(Some(&format!("k2:{K2}"))).unwrap();
        assert!(matches!(only_new.open(&sealed), Err(CryptoError::UnknownKey(k)) if k == "k1"));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(
            old.open(&tampered).is_err()
                || old.open(&tampered).unwrap() != "Jane Doe, jane@example.com"
        );
        assert_eq!(Keys::default().seal("plain"), "plain");
        assert_eq!(old.open("written before").unwrap(), "written before");
        assert!(Keys::parse(Some("k1:c2hvcnQ=")).is_err());
    }
}
