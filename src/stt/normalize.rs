//! Text normalisers for WER, ported from OpenAI Whisper (`whisper/normalizers`, MIT), as packaged by
//! the `whisper-normalizer` PyPI package: `english` is `EnglishTextNormalizer` (brackets and
//! parentheses dropped, fillers dropped, contractions expanded, spelled-out numbers to digits,
//! British → American spelling, symbols stripped), `basic` is `BasicTextNormalizer` (for other
//! languages). Python's semantics are kept where they differ from Rust's (whitespace as
//! `str.isspace()`, `str(value or "")` truthiness, arbitrary-size integers); the test fixture checks
//! the output against the Python package.

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use regex::{Captures, NoExpand, Regex};
use std::collections::HashMap;
use std::sync::LazyLock;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => unreachable!("normaliser pattern {pattern:?} is valid: {e}"),
    }
}

/// Python's `\s` / `str.isspace()`: Unicode White_Space plus the separators U+001C–U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` without arguments.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

const PY_WS: &str = r"[\s\x1c-\x1f]";

struct Patterns {
    brackets: Regex,
    parentheses: Regex,
    fillers: Regex,
    space_apostrophe: Regex,
    replacers: Vec<(Regex, &'static str)>,
    digit_commas: Regex,
    periods: Regex,
    symbol_before_non_digit: Regex,
    percent_after_non_digit: Regex,
    whitespace: Regex,
    // number normaliser
    and_a_half: Regex,
    letter_digit: Regex,
    digit_letter: Regex,
    digit_suffix: Regex,
    numeric: Regex,
    cents: Regex,
    cents_only: Regex,
    one: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let replacers: &[(&str, &'static str)] = &[
        // common contractions
        (r"\bwon't\b", "will not"),
        (r"\bcan't\b", "can not"),
        (r"\blet's\b", "let us"),
        (r"\bain't\b", "aint"),
        (r"\by'all\b", "you all"),
        (r"\bwanna\b", "want to"),
        (r"\bkinda\b", "kind of"),
        (r"\bsorta\b", "sort of"),
        (r"\bdunno\b", "do not know"),
        (r"\bgotta\b", "got to"),
        (r"\bgonna\b", "going to"),
        (r"\bi'ma\b", "i am going to"),
        (r"\bimma\b", "i am going to"),
        (r"\bwoulda\b", "would have"),
        (r"\bcoulda\b", "could have"),
        (r"\bshoulda\b", "should have"),
        (r"\bcause\b", "because"),
        (r"\bma'am\b", "madam"),
        // contractions in titles/prefixes
        (r"\bmr\b", "mister "),
        (r"\bmrs\b", "missus "),
        (r"\bst\b", "saint "),
        (r"\bdr\b", "doctor "),
        (r"\bprof\b", "professor "),
        (r"\bcapt\b", "captain "),
        (r"\bgov\b", "governor "),
        (r"\bald\b", "alderman "),
        (r"\bgen\b", "general "),
        (r"\bsen\b", "senator "),
        (r"\brep\b", "representative "),
        (r"\bpres\b", "president "),
        (r"\brev\b", "reverend "),
        (r"\bhon\b", "honorable "),
        (r"\basst\b", "assistant "),
        (r"\bassoc\b", "associate "),
        (r"\blt\b", "lieutenant "),
        (r"\bcol\b", "colonel "),
        (r"\bjr\b", "junior "),
        (r"\bsr\b", "senior "),
        (r"\besq\b", "esquire "),
        // perfect tenses
        (r"'d been\b", " had been"),
        (r"'s been\b", " has been"),
        (r"'d gone\b", " had gone"),
        (r"'s gone\b", " has gone"),
        (r"'d done\b", " had done"),
        (r"'s got\b", " has got"),
        // general contractions
        (r"n't\b", " not"),
        (r"'re\b", " are"),
        (r"'s\b", " is"),
        (r"'d\b", " would"),
        (r"'ll\b", " will"),
        (r"'t\b", " not"),
        (r"'ve\b", " have"),
        (r"'m\b", " am"),
    ];
    Patterns {
        brackets: re(r"[<\[][^>\]]*[>\]]"),
        parentheses: re(r"\(([^)]+?)\)"),
        fillers: re(r"\b(hmm|mm|mhm|mmm|uh|um)\b"),
        space_apostrophe: re(&format!("{PY_WS}+'")),
        replacers: replacers.iter().map(|(p, r)| (re(p), *r)).collect(),
        digit_commas: re(r"(\d),(\d)"),
        periods: re(r"\.([^0-9]|$)"),
        symbol_before_non_digit: re(r"[.$¢€£]([^0-9])"),
        percent_after_non_digit: re(r"([^0-9])%"),
        whitespace: re(&format!("{PY_WS}+")),
        and_a_half: re(&format!(r"\band{PY_WS}+a{PY_WS}+half\b")),
        letter_digit: re(r"([a-z])([0-9])"),
        digit_letter: re(r"([0-9])([a-z])"),
        digit_suffix: re(&format!(r"([0-9]){PY_WS}+(st|nd|rd|th|s)\b")),
        numeric: re(r"^\d+(\.\d+)?$"),
        cents: re(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b"),
        cents_only: re(r"[€£$]0.([0-9]{1,2})\b"),
        one: re(r"\b1(s?)\b"),
    }
});

/// British → American spellings (the list Whisper ships, from tysto.com).
static SPELLINGS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("english_spelling.json")).unwrap_or_default()
});

