//! The ingest contract v1 (`SessionReportIngest`): typed reports and their validation. Everything the
//! JSON schema in `shared/contract/` accepts decodes here; everything it rejects fails with a reason a
//! human understands (`turns[0].role: unknown variant ...`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value};
use std::fmt;

/// Why a payload is not a valid v1 session report. Always goes to the dead-letter stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ContractError(pub String);

impl ContractError {
    fn at(path: impl fmt::Display, msg: impl fmt::Display) -> Self {
        ContractError(format!("{path}: {msg}"))
    }
}

/// A JSON path written out only when it is displayed (an error): validation runs on every report,
/// and most have nothing to report.
struct Lazy<F: Fn(&mut fmt::Formatter) -> fmt::Result>(F);

impl<F: Fn(&mut fmt::Formatter) -> fmt::Result> fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        (self.0)(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportType {
    Partial,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentType {
    SttInput,
    FullPreRnnoise,
    FullPostRnnoise,
    NearMiss,
}

impl SegmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentType::SttInput => "stt_input",
            SegmentType::FullPreRnnoise => "full_pre_rnnoise",
            SegmentType::FullPostRnnoise => "full_post_rnnoise",
            SegmentType::NearMiss => "near_miss",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Component {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Vad {
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub noise_suppression_enabled: Option<bool>,
    #[serde(default)]
    pub rnnoise_enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Pipeline {
    #[serde(default)]
    pub stt: Component,
    #[serde(default)]
    pub llm: Component,
    #[serde(default)]
    pub tts: Component,
    #[serde(default)]
    pub vad: Vad,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    pub close_reason: Option<String>,
    #[serde(default)]
    pub was_transferred: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Turn {
    #[serde(deserialize_with = "de_int")]
    pub index: i64,
    pub role: Role,
    pub content: String,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub start_ms: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub end_ms: Option<i64>,
    #[serde(default)]
    pub interrupted: Option<bool>,
    #[serde(default)]
    pub stt_confidence: Option<f64>,
    #[serde(default)]
    pub transcription_delay_ms: Option<f64>,
    #[serde(default)]
    pub end_of_turn_delay_ms: Option<f64>,
    #[serde(default)]
    pub llm_ttft_ms: Option<f64>,
    #[serde(default)]
    pub tts_ttfb_ms: Option<f64>,
    #[serde(default)]
    pub e2e_latency_ms: Option<f64>,
    /// Kept as the agent sent it (arguments and results are free-form); validated in `validate`.
    #[serde(default)]
    pub tool_calls: Option<Vec<Map<String, Value>>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    #[serde(deserialize_with = "de_int")]
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(deserialize_with = "de_int")]
    pub at_ms: i64,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub turn_index: Option<i64>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// Where a segment's audio is: exactly one form (schema `oneOf`).
#[derive(Debug, Clone, PartialEq)]
pub enum AudioRef {
    /// Another field of the same stream entry holds the raw WAV bytes.
    Field(String),
    /// Base64 WAV inside the JSON.
    B64(String),
    /// The agent already uploaded it.
    S3 { key: String, bucket: Option<String> },
    /// No audio.
    None,
}

impl AudioRef {
    pub fn source(&self) -> &'static str {
        match self {
            AudioRef::Field(_) => "field",
            AudioRef::B64(_) => "b64",
            AudioRef::S3 { .. } => "s3_key",
            AudioRef::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AudioSegment {
    pub segment_id: String,
    pub segment_type: SegmentType,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub turn_index: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub offset_ms: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub duration_ms: Option<i64>,
    #[serde(default, rename = "audio")]
    raw_audio: Option<Value>,
    #[serde(skip)]
    pub audio: Option<AudioRef>,
}

impl AudioSegment {
    /// The validated audio reference (`AudioRef::None` when absent or null).
    pub fn audio_ref(&self) -> &AudioRef {
        self.audio.as_ref().unwrap_or(&AudioRef::None)
    }
}

/// One session report as Atlas publishes it (schema v1), validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionReport {
    #[serde(deserialize_with = "de_int")]
    pub schema_version: i64,
    pub report_type: ReportType,
    #[serde(deserialize_with = "de_int")]
    pub seq: i64,
    pub call_id: String,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    pub tenant_id: String,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub channel_type: Option<String>,
    #[serde(default)]
    pub pipeline: Pipeline,
    #[serde(deserialize_with = "de_datetime")]
    pub started_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "de_opt_datetime")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub outcome: Outcome,
    #[serde(default)]
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub audio_segments: Vec<AudioSegment>,
}

impl SessionReport {
    pub fn is_final(&self) -> bool {
        self.report_type == ReportType::Final
    }
}

/// Decodes and validates one JSON payload.
pub fn decode_report(json: &[u8]) -> Result<SessionReport, ContractError> {
    let json = replace_nul_escapes(json);
    // The fast path: most payloads are valid. Only a failure is decoded again with the path
    // tracked (that wrapper costs on every field), for a reason that says where.
    if let Ok(mut report) = serde_json::from_slice::<SessionReport>(&json) {
        validate(&mut report)?;
        return Ok(report);
    }
    let mut de = serde_json::Deserializer::from_slice(&json);
    let mut report: SessionReport = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_syntax() || inner.is_eof() {
                ContractError(format!("payload is not valid JSON: {inner}"))
            } else if path == "." {
                ContractError(format!("report: {inner}"))
            } else {
                ContractError::at(&path, inner)
            });
        }
    };
    de.end()
        .map_err(|e| ContractError(format!("payload is not valid JSON: {e}")))?;
    validate(&mut report)?;
    Ok(report)
}

/// JSON allows `\u0000` in strings; PostgreSQL text and jsonb cannot hold it. It becomes U+FFFD (the
/// replacement character) before parsing, so such a report is stored instead of failing forever.
fn replace_nul_escapes(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const NUL: &[u8] = b"\\u0000";
    if !json.windows(NUL.len()).any(|w| w == NUL) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i..].starts_with(NUL) {
                out.extend_from_slice(b"\\ufffd");
                i += NUL.len();
            } else {
                // Any other escape pair (including an escaped backslash) is copied as is.
                out.extend_from_slice(&json[i..(i + 2).min(json.len())]);
                i += 2;
            }
        } else {
            out.push(json[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

fn check_len(
    path: impl fmt::Display,
    s: &str,
    min: usize,
    max: usize,
) -> Result<(), ContractError> {
    let n = s.chars().count();
    if n < min {
        return Err(ContractError::at(
            path,
            format!("must have at least {min} character(s), got {n}"),
        ));
    }
    if n > max {
        return Err(ContractError::at(
            path,
            format!("must have at most {max} characters, got {n}"),
        ));
    }
    Ok(())
}

fn check_opt_len(
    path: impl fmt::Display,
    s: &Option<String>,
    max: usize,
) -> Result<(), ContractError> {
    match s {
        Some(s) => check_len(path, s, 0, max),
        None => Ok(()),
    }
}

fn check_min_int(path: impl fmt::Display, v: i64) -> Result<(), ContractError> {
    if v < 0 {
        return Err(ContractError::at(path, format!("must be >= 0, got {v}")));
    }
    Ok(())
}

fn check_opt_min_int(path: impl fmt::Display, v: Option<i64>) -> Result<(), ContractError> {
    v.map_or(Ok(()), |v| check_min_int(path, v))
}

fn check_num(
    path: impl fmt::Display,
    v: Option<f64>,
    max: Option<f64>,
) -> Result<(), ContractError> {
    if let Some(v) = v {
        if v < 0.0 {
            return Err(ContractError::at(path, format!("must be >= 0, got {v}")));
        }
        if let Some(max) = max
            && v > max
        {
            return Err(ContractError::at(
                path,
                format!("must be <= {max}, got {v}"),
            ));
        }
    }
    Ok(())
}

fn check_max_items(path: impl fmt::Display, n: usize, max: usize) -> Result<(), ContractError> {
    if n > max {
        return Err(ContractError::at(
            path,
            format!("must have at most {max} items, got {n}"),
        ));
    }
    Ok(())
}

fn validate(r: &mut SessionReport) -> Result<(), ContractError> {
    if r.schema_version != 1 {
        return Err(ContractError::at(
            "schema_version",
            format!(
                "unsupported schema version {} (this service accepts 1)",
                r.schema_version
            ),
        ));
    }
    check_min_int("seq", r.seq)?;
    check_len("call_id", &r.call_id, 1, 128)?;
    check_len("tenant_id", &r.tenant_id, 1, 64)?;
    check_opt_len("room_id", &r.room_id, 128)?;
    check_opt_len("job_id", &r.job_id, 128)?;
    check_opt_len("agent_id", &r.agent_id, 128)?;
    check_opt_len("channel_type", &r.channel_type, 32)?;
    check_num(
        "pipeline.vad.threshold",
        r.pipeline.vad.threshold,
        Some(1.0),
    )?;
    check_num("duration_seconds", r.duration_seconds, None)?;
    check_max_items("turns", r.turns.len(), 5000)?;
    check_max_items("events", r.events.len(), 50000)?;
    check_max_items("audio_segments", r.audio_segments.len(), 5000)?;

    for (i, t) in r.turns.iter().enumerate() {
        let p = |f: &'static str| Lazy(move |w: &mut fmt::Formatter| write!(w, "turns[{i}].{f}"));
        check_min_int(p("index"), t.index)?;
        check_opt_min_int(p("start_ms"), t.start_ms)?;
        check_opt_min_int(p("end_ms"), t.end_ms)?;
        check_num(p("stt_confidence"), t.stt_confidence, Some(1.0))?;
        check_num(p("transcription_delay_ms"), t.transcription_delay_ms, None)?;
        check_num(p("end_of_turn_delay_ms"), t.end_of_turn_delay_ms, None)?;
        check_num(p("llm_ttft_ms"), t.llm_ttft_ms, None)?;
        check_num(p("tts_ttfb_ms"), t.tts_ttfb_ms, None)?;
        check_num(p("e2e_latency_ms"), t.e2e_latency_ms, None)?;
        for (j, call) in t.tool_calls.iter().flatten().enumerate() {
            let q = |f: &'static str| {
                Lazy(move |w: &mut fmt::Formatter| write!(w, "turns[{i}].tool_calls[{j}].{f}"))
            };
            match call.get("name") {
                Some(Value::String(_)) => {}
                Some(_) => return Err(ContractError::at(q("name"), "must be a string")),
                None => return Err(ContractError::at(q("name"), "is required")),
            }
            match call.get("error") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => return Err(ContractError::at(q("error"), "must be a string or null")),
            }
            match call.get("duration_ms") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) => check_num(q("duration_ms"), n.as_f64(), None)?,
                Some(_) => {
                    return Err(ContractError::at(
                        q("duration_ms"),
                        "must be a number or null",
                    ));
                }
            }
        }
    }
    for (i, e) in r.events.iter().enumerate() {
        let p = |f: &'static str| Lazy(move |w: &mut fmt::Formatter| write!(w, "events[{i}].{f}"));
        check_min_int(p("seq"), e.seq)?;
        check_len(p("type"), &e.event_type, 1, 64)?;
        check_min_int(p("at_ms"), e.at_ms)?;
        check_opt_min_int(p("turn_index"), e.turn_index)?;
    }
    for (i, s) in r.audio_segments.iter_mut().enumerate() {
        let p = |f: &'static str| {
            Lazy(move |w: &mut fmt::Formatter| write!(w, "audio_segments[{i}].{f}"))
        };
        check_len(p("segment_id"), &s.segment_id, 1, 128)?;
        check_opt_min_int(p("turn_index"), s.turn_index)?;
        check_opt_min_int(p("offset_ms"), s.offset_ms)?;
        check_opt_min_int(p("duration_ms"), s.duration_ms)?;
        s.audio = Some(parse_audio_ref(
            &p("audio").to_string(),
            s.raw_audio.take(),
        )?);
    }
    Ok(())
}

