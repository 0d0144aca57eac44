//! Stream entries: the raw fields of one XADD and their decoding into a validated report
//! (`payload`, optional `payload_encoding gzip`, `audio:<segment_id>` fields).

use super::contract::{ContractError, SessionReport, decode_report};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

/// One stream entry as read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub id: String,
    /// `None` when the entry was deleted (trimmed) while pending.
    pub fields: Option<Vec<(String, Vec<u8>)>>,
    /// Times it was delivered, from XPENDING (1 for a first delivery).
    pub deliveries: u64,
}

impl RawEntry {
    pub fn size_bytes(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// A valid entry: the report and the entry's other fields (audio bytes by field name).
#[derive(Debug)]
pub struct DecodedEntry {
    pub entry_id: String,
    pub report: SessionReport,
    /// Shared, not copied: a segment's bytes go to the decoder and the store without a copy.
    pub fields: HashMap<String, Arc<Vec<u8>>>,
}

/// Decodes an entry's payload and validates it against contract v1. On failure the entry comes back
/// untouched with the dead-letter reason (its original fields go to the DLQ as they were).
pub fn decode_entry(
    entry: RawEntry,
    max_payload_bytes: usize,
) -> Result<DecodedEntry, (RawEntry, ContractError)> {
    match decode_payload(&entry, max_payload_bytes) {
        Ok(report) => {
            let fields = entry
                .fields
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != "payload" && k != "payload_encoding")
                .map(|(k, v)| (k, Arc::new(v)))
                .collect();
            Ok(DecodedEntry {
                entry_id: entry.id,
                report,
                fields,
            })
        }
        Err(e) => Err((entry, e)),
    }
}

fn field<'a>(entry: &'a RawEntry, name: &str) -> Option<&'a [u8]> {
    entry
        .fields
        .as_ref()?
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn decode_payload(
    entry: &RawEntry,
    max_payload_bytes: usize,
) -> Result<SessionReport, ContractError> {
    let payload = field(entry, "payload")
        .ok_or_else(|| ContractError("entry has no `payload` field".into()))?;
    match field(entry, "payload_encoding") {
        None | Some(b"") | Some(b"identity") | Some(b"json") => {
            if payload.len() > max_payload_bytes {
                return Err(ContractError(format!(
                    "payload is {} bytes, over the {max_payload_bytes}-byte limit",
                    payload.len()
                )));
            }
            decode_report(payload)
        }
        Some(b"gzip") => decode_report(&gunzip(payload, max_payload_bytes)?),
        Some(other) => Err(ContractError(format!(
            "unsupported payload_encoding {:?} (supported: gzip)",
            String::from_utf8_lossy(other)
        ))),
    }
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ContractError> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ContractError(format!(
                "payload_encoding is gzip but the payload does not gunzip: {e}"
            ))
        })?;
    if out.len() > limit {
        return Err(ContractError(format!(
            "gzip payload inflates to more than the {limit}-byte limit"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MINIMAL: &str = r#"{"schema_version":1,"report_type":"final","seq":0,"call_id":"c","tenant_id":"t","started_at":"2026-11-01T09:00:00Z"}"#;

    fn entry(fields: &[(&str, &[u8])]) -> RawEntry {
        RawEntry {
            id: "1-0".into(),
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
            ),
            deliveries: 1,
        }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_payload_decodes() {
        let d = decode_entry(
            entry(&[
                ("payload", &gzip(MINIMAL.as_bytes())),
                ("payload_encoding", b"gzip"),
            ]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(d.report.call_id, "c");
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let big = vec![b' '; 2 << 20];
        let err = decode_entry(
            entry(&[("payload", &gzip(&big)), ("payload_encoding", b"gzip")]),
            1 << 20,
        )
        .unwrap_err()
        .1;
        assert!(err.0.contains("limit"), "{err}");
    }

    #[test]
    fn missing_payload_and_unknown_encoding_have_reasons() {
        assert!(
            decode_entry(entry(&[("x", b"y")]), 1 << 20)
                .unwrap_err()
                .1
                .0
                .contains("no `payload`")
        );
        let err = decode_entry(
            entry(&[("payload", MINIMAL.as_bytes()), ("payload_encoding", b"br")]),
            1 << 20,
        )
        .unwrap_err()
        .1;
        assert!(err.0.contains("unsupported payload_encoding"), "{err}");
        let err = decode_entry(
            entry(&[
                ("payload", MINIMAL.as_bytes()),
                ("payload_encoding", b"gzip"),
            ]),
            1 << 20,
        )
        .unwrap_err()
        .1;
        assert!(err.0.contains("does not gunzip"), "{err}");
    }

    #[test]
    fn audio_fields_are_kept() {
        let d = decode_entry(
            entry(&[("payload", MINIMAL.as_bytes()), ("audio:s1", b"RIFF")]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            d.fields.get("audio:s1").map(|v| v.as_slice()),
            Some(&b"RIFF"[..])
        );
    }
}