/// Letters NFKD does not decompose, and their ASCII spelling.
fn additional_diacritic(c: char) -> Option<&'static str> {
    Some(match c {
        'œ' => "oe",
        'Œ' => "OE",
        'ø' => "o",
        'Ø' => "O",
        'æ' => "ae",
        'Æ' => "AE",
        'ß' => "ss",
        'ẞ' => "SS",
        'đ' => "d",
        'Đ' => "D",
        'ð' => "d",
        'Ð' => "D",
        'þ' => "th",
        'Þ' => "th",
        'ł' => "l",
        'Ł' => "L",
        _ => return None,
    })
}

fn is_mark_symbol_or_punctuation(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        get_general_category(c),
        NonspacingMark
            | SpacingMark
            | EnclosingMark
            | MathSymbol
            | CurrencySymbol
            | ModifierSymbol
            | OtherSymbol
            | ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
    )
}

/// Symbols and punctuation become spaces, diacritics are dropped (NFKD), `keep` is kept.
fn remove_symbols_and_diacritics(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if keep.contains(c) {
            out.push(c);
        } else if let Some(r) = additional_diacritic(c) {
            out.push_str(r);
        } else if get_general_category(c) == GeneralCategory::NonspacingMark {
        } else if is_mark_symbol_or_punctuation(c) {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Symbols, punctuation and marks become spaces (NFKC first).
fn remove_symbols(s: &str) -> String {
    s.nfkc()
        .map(|c| {
            if is_mark_symbol_or_punctuation(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Whisper's `BasicTextNormalizer()`: for languages other than English.
pub fn basic(s: &str) -> String {
    let p = &*PATTERNS;
    let s = s.to_lowercase();
    let s = p.brackets.replace_all(&s, "");
    let s = p.parentheses.replace_all(&s, "");
    let s = remove_symbols(&s).to_lowercase();
    p.whitespace.replace_all(&s, " ").into_owned()
}

/// Whisper's `EnglishTextNormalizer()`.
pub fn english(s: &str) -> String {
    let p = &*PATTERNS;
    let s = s.to_lowercase();
    let s = p.brackets.replace_all(&s, "");
    let s = p.parentheses.replace_all(&s, "");
    let s = p.fillers.replace_all(&s, "");
    let mut s = p.space_apostrophe.replace_all(&s, "'").into_owned();
    for (pattern, replacement) in &p.replacers {
        if let std::borrow::Cow::Owned(r) = pattern.replace_all(&s, NoExpand(replacement)) {
            s = r;
        }
    }
    let s = p.digit_commas.replace_all(&s, "$1$2");
    let s = p.periods.replace_all(&s, " $1");
    let s = remove_symbols_and_diacritics(&s, ".%$¢€£");
    let s = numbers(&s);
    let s = py_split(&s)
        .map(|w| SPELLINGS.get(w).map_or(w, String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let s = p.symbol_before_non_digit.replace_all(&s, " $1");
    let s = p.percent_after_non_digit.replace_all(&s, "$1 ");
    p.whitespace.replace_all(&s, " ").into_owned()
}

// ---- EnglishNumberNormalizer ---------------------------------------------------------------------

const ONES: [&str; 19] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u32); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];
const MULTIPLIERS: [(&str, u32); 12] = [
    ("hundred", 2),
    ("thousand", 3),
    ("million", 6),
    ("billion", 9),
    ("trillion", 12),
    ("quadrillion", 15),
    ("quintillion", 18),
    ("sextillion", 21),
    ("septillion", 24),
    ("octillion", 27),
    ("nonillion", 30),
    ("decillion", 33),
];

struct NumberWords {
    ones: HashMap<String, u32>,
    ones_suffixed: HashMap<String, (u32, &'static str)>,
    tens: HashMap<String, u32>,
    tens_suffixed: HashMap<String, (u32, &'static str)>,
    /// Name → power of ten.
    multipliers: HashMap<String, u32>,
    multipliers_suffixed: HashMap<String, (u32, &'static str)>,
    words: std::collections::HashSet<String>,
}

const ZEROS: [&str; 3] = ["o", "oh", "zero"];
const PRECEDING_PREFIXERS: [(&str, &str); 4] = [
    ("minus", "-"),
    ("negative", "-"),
    ("plus", "+"),
    ("positive", "+"),
];
const FOLLOWING_PREFIXERS: [(&str, &str); 8] = [
    ("pound", "£"),
    ("pounds", "£"),
    ("euro", "€"),
    ("euros", "€"),
    ("dollar", "$"),
    ("dollars", "$"),
    ("cent", "¢"),
    ("cents", "¢"),
];
const PREFIX_CHARS: [char; 6] = ['-', '+', '£', '€', '$', '¢'];
const SPECIALS: [&str; 4] = ["and", "double", "triple", "point"];

static NUMBER_WORDS: LazyLock<NumberWords> = LazyLock::new(|| {
    let ones: HashMap<String, u32> = ONES
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as u32 + 1))
        .collect();
    let mut ones_suffixed: HashMap<String, (u32, &'static str)> = HashMap::new();
    for (name, &v) in &ones {
        let plural = if name == "six" {
            "sixes".to_string()
        } else {
            format!("{name}s")
        };
        ones_suffixed.insert(plural, (v, "s"));
    }
    for (name, v, suffix) in [
        ("zeroth", 0, "th"),
        ("first", 1, "st"),
        ("second", 2, "nd"),
        ("third", 3, "rd"),
        ("fifth", 5, "th"),
        ("twelfth", 12, "th"),
    ] {
        ones_suffixed.insert(name.to_string(), (v, suffix));
    }
    for (name, &v) in &ones {
        if v > 3 && v != 5 && v != 12 {
            let ord = format!("{name}{}", if name.ends_with('t') { "h" } else { "th" });
            ones_suffixed.insert(ord, (v, "th"));
        }
    }
    let tens: HashMap<String, u32> = TENS.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let mut tens_suffixed = HashMap::new();
    for (n, v) in TENS {
        tens_suffixed.insert(n.replace('y', "ies"), (v, "s"));
        tens_suffixed.insert(n.replace('y', "ieth"), (v, "th"));
    }
    let multipliers: HashMap<String, u32> = MULTIPLIERS
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .collect();
    let mut multipliers_suffixed = HashMap::new();
    for (n, p) in MULTIPLIERS {
        multipliers_suffixed.insert(format!("{n}s"), (p, "s"));
        multipliers_suffixed.insert(format!("{n}th"), (p, "th"));
    }
    let mut words = std::collections::HashSet::new();
    words.extend(ZEROS.iter().map(|s| s.to_string()));
    words.extend(ones.keys().cloned());
    words.extend(ones_suffixed.keys().cloned());
    words.extend(tens.keys().cloned());
    words.extend(tens_suffixed.keys().cloned());
    words.extend(multipliers.keys().cloned());
    words.extend(multipliers_suffixed.keys().cloned());
    words.extend(PRECEDING_PREFIXERS.iter().map(|p| p.0.to_string()));
    words.extend(FOLLOWING_PREFIXERS.iter().map(|p| p.0.to_string()));
    words.extend(["per".to_string(), "percent".to_string()]);
    words.extend(SPECIALS.iter().map(|s| s.to_string()));
    NumberWords {
        ones,
        ones_suffixed,
        tens,
        tens_suffixed,
        multipliers,
        multipliers_suffixed,
        words,
    }
});

/// The number normaliser's accumulator: Python's `Optional[Union[str, int]]`.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Int(BigUint),
    Str(String),
}

impl Value {
    fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// `str(value)`.
    fn text(&self) -> String {
        match self {
            Value::None => "None".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
        }
    }

    /// `str(value or "")`: `None`, `0` and `""` are falsy.
    fn text_or_empty(&self) -> String {
        match self {
            Value::Int(i) if i.is_zero() => String::new(),
            Value::None => String::new(),
            v => v.text(),
        }
    }
}

/// The value of a decimal digit in any script (Python's `\d` and `int()` accept them all): Unicode
/// lays each script's digits out as a contiguous run starting at zero.
fn digit_value(c: char) -> Option<u32> {
    if let Some(d) = c.to_digit(10) {
        return Some(d);
    }
    if get_general_category(c) != GeneralCategory::DecimalNumber {
        return None;
    }
    let mut start = c as u32;
    while let Some(prev) = char::from_u32(start.wrapping_sub(1))
        && get_general_category(prev) == GeneralCategory::DecimalNumber
    {
        start -= 1;
    }
    Some((c as u32 - start) % 10)
}

/// `Fraction(s)` for the strings the normaliser builds (digits with at most one `.`, optional sign
/// and surrounding whitespace): (digits without the point, digits after it). `None` where Python
/// raises `ValueError`.
fn decimal_parts(s: &str) -> Option<(BigUint, u32)> {
    let s = s.trim_matches(is_py_space);
    let s = s.strip_prefix('+').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut n = BigUint::zero();
    for c in int.chars().chain(frac.chars()) {
        n = n * 10u32 + digit_value(c)?;
    }
    Some((n, frac.chars().count() as u32))
}

/// `Fraction(s) * 10**power` when it is a whole number.
fn times_pow10(s: &str, power: u32) -> Option<BigUint> {
    let (n, scale) = decimal_parts(s)?;
    if power >= scale {
        return Some(n * BigUint::from(10u32).pow(power - scale));
    }
    let div = BigUint::from(10u32).pow(scale - power);
    (&n % &div).is_zero().then(|| n / div)
}

fn pow10(p: u32) -> BigUint {
    BigUint::from(10u32).pow(p)
}

fn rem_u32(v: &BigUint, m: u32) -> u32 {
    (v % m).to_u32().unwrap_or(0)
}

// A line-by-line port: `output()` clears `value` as in Python even where the next line overwrites it.
#[allow(unused_assignments)]
fn process_words(words: &[&str]) -> Vec<String> {
    let nw = &*NUMBER_WORDS;
    let numeric = &PATTERNS.numeric;
    let mut out = Vec::new();
    let mut prefix: Option<char> = None;
    let mut value = Value::None;
    let mut skip = false;
    // `output(result)`: prefix it, then clear value and prefix.
    macro_rules! output {
        ($result:expr) => {{
            let result: String = $result;
            let result = match prefix.take() {
                Some(p) => format!("{p}{result}"),
                None => result,
            };
            value = Value::None;
            out.push(result);
        }};
    }
    for i in 0..words.len() {
        if skip {
            skip = false;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| words[p]);
        let current = words[i];
        let next = words.get(i + 1).copied();
        let next_is_numeric = next.is_some_and(|n| numeric.is_match(n));
        let next_in_words = next.is_some_and(|n| nw.words.contains(n));
        let prev_in = |m: &dyn Fn(&str) -> bool| prev.is_some_and(m);
        let first = current.chars().next().unwrap_or(' ');
        let has_prefix = PREFIX_CHARS.contains(&first);
        let without_prefix = if has_prefix {
            &current[first.len_utf8()..]
        } else {
            current
        };
        if numeric.is_match(without_prefix) {
            let Some((n, scale)) = decimal_parts(without_prefix) else {
                continue;
            };
            if !value.is_none() {
                if let Value::Str(v) = &value
                    && v.ends_with('.')
                {
                    value = Value::Str(format!("{v}{current}"));
                    continue;
                }
                output!(value.text());
            }
            if has_prefix {
                prefix = Some(first);
            }
            let whole = scale == 0 || (&n % pow10(scale)).is_zero();
            value = if whole {
                Value::Int(n / pow10(scale))
            } else {
                Value::Str(without_prefix.to_string())
            };
        } else if !nw.words.contains(current) {
            if !value.is_none() {
                output!(value.text());
            }
            output!(current.to_string());
        } else if ZEROS.contains(&current) {
            value = Value::Str(value.text_or_empty() + "0");
        } else if let Some(&ones) = nw.ones.get(current) {
            value = match std::mem::replace(&mut value, Value::None) {
                Value::None => Value::Int(BigUint::from(ones)),
                Value::Str(v) if prev_in(&|p| nw.tens.contains_key(p)) && ones < 10 => {
                    Value::Str(replace_last_zero(&v, ones))
                }
                Value::Str(v) => Value::Str(format!("{v}{ones}")),
                Value::Int(v) if prev_in(&|p| nw.ones.contains_key(p)) => {
                    Value::Str(format!("{v}{ones}"))
                }
                Value::Int(v) => {
                    let base = if ones < 10 { 10 } else { 100 };
                    if rem_u32(&v, base) == 0 {
                        Value::Int(v + ones)
                    } else {
                        Value::Str(format!("{v}{ones}"))
                    }
                }
            };
        } else if let Some(&(ones, suffix)) = nw.ones_suffixed.get(current) {
            let text = match &value {
                Value::None => format!("{ones}{suffix}"),
                Value::Str(v) if prev_in(&|p| nw.tens.contains_key(p)) && ones < 10 => {
                    format!("{}{suffix}", replace_last_zero(v, ones))
                }
                Value::Str(v) => format!("{v}{ones}{suffix}"),
                Value::Int(v) if prev_in(&|p| nw.ones.contains_key(p)) => {
                    format!("{v}{ones}{suffix}")
                }
                Value::Int(v) => {
                    let base = if ones < 10 { 10 } else { 100 };
                    if rem_u32(v, base) == 0 {
                        format!("{}{suffix}", v + ones)
                    } else {
                        format!("{v}{ones}{suffix}")
                    }
                }
            };
            output!(text);
            value = Value::None;
        } else if let Some(&tens) = nw.tens.get(current) {
            value = match std::mem::replace(&mut value, Value::None) {
                Value::None => Value::Int(BigUint::from(tens)),
                Value::Str(v) => Value::Str(format!("{v}{tens}")),
                Value::Int(v) if rem_u32(&v, 100) == 0 => Value::Int(v + tens),
                Value::Int(v) => Value::Str(format!("{v}{tens}")),
            };
        } else if let Some(&(tens, suffix)) = nw.tens_suffixed.get(current) {
            let text = match &value {
                Value::None => format!("{tens}{suffix}"),
                Value::Str(v) => format!("{v}{tens}{suffix}"),
                Value::Int(v) if rem_u32(v, 100) == 0 => format!("{}{suffix}", v + tens),
                Value::Int(v) => format!("{v}{tens}{suffix}"),
            };
            output!(text);
        } else if let Some(&power) = nw.multipliers.get(current) {
            match std::mem::replace(&mut value, Value::None) {
                Value::None => value = Value::Int(pow10(power)),
                Value::Int(v) if !v.is_zero() => {
                    let before = &v / 1000u32 * 1000u32;
                    let residual = &v % 1000u32;
                    value = Value::Int(before + residual * pow10(power));
                }
                v => {
                    let text = v.text();
                    match times_pow10(&text, power) {
                        Some(p) => value = Value::Int(p),
                        None => {
                            output!(text);
                            value = Value::Int(pow10(power));
                        }
                    }
                }
            }
        } else if let Some(&(power, suffix)) = nw.multipliers_suffixed.get(current) {
            match std::mem::replace(&mut value, Value::None) {
                Value::None => output!(format!("{}{suffix}", pow10(power))),
                Value::Str(v) => match times_pow10(&v, power) {
                    Some(p) => output!(format!("{p}{suffix}")),
                    None => {
                        output!(v);
                        output!(format!("{}{suffix}", pow10(power)));
                    }
                },
                Value::Int(v) => {
                    let before = &v / 1000u32 * 1000u32;
                    let residual = &v % 1000u32;
                    output!(format!("{}{suffix}", before + residual * pow10(power)));
                }
            }
            value = Value::None;
        } else if let Some((_, sign)) = PRECEDING_PREFIXERS.iter().find(|p| p.0 == current) {
            if !value.is_none() {
                output!(value.text());
            }
            if next_in_words || next_is_numeric {
                prefix = sign.chars().next();
            } else {
                output!(current.to_string());
            }
        } else if let Some((_, symbol)) = FOLLOWING_PREFIXERS.iter().find(|p| p.0 == current) {
            if !value.is_none() {
                let text = value.text();
                prefix = symbol.chars().next();
                output!(text);
            } else {
                output!(current.to_string());
            }
        } else if current == "per" || current == "percent" {
            if value.is_none() {
                output!(current.to_string());
            } else if current == "percent" {
                output!(format!("{}%", value.text()));
            } else if next == Some("cent") {
                output!(format!("{}%", value.text()));
                skip = true;
            } else {
                output!(value.text());
                output!(current.to_string());
            }
        } else if SPECIALS.contains(&current) {
            if !next_in_words && !next_is_numeric {
                if !value.is_none() {
                    output!(value.text());
                }
                output!(current.to_string());
            } else if current == "and" {
                if !prev_in(&|p| nw.multipliers.contains_key(p)) {
                    if !value.is_none() {
                        output!(value.text());
                    }
                    output!(current.to_string());
                }
            } else if current == "double" || current == "triple" {
                let next_word = next.unwrap_or("");
                if nw.ones.contains_key(next_word) || ZEROS.contains(&next_word) {
                    let repeats = if current == "double" { 2 } else { 3 };
                    let ones = nw.ones.get(next_word).copied().unwrap_or(0);
                    value = Value::Str(value.text_or_empty() + &ones.to_string().repeat(repeats));
                    skip = true;
                } else {
                    if !value.is_none() {
                        output!(value.text());
                    }
                    output!(current.to_string());
                }
            } else if current == "point" {
                let next_word = next.unwrap_or("");
                let decimal = ZEROS.contains(&next_word)
                    || nw.ones.contains_key(next_word)
                    || nw.tens.contains_key(next_word);
                if decimal || next_is_numeric {
                    value = Value::Str(value.text_or_empty() + ".");
                }
            }
        }
    }
    if !value.is_none() {
        output!(value.text());
    }
    out
}

/// `value[:-1] + str(ones)` after a tens word (Python asserts the last character is `0`).
fn replace_last_zero(v: &str, ones: u32) -> String {
    match v.strip_suffix('0') {
        Some(head) => format!("{head}{ones}"),
        None => format!("{v}{ones}"),
    }
}

fn numbers_preprocess(s: &str) -> String {
    let p = &*PATTERNS;
    let nw = &*NUMBER_WORDS;
    // "<number> and a half" → "<number> point five"
    let segments: Vec<&str> = p.and_a_half.split(s).collect();
    let mut results: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.trim_matches(is_py_space).is_empty() {
            continue;
        }
        results.push(segment);
        if i != segments.len() - 1 {
            let last = py_split(segment).last().unwrap_or("");
            let decimal =
                ZEROS.contains(&last) || nw.ones.contains_key(last) || nw.tens.contains_key(last);
            results.push(if decimal || nw.multipliers.contains_key(last) {
                "point five"
            } else {
                "and a half"
            });
        }
    }
    let s = results.join(" ");
    let s = p.letter_digit.replace_all(&s, "$1 $2");
    let s = p.digit_letter.replace_all(&s, "$1 $2");
    p.digit_suffix.replace_all(&s, "$1$2").into_owned()
}

fn numbers_postprocess(s: &str) -> String {
    let p = &*PATTERNS;
    let s = p.cents.replace_all(s, |c: &Captures| {
        let cents: u32 = c[3].parse().unwrap_or(0);
        format!("{}{}.{cents:02}", &c[1], &c[2])
    });
    let s = p.cents_only.replace_all(&s, |c: &Captures| {
        format!("¢{}", c[1].parse::<u32>().unwrap_or(0))
    });
    p.one.replace_all(&s, "one$1").into_owned()
}

fn numbers(s: &str) -> String {
    let s = numbers_preprocess(s);
    let words: Vec<&str> = py_split(&s).collect();
    numbers_postprocess(&process_words(&words).join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_numbers_become_digits() {
        for (input, want) in [
            ("twenty one", "21"),
            ("one hundred and five", "105"),
            ("two thousand twenty four", "2024"),
            ("ten thousand dollars", "$10000"),
            ("one oh one", "101"),
            ("double seven", "77"),
            ("three point five percent", "3.5%"),
            ("the nineteen sixties", "the 1960s"),
            ("twenty first", "21st"),
            ("two and a half", "2.5"),
            ("minus five", "-5"),
            ("one", "one"),
            ("five dollars and fifty cents", "$5.50"),
        ] {
            assert_eq!(numbers(input), want, "{input}");
        }
    }

    #[test]
    fn english_normaliser_follows_whisper() {
        for (input, want) in [
            ("Hello, World!", "hello world"),
            (
                "I can't go [noise] (laughs) um today.",
                "i can not go today",
            ),
            ("The colour of the theatre", "the color of the theater"),
            (
                "Mr. Smith's gonna pay $20",
                "mister smith is going to pay $20",
            ),
            ("It costs 1,000 euros", "it costs €1000"),
            ("café naïve", "cafe naive"),
        ] {
            assert_eq!(english(input).trim(), want, "{input}");
        }
    }

    #[test]
    fn basic_normaliser_keeps_letters_of_any_script() {
        assert_eq!(basic("¿Qué tal, Señor?").trim(), "qué tal señor");
        assert_eq!(basic("Привет [шум] мир!").trim(), "привет мир");
    }

    #[test]
    fn huge_spelled_numbers_do_not_overflow() {
        let s =
            "nine nine nine nine nine nine nine nine nine nine nine nine nine decillion decillion";
        assert!(!numbers(s).is_empty());
        assert_eq!(decimal_parts("."), None);
        assert_eq!(times_pow10("1.5", 2), Some(BigUint::from(150u32)));
        assert_eq!(times_pow10("1.25", 1), None);
    }
}
