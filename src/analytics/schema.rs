//! The analytics answer, schema version 1: its Rust shape, the strict JSON Schema sent to the LLM
//! (every object closed, every property required, optional values nullable), and validation of an
//! answer against it and its ranges (servers that accept `json_schema` but do not enforce it exist).

use super::profile::{FieldType, Profile};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub const SCHEMA_VERSION: i32 = 1;

pub const SENTIMENTS: [&str; 3] = ["positive", "neutral", "negative"];
pub const RESOLUTIONS: [&str; 3] = ["resolved", "escalated", "dropped"];

/// Built-in fields of the answer (profile fields may not reuse them).
pub const FIELD_NAMES: [&str; 16] = [
    "summary",
    "sentiment",
    "sentiment_score",
    "intent",
    "lead_score",
    "satisfaction",
    "escalated",
    "escalation_reason",
    "resolution",
    "topics",
    "action_items",
    "competitor_mentions",
    "tags",
    "entities",
    "next_action",
    "custom",
];

pub const SUMMARY_MAX_CHARS: usize = 240;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entities {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub topic: Option<String>,
}

/// One call's analytics as an analyzer answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub summary: String,
    pub sentiment: String,
    pub sentiment_score: f64,
    pub intent: String,
    pub lead_score: i32,
    pub satisfaction: i32,
    pub escalated: bool,
    pub escalation_reason: Option<String>,
    pub resolution: String,
    pub topics: Vec<String>,
    pub action_items: Vec<String>,
    pub competitor_mentions: Vec<String>,
    pub tags: Vec<String>,
    pub entities: Entities,
    pub next_action: Option<String>,
    pub custom: Map<String, Value>,
}

fn string_array(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "maxItems": 20, "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

/// The strict JSON Schema of the answer for a profile (OpenAI structured outputs rules).
pub fn json_schema(profile: &Profile) -> Value {
    let mut custom_props = Map::new();
    for f in &profile.fields {
        let t = match f.kind {
            FieldType::String => json!({"type": ["string", "null"]}),
            FieldType::Number => json!({"type": ["number", "null"]}),
            FieldType::Boolean => json!({"type": ["boolean", "null"]}),
            FieldType::Enum => {
                let mut values: Vec<Value> = f.values.iter().map(|v| json!(v)).collect();
                values.push(Value::Null);
                json!({"type": ["string", "null"], "enum": values})
            }
        };
        let mut t = t;
        if !f.description.is_empty() {
            t["description"] = json!(f.description);
        }
        custom_props.insert(f.name.clone(), t);
    }
    let custom_required: Vec<Value> = profile.fields.iter().map(|f| json!(f.name)).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": FIELD_NAMES,
        "properties": {
            "summary": {"type": "string", "description": "At most 240 characters."},
            "sentiment": {"type": "string", "enum": SENTIMENTS, "description": "The caller's overall sentiment."},
            "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1, "description": "The caller's sentiment, -1 (very negative) to 1 (very positive)."},
            "intent": {"type": "string", "enum": profile.intents, "description": "What the caller wanted."},
            "lead_score": {"type": "integer", "minimum": 0, "maximum": 100},
            "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5},
            "escalated": {"type": "boolean"},
            "escalation_reason": nullable_string("Why the call was escalated, or null."),
            "resolution": {"type": "string", "enum": RESOLUTIONS},
            "topics": string_array("Short topic labels."),
            "action_items": string_array("What someone must do after the call."),
            "competitor_mentions": string_array("Competitors the caller named."),
            "tags": string_array("Short labels for filtering."),
            "entities": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "email", "phone", "topic"],
                "properties": {
                    "name": nullable_string("The caller's name, or null."),
                    "email": nullable_string("The caller's email (a placeholder such as [EMAIL_1] if so written), or null."),
                    "phone": nullable_string("The caller's phone (a placeholder such as [PHONE_1] if so written), or null."),
                    "topic": nullable_string("The main topic, or null."),
                }
            },
            "next_action": nullable_string("The single next step, or null."),
            "custom": {
                "type": "object",
                "additionalProperties": false,
                "required": custom_required,
                "properties": custom_props,
            }
        }
    })
}