/// Applies the schema's `oneOf` over the four audio forms: exactly one must match.
fn parse_audio_ref(path: &str, v: Option<Value>) -> Result<AudioRef, ContractError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(AudioRef::None),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(ContractError::at(
                path,
                format!(
                    "must be an object ({{\"field\"}}, {{\"b64\"}} or {{\"s3_key\"}}) or null, got {}",
                    json_type(&other)
                ),
            ));
        }
    };
    let field = match obj.get("field") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let b64 = match obj.get("b64") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let s3 = match (obj.get("s3_key"), obj.get("bucket")) {
        (Some(Value::String(k)), None | Some(Value::Null)) => Some((k.clone(), None)),
        (Some(Value::String(k)), Some(Value::String(b))) => Some((k.clone(), Some(b.clone()))),
        _ => None,
    };
    let matched = field.is_some() as u8 + b64.is_some() as u8 + s3.is_some() as u8;
    match (matched, field, b64, s3) {
        (1, Some(f), _, _) => Ok(AudioRef::Field(f)),
        (1, _, Some(b), _) => Ok(AudioRef::B64(b)),
        (1, _, _, Some((key, bucket))) => Ok(AudioRef::S3 { key, bucket }),
        (0, ..) => Err(ContractError::at(
            path,
            "must have one of \"field\" (string), \"b64\" (string) or \"s3_key\" (string, with an optional string \"bucket\")",
        )),
        _ => Err(ContractError::at(
            path,
            "must have exactly one of \"field\", \"b64\" and \"s3_key\", got several",
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSON Schema's `integer`: any number with a zero fractional part (so `800.0` is an integer too).
struct IntVisitor;

impl de::Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v <= i64::MAX as f64 {
            Ok(v as i64)
        } else {
            Err(E::custom(format!("expected an integer, got {v}")))
        }
    }
}

fn de_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor)
}

