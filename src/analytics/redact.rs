//! PII redaction before any text leaves the process: card numbers (Luhn, with card-like grouping or a
//! context word), US SSNs, emails, phone numbers and IBANs (mod-97) become numbered placeholders
//! (`[CARD_1]`, `[SSN_1]`, `[EMAIL_1]`, `[PHONE_1]`, `[IBAN_1]`; per call, the same value the same
//! number), spoken forms included ("four one five …", "john at example dot com"). The map stays in
//! memory so placeholders the LLM returns are restored before storing.

use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Kinds of personal data recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Card,
    Ssn,
    Email,
    Phone,
    Iban,
}

impl PiiKind {
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Card => "CARD",
            PiiKind::Ssn => "SSN",
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Iban => "IBAN",
        }
    }
}

/// One call's placeholders: each distinct value gets one number per kind.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    by_value: HashMap<(PiiKind, String), String>,
    values: HashMap<String, String>,
    counts: HashMap<PiiKind, usize>,
}

/// A word or symbol of the original text, with what the recognisers read for it.
struct Token {
    start: usize,
    end: usize,
    norm: String,
    /// No whitespace between this token and the previous one in the original.
    glued: bool,
}

fn digit_word(w: &str) -> Option<char> {
    Some(match w {
        "zero" => '0',
        "one" => '1',
        "two" => '2',
        "three" => '3',
        "four" => '4',
        "five" => '5',
        "six" => '6',
        "seven" => '7',
        "eight" => '8',
        "nine" => '9',
        _ => return None,
    })
}

/// Splits into words (letters, digits, apostrophes) and single symbols, lowercased, normalising
/// spoken numbers: number words become digits ("double five" → "55", "oh" between digits → "0"),
/// "plus" before digits → "+". Spoken "at"/"dot" stay words: the spoken email pattern reads them.
fn tokens(text: &str) -> Vec<Token> {
    let mut raw: Vec<(usize, usize)> = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '\'' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '\'' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            raw.push((i, end));
        } else {
            raw.push((i, i + c.len_utf8()));
        }
    }
    let lower: Vec<String> = raw
        .iter()
        .map(|&(s, e)| text[s..e].to_lowercase())
        .collect();
    let is_digitish = |k: usize| {
        lower.get(k).is_some_and(|w| {
            digit_word(w).is_some() || w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty()
        })
    };
    // A spoken group may end in "oh" or begin with "double"/"triple" ("five five five, oh one …").
    let is_group_edge = |k: usize| {
        is_digitish(k)
            || lower
                .get(k)
                .is_some_and(|w| matches!(w.as_str(), "oh" | "o" | "double" | "triple"))
    };
    // The neighbour of token `k` on one side, stepping over one comma ("five, oh one").
    let beyond_comma = |k: usize, forward: bool| -> Option<usize> {
        let n = if forward {
            k.checked_add(1)?
        } else {
            k.checked_sub(1)?
        };
        if lower.get(n).is_some_and(|w| w == ",") {
            if forward {
                n.checked_add(1)
            } else {
                n.checked_sub(1)
            }
        } else {
            Some(n)
        }
    };
    let glued = |k: usize| k > 0 && raw[k - 1].1 == raw[k].0;
    let mut out = Vec::with_capacity(raw.len());
    let mut k = 0;
    while k < raw.len() {
        let (start, end) = raw[k];
        let w = lower[k].as_str();
        let repeat = match w {
            "double" => 2,
            "triple" => 3,
            _ => 1,
        };
        if repeat > 1
            && let Some(d) = lower.get(k + 1).and_then(|n| digit_word(n))
        {
            out.push(Token {
                start,
                end: raw[k + 1].1,
                norm: std::iter::repeat_n(d, repeat).collect(),
                glued: glued(k),
            });
            k += 2;
            continue;
        }
        let norm = if let Some(d) = digit_word(w) {
            d.to_string()
        } else if (w == "oh" || w == "o")
            && (beyond_comma(k, false).is_some_and(is_digitish)
                || beyond_comma(k, true).is_some_and(is_digitish))
        {
            "0".into()
        } else if w == "," && k > 0 && is_group_edge(k - 1) && is_group_edge(k + 1) {
            // Spoken digit groups are written with commas ("four one five, five five five, …"):
            // between digits a comma separates groups like a dash does.
            "-".into()
        } else {
            match w {
                "hyphen" => "dash".into(),
                "plus" if is_digitish(k + 1) => "+".into(),
                _ => w.to_string(),
            }
        };
        out.push(Token {
            start,
            end,
            norm,
            glued: glued(k),
        });
        k += 1;
    }
    out
}