/// Checks an answer against the schema and ranges; every problem is named by its JSON path.
pub fn validate(v: &Value, profile: &Profile) -> Result<Analysis, Vec<String>> {
    let mut errors = Vec::new();
    let Some(obj) = v.as_object() else {
        return Err(vec!["$: the answer must be a JSON object".into()]);
    };
    for k in obj.keys() {
        if !FIELD_NAMES.contains(&k.as_str()) {
            errors.push(format!("$.{k}: unknown property"));
        }
    }
    let string = |name: &str, errors: &mut Vec<String>| -> String {
        match obj.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                errors.push(format!("$.{name}: expected a string, got {}", kind(other)));
                String::new()
            }
            None => {
                errors.push(format!("$.{name}: missing"));
                String::new()
            }
        }
    };
    let summary = string("summary", &mut errors);
    if summary.chars().count() > SUMMARY_MAX_CHARS {
        errors.push(format!(
            "$.summary: {} characters, at most {SUMMARY_MAX_CHARS} allowed",
            summary.chars().count()
        ));
    }
    let sentiment = string("sentiment", &mut errors);
    one_of("sentiment", &sentiment, &SENTIMENTS, &mut errors);
    let intent = string("intent", &mut errors);
    let intents: Vec<&str> = profile.intents.iter().map(String::as_str).collect();
    one_of("intent", &intent, &intents, &mut errors);
    let resolution = string("resolution", &mut errors);
    one_of("resolution", &resolution, &RESOLUTIONS, &mut errors);
    let sentiment_score = number(obj, "sentiment_score", -1.0, 1.0, false, &mut errors);
    let lead_score = number(obj, "lead_score", 0.0, 100.0, true, &mut errors) as i32;
    let satisfaction = number(obj, "satisfaction", 1.0, 5.0, true, &mut errors) as i32;
    let escalated = match obj.get("escalated") {
        Some(Value::Bool(b)) => *b,
        other => {
            errors.push(format!(
                "$.escalated: expected a boolean, got {}",
                other.map_or("nothing", kind)
            ));
            false
        }
    };
    let escalation_reason =
        opt_string(obj, "$.escalation_reason", "escalation_reason", &mut errors);
    let next_action = opt_string(obj, "$.next_action", "next_action", &mut errors);
    let topics = strings(obj, "topics", &mut errors);
    let action_items = strings(obj, "action_items", &mut errors);
    let competitor_mentions = strings(obj, "competitor_mentions", &mut errors);
    let tags = strings(obj, "tags", &mut errors);
    let mut entities = Entities::default();
    match obj.get("entities") {
        Some(Value::Object(e)) => {
            for k in e.keys() {
                if !["name", "email", "phone", "topic"].contains(&k.as_str()) {
                    errors.push(format!("$.entities.{k}: unknown property"));
                }
            }
            entities.name = opt_string(e, "$.entities.name", "name", &mut errors);
            entities.email = opt_string(e, "$.entities.email", "email", &mut errors);
            entities.phone = opt_string(e, "$.entities.phone", "phone", &mut errors);
            entities.topic = opt_string(e, "$.entities.topic", "topic", &mut errors);
        }
        other => errors.push(format!(
            "$.entities: expected an object, got {}",
            other.map_or("nothing", kind)
        )),
    }
    let mut custom = Map::new();
    match obj.get("custom") {
        Some(Value::Object(c)) => {
            for k in c.keys() {
                if !profile.fields.iter().any(|f| &f.name == k) {
                    errors.push(format!("$.custom.{k}: unknown property"));
                }
            }
            for f in &profile.fields {
                let path = format!("$.custom.{}", f.name);
                let v = c.get(&f.name);
                let ok = match (v, &f.kind) {
                    (None, _) => {
                        errors.push(format!("{path}: missing"));
                        continue;
                    }
                    (Some(Value::Null), _) => true,
                    (Some(Value::String(_)), FieldType::String) => true,
                    (Some(Value::Number(_)), FieldType::Number) => true,
                    (Some(Value::Bool(_)), FieldType::Boolean) => true,
                    (Some(Value::String(s)), FieldType::Enum) => {
                        if !f.values.contains(s) {
                            errors.push(format!("{path}: {s:?} is not one of {:?}", f.values));
                        }
                        true
                    }
                    _ => false,
                };
                if !ok {
                    errors.push(format!(
                        "{path}: expected {:?}, got {}",
                        f.kind,
                        v.map_or("nothing", kind)
                    ));
                }
                if let Some(v) = v {
                    custom.insert(f.name.clone(), v.clone());
                }
            }
        }
        other => errors.push(format!(
            "$.custom: expected an object, got {}",
            other.map_or("nothing", kind)
        )),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Analysis {
        summary,
        sentiment,
        sentiment_score,
        intent,
        lead_score,
        satisfaction,
        escalated,
        escalation_reason,
        resolution,
        topics,
        action_items,
        competitor_mentions,
        tags,
        entities,
        next_action,
        custom,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn one_of(name: &str, value: &str, allowed: &[&str], errors: &mut Vec<String>) {
    if !value.is_empty() && !allowed.contains(&value) {
        errors.push(format!("$.{name}: {value:?} is not one of {allowed:?}"));
    }
}

fn number(
    obj: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
    integer: bool,
    errors: &mut Vec<String>,
) -> f64 {
    let Some(v) = obj.get(name) else {
        errors.push(format!("$.{name}: missing"));
        return min;
    };
    let Some(n) = v.as_f64() else {
        errors.push(format!("$.{name}: expected a number, got {}", kind(v)));
        return min;
    };
    if integer && n.fract() != 0.0 {
        errors.push(format!("$.{name}: {n} is not an integer"));
    }
    if !(min..=max).contains(&n) {
        errors.push(format!("$.{name}: {n} is outside {min}..{max}"));
        return min;
    }
    n
}

fn opt_string(
    obj: &Map<String, Value>,
    path: &str,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match obj.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) => None,
        Some(other) => {
            errors.push(format!(
                "{path}: expected a string or null, got {}",
                kind(other)
            ));
            None
        }
        None => {
            errors.push(format!("{path}: missing"));
            None
        }
    }
}

