//! Parsing of the stream replies we use (XREADGROUP, XAUTOCLAIM, XPENDING, XINFO CONSUMERS/GROUPS) from raw
//! `redis::Value`s, in RESP2 and RESP3 shapes, keeping field values as bytes (WAV audio is binary).

use super::entry::RawEntry;
use redis::Value;

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn into_items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Attribute { data, .. } => into_items(*data),
        _ => Vec::new(),
    }
}

/// `[id, [field, value, ...] | nil]` → entry.
fn parse_entry(v: Value) -> Option<RawEntry> {
    let mut parts = into_items(v).into_iter();
    let id = text(&parts.next()?)?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => None,
        Some(list) => {
            let mut items = into_items(list).into_iter();
            let mut fields = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                let key = text(&k).unwrap_or_default();
                let value = match v {
                    Value::BulkString(b) => b,
                    other => text(&other).unwrap_or_default().into_bytes(),
                };
                fields.push((key, value));
            }
            Some(fields)
        }
    };
    Some(RawEntry {
        id,
        fields,
        deliveries: 1,
    })
}

fn parse_entry_list(v: Value) -> Vec<RawEntry> {
    into_items(v).into_iter().filter_map(parse_entry).collect()
}

/// XREADGROUP reply for one stream: nil (timeout) or `[[stream, [entries...]]]` / `{stream: [entries]}`.
pub fn parse_read_reply(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Nil => Vec::new(),
        Value::Map(m) => m
            .into_iter()
            .flat_map(|(_, entries)| parse_entry_list(entries))
            .collect(),
        other => into_items(other)
            .into_iter()
            .flat_map(|stream| {
                let mut parts = into_items(stream).into_iter();
                let _name = parts.next();
                parts.next().map(parse_entry_list).unwrap_or_default()
            })
            .collect(),
    }
}

/// XAUTOCLAIM reply: `[next_cursor, [entries...], [deleted ids...]]`.
pub fn parse_autoclaim_reply(v: Value) -> (String, Vec<RawEntry>, Vec<String>) {
    let mut parts = into_items(v).into_iter();
    let cursor = parts
        .next()
        .and_then(|c| text(&c))
        .unwrap_or_else(|| "0-0".into());
    let entries = parts.next().map(parse_entry_list).unwrap_or_default();
    let deleted = parts
        .next()
        .map(|d| into_items(d).iter().filter_map(text).collect())
        .unwrap_or_default();
    (cursor, entries, deleted)
}

/// Extended XPENDING reply: `[[id, consumer, idle_ms, deliveries], ...]` → (id, deliveries).
pub fn parse_pending_counts(v: Value) -> Vec<(String, u64)> {
    into_items(v)
        .into_iter()
        .filter_map(|row| {
            let row = into_items(row);
            Some((text(row.first()?)?, int(row.get(3)?)?.max(0) as u64))
        })
        .collect()
}

/// The `name → value` pairs of one XINFO reply item (RESP2 flat list or RESP3 map).
fn fields(item: Value) -> Vec<(String, Value)> {
    let items = into_items(item);
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let Some(k) = text(&k) {
            out.push((k, v));
        }
    }
    out
}

/// One consumer of XINFO CONSUMERS.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: i64,
    pub idle_ms: i64,
}

pub fn parse_consumers(v: Value) -> Vec<ConsumerInfo> {
    into_items(v)
        .into_iter()
        .filter_map(|c| {
            let mut info = ConsumerInfo {
                name: String::new(),
                pending: 0,
                idle_ms: 0,
            };
            for (k, v) in fields(c) {
                match k.as_str() {
                    "name" => info.name = text(&v)?,
                    "pending" => info.pending = int(&v)?,
                    "idle" => info.idle_ms = int(&v)?,
                    _ => {}
                }
            }
            (!info.name.is_empty()).then_some(info)
        })
        .collect()
}

/// One consumer group of XINFO GROUPS.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub name: String,
    /// Delivered, not yet acknowledged.
    pub pending: i64,
    /// Entries read by the group (Redis ≥ 7).
    pub entries_read: Option<i64>,
    /// Entries not yet delivered to the group (Redis ≥ 7; null when Redis cannot tell).
    pub lag: Option<i64>,
}

pub fn parse_groups(v: Value) -> Vec<GroupInfo> {
    into_items(v)
        .into_iter()
        .filter_map(|g| {
            let mut info = GroupInfo {
                name: String::new(),
                pending: 0,
                entries_read: None,
                lag: None,
            };
            for (k, v) in fields(g) {
                match k.as_str() {
                    "name" => info.name = text(&v)?,
                    "pending" => info.pending = int(&v)?,
                    "entries-read" => info.entries_read = int(&v),
                    "lag" => info.lag = int(&v),
                    _ => {}
                }
            }
            (!info.name.is_empty()).then_some(info)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn read_reply_keeps_binary_values_and_deleted_entries() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"audio:x"), bulk(&[0, 255, 1])]),
                ]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
            ]),
        ])]);
        let e = parse_read_reply(v);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].fields.as_ref().unwrap()[0],
            ("audio:x".to_string(), vec![0, 255, 1])
        );
        assert_eq!(e[1].fields, None);
        assert!(parse_read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn resp3_map_reply_parses() {
        let v = Value::Map(vec![(
            bulk(b"s"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"payload"), bulk(b"{}")]),
            ])]),
        )]);
        assert_eq!(parse_read_reply(v)[0].id, "1-0");
    }

    #[test]
    fn consumers_and_pending_parse() {
        let c = Value::Array(vec![Value::Array(vec![
            bulk(b"name"),
            bulk(b"c1"),
            bulk(b"pending"),
            Value::Int(2),
            bulk(b"idle"),
            Value::Int(99),
        ])]);
        assert_eq!(
            parse_consumers(c),
            vec![ConsumerInfo {
                name: "c1".into(),
                pending: 2,
                idle_ms: 99
            }]
        );
        let p = Value::Array(vec![Value::Array(vec![
            bulk(b"1-0"),
            bulk(b"c1"),
            Value::Int(5),
            Value::Int(3),
        ])]);
        assert_eq!(parse_pending_counts(p), vec![("1-0".to_string(), 3)]);
    }
}