/// The normalised text with, per byte, the token it came from (`None` for separators).
struct Normalised {
    text: String,
    token_of: Vec<Option<usize>>,
}

fn normalise(tokens: &[Token]) -> Normalised {
    let mut text = String::new();
    let mut token_of = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 && !t.glued {
            text.push(' ');
            token_of.push(None);
        }
        text.push_str(&t.norm);
        token_of.extend(std::iter::repeat_n(Some(i), t.norm.len()));
    }
    Normalised { text, token_of }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// "john dot smith at example dot com" (written dots may be mixed in: "at example.com").
static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b[a-z0-9][a-z0-9_%+]*(?:(?: dot | underscore | dash |[._-])[a-z0-9_%+]+)* at [a-z0-9][a-z0-9-]*(?:(?: dot |\.)[a-z0-9][a-z0-9-]*)*(?: dot |\.)[a-z]{2,24}\b",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[a-z] ?[a-z] ?[0-9] ?[0-9](?: ?[a-z0-9]){10,30}\b")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// Digits with single separators between groups, optionally a leading `+`.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+ ?)?\(? ?[0-9]+(?: ?[-./)]? ?\(? ?[0-9]+)*")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// IBAN lengths per country (ISO 13616 registry).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        _ => return None,
    })
}

pub fn iban_valid(iban: &str) -> bool {
    let iban: String = iban
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if iban.len() < 5 || !iban.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    if iban_length(&iban[..2]) != Some(iban.len())
        || !iban[2..4].chars().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        for d in v.to_string().chars() {
            rem = (rem * 10 + d.to_digit(10).unwrap_or(0)) % 97;
        }
    }
    rem == 1
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn_valid(d: &str) -> bool {
    if d.len() != 9 || !d.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// North American numbering: area and exchange codes start with 2–9.
fn nanp_valid(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10 && (b'2'..=b'9').contains(&b[0]) && (b'2'..=b'9').contains(&b[3])
}

fn context_before(text: &str, at: usize, words: &[&str]) -> bool {
    let mut from = at.saturating_sub(48);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let window = &text[from..at];
    words.iter().any(|w| window.contains(w))
}

const CARD_CONTEXT: &[&str] = &[
    "card",
    "visa",
    "mastercard",
    "amex",
    "american express",
    "discover",
    "credit",
    "debit",
    "number",
    "cc ",
];
const SSN_CONTEXT: &[&str] = &["social", "ssn", "security number", "taxpayer"];
const PHONE_CONTEXT: &[&str] = &["phone", "call", "cell", "mobile", "number", "reach", "text"];

/// What a run of digits is, if anything personal.
fn classify_digits(text: &str, at: usize, run: &str) -> Option<(PiiKind, String)> {
    let plus = run.trim_start().starts_with('+');
    let digits: String = run.chars().filter(char::is_ascii_digit).collect();
    let groups: Vec<usize> = run
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    // Dates and times (2026-11-01, 2026 11 01) are never cards or phones.
    let date_like = groups.len() >= 3
        && groups[0] == 4
        && (digits.starts_with("19") || digits.starts_with("20"))
        && groups[1..].iter().all(|&g| g <= 2);
    if date_like {
        return None;
    }
    let n = digits.len();
    if (13..=19).contains(&n) && !plus && luhn_valid(&digits) {
        let card_grouping = matches!(
            groups.as_slice(),
            [4, 4, 4, 4] | [4, 6, 5] | [4, 6, 4] | [4, 4, 4, 4, 3]
        );
        if card_grouping || context_before(text, at, CARD_CONTEXT) {
            return Some((PiiKind::Card, digits));
        }
    }
    if n == 9 && !plus && ssn_valid(&digits) {
        let ssn_grouping = groups.as_slice() == [3, 2, 4];
        if ssn_grouping && run.contains('-') || context_before(text, at, SSN_CONTEXT) {
            return Some((PiiKind::Ssn, digits));
        }
    }
    let phone = if plus {
        (8..=15).contains(&n).then(|| format!("+{digits}"))
    } else if n == 10 && nanp_valid(&digits) {
        Some(format!("+1{digits}"))
    } else if n == 11 && digits.starts_with('1') && nanp_valid(&digits[1..]) {
        Some(format!("+{digits}"))
    } else if n == 7
        && (b'2'..=b'9').contains(&digits.as_bytes()[0])
        && context_before(text, at, PHONE_CONTEXT)
    {
        Some(digits.clone())
    } else {
        None
    };
    phone.map(|p| (PiiKind::Phone, p))
}

/// A recognised value: normalised byte range and canonical value.
struct Found {
    from: usize,
    to: usize,
    kind: PiiKind,
    value: String,
}

fn recognise(norm: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    let free = |found: &[Found], a: usize, b: usize| found.iter().all(|f| b <= f.from || a >= f.to);
    for m in EMAIL.find_iter(norm) {
        found.push(Found {
            from: m.start(),
            to: m.end(),
            kind: PiiKind::Email,
            value: m.as_str().to_string(),
        });
    }
    for m in SPOKEN_EMAIL.find_iter(norm) {
        if !free(&found, m.start(), m.end()) {
            continue;
        }
        let value = m
            .as_str()
            .replace(" dot ", ".")
            .replace(" at ", "@")
            .replace(" underscore ", "_")
            .replace(" dash ", "-");
        found.push(Found {
            from: m.start(),
            to: m.end(),
            kind: PiiKind::Email,
            value,
        });
    }
    for m in IBAN.find_iter(norm) {
        let compact: String = m
            .as_str()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        // The regex is greedy: try the longest valid prefix (a sentence may go on after the IBAN).
        let valid = (15..=compact.len().min(34))
            .rev()
            .find(|&len| iban_valid(&compact[..len]));
        if let Some(len) = valid
            && free(&found, m.start(), m.end())
        {
            // Map the prefix length back onto the normalised span.
            let mut seen = 0;
            let mut end = m.start();
            for (i, c) in m.as_str().char_indices() {
                if !c.is_whitespace() {
                    seen += 1;
                }
                if seen == len {
                    end = m.start() + i + c.len_utf8();
                    break;
                }
            }
            found.push(Found {
                from: m.start(),
                to: end,
                kind: PiiKind::Iban,
                value: compact[..len].to_string(),
            });
        }
    }
    for m in DIGIT_RUN.find_iter(norm) {
        let run = m.as_str().trim_end_matches([' ', '-', '.', '/', '(']);
        let (from, to) = (m.start(), m.start() + run.len());
        if !free(&found, from, to) {
            continue;
        }
        if let Some((kind, value)) = classify_digits(norm, from, run) {
            found.push(Found {
                from,
                to,
                kind,
                value,
            });
        }
    }
    found.sort_by_key(|f| f.from);
    found
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    fn placeholder(&mut self, kind: PiiKind, value: String) -> String {
        if let Some(p) = self.by_value.get(&(kind, value.clone())) {
            return p.clone();
        }
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        let p = format!("[{}_{}]", kind.label(), n);
        self.by_value.insert((kind, value.clone()), p.clone());
        self.values.insert(p.clone(), value);
        p
    }

    /// `text` with every recognised value replaced by its placeholder.
    pub fn redact(&mut self, text: &str) -> String {
        let toks = tokens(text);
        let norm = normalise(&toks);
        let found = recognise(&norm.text);
        if found.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in found {
            let first = norm.token_of[f.from..f.to].iter().flatten().next().copied();
            let final_ = norm.token_of[f.from..f.to]
                .iter()
                .rev()
                .flatten()
                .next()
                .copied();
            let (Some(a), Some(b)) = (first, final_) else {
                continue;
            };
            let (start, end) = (toks[a].start, toks[b].end);
            if start < last {
                continue;
            }
            out.push_str(&text[last..start]);
            out.push_str(&self.placeholder(f.kind, f.value));
            last = end;
        }
        out.push_str(&text[last..]);
        out
    }

    /// Placeholders in `text` replaced by the values they stand for.
    pub fn restore(&self, text: &str) -> String {
        if !text.contains('[') {
            return text.to_string();
        }
        static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"\[(?:CARD|SSN|EMAIL|PHONE|IBAN)_[0-9]+\]")
                .unwrap_or_else(|e| unreachable!("static regex: {e}"))
        });
        PLACEHOLDER
            .replace_all(text, |c: &regex::Captures<'_>| {
                self.values
                    .get(&c[0])
                    .cloned()
                    .unwrap_or_else(|| c[0].to_string())
            })
            .into_owned()
    }

    /// Restores every string inside a JSON value.
    pub fn restore_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.restore(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.restore_json(i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| self.restore_json(i)),
            _ => {}
        }
    }

    /// How many distinct values of each kind were replaced.
    pub fn counts(&self) -> Vec<(PiiKind, usize)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort();
        v
    }

    /// The original values (for tests asserting none of them left the process).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(text: &str) -> String {
        Redactor::new().redact(text)
    }

    #[test]
    fn every_kind_is_replaced_in_written_form() {
        assert_eq!(
            red("my card is 4111 1111 1111 1111 thanks"),
            "my card is [CARD_1] thanks"
        );
        assert_eq!(red("SSN 123-45-6789."), "SSN [SSN_1].");
        assert_eq!(
            red("mail me at John.Smith@Example.com"),
            "mail me at [EMAIL_1]"
        );
        assert_eq!(red("call (415) 555-0134 today"), "call [PHONE_1] today");
        assert_eq!(red("or +44 20 7946 0958"), "or [PHONE_1]");
        assert_eq!(
            red("IBAN GB82 WEST 1234 5698 7654 32 please"),
            "IBAN [IBAN_1] please"
        );
        assert_eq!(red("DE89370400440532013000"), "[IBAN_1]");
    }

    #[test]
    fn spoken_forms_are_recognised() {
        assert_eq!(
            red("it's four one five five five five zero one three four"),
            "it's [PHONE_1]"
        );
        assert_eq!(red("john at example dot com"), "[EMAIL_1]");
        assert_eq!(
            red("jane dot doe at mail dot co dot uk is mine"),
            "[EMAIL_1] is mine"
        );
        assert_eq!(
            red("card number four one one one one one one one one one one one one one one one"),
            "card number [CARD_1]"
        );
        assert_eq!(
            red("my social is one two three four five six seven eight nine"),
            "my social is [SSN_1]"
        );
        assert_eq!(
            red("four one five double five five oh one three four"),
            "[PHONE_1]"
        );
    }

    #[test]
    fn spoken_phone_numbers_in_comma_separated_groups_are_recognised() {
        // The forms speech-to-text writes for a caller reading out a number.
        for (text, expected) in [
            (
                "my number is four one five, five five five, zero one nine eight",
                "my number is [PHONE_1]",
            ),
            (
                "my number is four one five, five five five, zero one nine eight.",
                "my number is [PHONE_1].",
            ),
            (
                "it's four one five, five five five, oh one nine eight thanks",
                "it's [PHONE_1] thanks",
            ),
            (
                "four one five, double five five, oh one nine eight",
                "[PHONE_1]",
            ),
            (
                "call me on four one five, 555, 0198 please",
                "call me on [PHONE_1] please",
            ),
            (
                "reach me at 415 five five five 0198",
                "reach me at [PHONE_1]",
            ),
            (
                "it is four one five five five five, oh, one nine eight",
                "it is [PHONE_1]",
            ),
            (
                "Four One Five, Five Five Five, Zero One Nine Eight",
                "[PHONE_1]",
            ),
        ] {
            let mut r = Redactor::new();
            assert_eq!(r.redact(text), expected, "{text}");
            assert_eq!(r.values().collect::<Vec<_>>(), ["+14155550198"], "{text}");
        }
        // Commas between ordinary numbers stay what they are.
        for text in [
            "we need 2, 3 or 4 seats",
            "on March 3, 2026 at noon",
            "oh, one more thing",
            "that's 1,000 dollars",
        ] {
            assert_eq!(red(text), text, "{text}");
        }
    }

    #[test]
    fn the_same_value_gets_the_same_number_per_call() {
        let mut r = Redactor::new();
        let a = r.redact("email john@example.com or jane@example.com");
        let b = r.redact("again: john at example dot com");
        assert_eq!(a, "email [EMAIL_1] or [EMAIL_2]");
        assert_eq!(b, "again: [EMAIL_1]");
        assert_eq!(r.restore("send to [EMAIL_1]"), "send to john@example.com");
        assert_eq!(r.restore("[EMAIL_9] stays"), "[EMAIL_9] stays");
        let mut v = serde_json::json!({"entities": {"email": "[EMAIL_2]"}, "list": ["[EMAIL_1]"]});
        r.restore_json(&mut v);
        assert_eq!(v["entities"]["email"], "jane@example.com");
        assert_eq!(v["list"][0], "john@example.com");
    }

    #[test]
    fn luhn_passing_timestamps_and_ids_are_not_cards() {
        // 4111111111111111 passes Luhn; so do these, which are not cards.
        assert!(luhn_valid("1700000000004"));
        for text in [
            "event at 1700000000004 ms",
            "order id 79927398713 shipped",
            "the date 2026-11-01 09:30",
            "ticket 4539 1488 0343 6467 0",
            "unix time 1735689600",
            "we meet at noon",
            "I'm at home dot",
        ] {
            assert_eq!(red(text), text, "{text}");
        }
        assert!(!ssn_valid("666123456") && !ssn_valid("000123456") && !ssn_valid("123004567"));
        assert_eq!(red("ssn 666-12-3456"), "ssn 666-12-3456");
        assert!(iban_valid("GB82WEST12345698765432") && !iban_valid("GB82WEST12345698765433"));
    }
}