fn strings(obj: &Map<String, Value>, name: &str, errors: &mut Vec<String>) -> Vec<String> {
    match obj.get(name) {
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => errors.push(format!(
                        "$.{name}[{i}]: expected a string, got {}",
                        kind(other)
                    )),
                }
            }
            if out.len() > 20 {
                errors.push(format!("$.{name}: {} items, at most 20 allowed", out.len()));
            }
            out
        }
        other => {
            errors.push(format!(
                "$.{name}: expected an array of strings, got {}",
                other.map_or("nothing", kind)
            ));
            Vec::new()
        }
    }
}

/// Checks that a schema follows the strict-mode rules (every object closed, every property
/// required, no unsupported keywords): what OpenAI refuses with a 400, checked by the fake too.
pub fn strict_violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "$", &mut out);
    out
}

fn walk(s: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = s.as_object() else {
        return;
    };
    for bad in ["allOf", "not", "if", "then", "else", "oneOf"] {
        if obj.contains_key(bad) {
            out.push(format!("{path}: {bad} is not supported in strict mode"));
        }
    }
    let is_object = match obj.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    if is_object {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            out.push(format!("{path}: additionalProperties must be false"));
        }
        let props = obj.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = props {
            for (k, v) in props {
                if !required.contains(&k.as_str()) {
                    out.push(format!("{path}.{k}: every property must be required"));
                }
                walk(v, &format!("{path}.{k}"), out);
            }
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), out);
    }
    if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
        for (i, v) in any.iter().enumerate() {
            walk(v, &format!("{path}.anyOf[{i}]"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::profile::Profiles;

    fn good() -> Value {
        json!({
            "summary": "Caller moved an appointment.", "sentiment": "positive", "sentiment_score": 0.6,
            "intent": "booking", "lead_score": 40, "satisfaction": 4, "escalated": false,
            "escalation_reason": null, "resolution": "resolved", "topics": ["appointment"],
            "action_items": [], "competitor_mentions": [], "tags": ["booking"],
            "entities": {"name": null, "email": "[EMAIL_1]", "phone": null, "topic": "appointment"},
            "next_action": null, "custom": {}
        })
    }

    #[test]
    fn the_schema_is_strict_for_every_profile() {
        let p = Profiles::parse(
            "[[default.fields]]\nname = \"plan\"\ntype = \"enum\"\nvalues = [\"a\"]\n[[default.fields]]\nname = \"n\"\ntype = \"number\"",
        )
        .unwrap();
        let schema = json_schema(p.for_agent(None));
        assert_eq!(strict_violations(&schema), Vec::<String>::new());
        assert_eq!(
            strict_violations(&json!({"type": "object", "properties": {"a": {"type": "string"}}})),
            [
                "$: additionalProperties must be false",
                "$.a: every property must be required"
            ]
        );
    }

    #[test]
    fn answers_are_validated_with_paths_and_ranges() {
        let profiles = Profiles::default();
        let p = profiles.for_agent(None);
        let a = validate(&good(), p).unwrap();
        assert_eq!(a.entities.email.as_deref(), Some("[EMAIL_1]"));
        let mut bad = good();
        bad["lead_score"] = json!(140);
        bad["sentiment"] = json!("happy");
        bad["summary"] = json!("x".repeat(241));
        bad["entities"]["age"] = json!(3);
        bad.as_object_mut().unwrap().remove("tags");
        let errors = validate(&bad, p).unwrap_err();
        assert!(
            errors.contains(&"$.lead_score: 140 is outside 0..100".to_string()),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("$.sentiment: \"happy\"")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("$.summary: 241")),
            "{errors:?}"
        );
        assert!(errors.contains(&"$.entities.age: unknown property".to_string()));
        assert!(
            errors.iter().any(|e| e.starts_with("$.tags: expected")),
            "{errors:?}"
        );
        assert!(validate(&json!([1]), p).is_err());
    }
}