fn de_opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct OptVisitor;
    impl<'de> de::Visitor<'de> for OptVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(IntVisitor).map(Some)
        }
    }
    d.deserialize_option(OptVisitor)
}

fn parse_datetime<E: de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            E::custom(format!(
                "{s:?} is not an RFC 3339 date-time ({e}); expected e.g. 2026-11-01T09:00:00Z"
            ))
        })
}

fn de_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
    parse_datetime(&s)
}

fn de_opt_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s: Option<std::borrow::Cow<'de, str>> = Deserialize::deserialize(d)?;
    s.map(|s| parse_datetime(&s)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"schema_version":1,"report_type":"final","seq":0,"call_id":"c","tenant_id":"t","started_at":"2026-11-01T09:00:00Z"{extra}}}"#
        )
    }

    #[test]
    fn integer_with_zero_fraction_is_an_integer() {
        let r = decode_report(
            minimal(r#","turns":[{"index":2.0,"role":"user","content":"hi","start_ms":800.0}]"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.turns[0].index, 2);
        assert_eq!(r.turns[0].start_ms, Some(800));
    }

    #[test]
    fn fractional_integer_is_rejected_with_its_path() {
        let err = decode_report(
            minimal(r#","turns":[{"index":2.5,"role":"user","content":"hi"}]"#).as_bytes(),
        )
        .unwrap_err();
        assert!(err.0.starts_with("turns[0].index"), "{err}");
    }

    #[test]
    fn unknown_fields_are_ignored_everywhere() {
        let r = decode_report(minimal(r#","x":1,"pipeline":{"stt":{"provider":"deepgram","y":2},"z":{}},"turns":[{"index":0,"role":"user","content":"","w":[1]}]"#).as_bytes()).unwrap();
        assert_eq!(r.pipeline.stt.provider.as_deref(), Some("deepgram"));
    }

    #[test]
    fn audio_must_be_exactly_one_form() {
        let two = minimal(
            r#","audio_segments":[{"segment_id":"s","segment_type":"stt_input","audio":{"field":"a","b64":"AA=="}}]"#,
        );
        let err = decode_report(two.as_bytes()).unwrap_err();
        assert!(err.0.contains("exactly one"), "{err}");
        let none = minimal(
            r#","audio_segments":[{"segment_id":"s","segment_type":"stt_input","audio":{}}]"#,
        );
        assert!(decode_report(none.as_bytes()).is_err());
        let field_and_bad_b64 = minimal(
            r#","audio_segments":[{"segment_id":"s","segment_type":"stt_input","audio":{"field":"a","b64":5}}]"#,
        );
        let r = decode_report(field_and_bad_b64.as_bytes()).unwrap();
        assert_eq!(
            r.audio_segments[0].audio_ref(),
            &AudioRef::Field("a".into())
        );
        let s3 = minimal(
            r#","audio_segments":[{"segment_id":"s","segment_type":"near_miss","audio":{"s3_key":"k","bucket":null}}]"#,
        );
        let r = decode_report(s3.as_bytes()).unwrap();
        assert_eq!(
            r.audio_segments[0].audio_ref(),
            &AudioRef::S3 {
                key: "k".into(),
                bucket: None
            }
        );
        let null = minimal(
            r#","audio_segments":[{"segment_id":"s","segment_type":"near_miss","audio":null}]"#,
        );
        assert_eq!(
            decode_report(null.as_bytes()).unwrap().audio_segments[0].audio_ref(),
            &AudioRef::None
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let call_id = "é".repeat(128);
        let ok = format!(
            r#"{{"schema_version":1,"report_type":"final","seq":0,"call_id":"{call_id}","tenant_id":"t","started_at":"2026-11-01T09:00:00Z"}}"#
        );
        assert!(decode_report(ok.as_bytes()).is_ok());
        let too_long = ok.replace(&call_id, &"é".repeat(129));
        assert!(
            decode_report(too_long.as_bytes())
                .unwrap_err()
                .0
                .starts_with("call_id")
        );
    }

    #[test]
    fn nul_escapes_become_replacement_characters_but_escaped_backslashes_stay() {
        let r = decode_report(
            minimal(r#","turns":[{"index":0,"role":"user","content":"a\u0000b \\u0000"}]"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.turns[0].content, "a\u{FFFD}b \\u0000");
    }

    #[test]
    fn trailing_garbage_is_not_json() {
        let err = decode_report(format!("{} x", minimal("")).as_bytes()).unwrap_err();
        assert!(err.0.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_name_the_field() {
        let err = decode_report(minimal(r#","pipeline":{"vad":{"threshold":1.5}}"#).as_bytes())
            .unwrap_err();
        assert!(err.0.starts_with("pipeline.vad.threshold"), "{err}");
        let err = decode_report(
            minimal(r#","turns":[{"index":0,"role":"user","content":"x","stt_confidence":-0.1}]"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(err.0.starts_with("turns[0].stt_confidence"), "{err}");
        let err = decode_report(minimal(r#","turns":[{"index":0,"role":"assistant","content":"x","tool_calls":[{"arguments":{}}]}]"#).as_bytes()).unwrap_err();
        assert!(err.0.starts_with("turns[0].tool_calls[0].name"), "{err}");
        let err = decode_report(
            minimal(
                r#","events":[{"seq":0,"type":"a","at_ms":1},{"seq":1,"type":"b","at_ms":-5}]"#,
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.0, "events[1].at_ms: must be >= 0, got -5");
    }
}
