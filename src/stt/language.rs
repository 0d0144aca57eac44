//! Language identifiers as providers send them — names (`english`, Groq/OpenAI verbose_json),
//! ISO-639-3 (`eng`, ElevenLabs), ISO-639-2/B (`ger`), ISO-639-1 with or without a region (`en-US`)
//! — normalised to ISO-639-1 so they can be compared.

/// (ISO-639-1, English name as Whisper spells it, ISO-639-3, ISO-639-2/B when it differs).
const LANGUAGES: &[(&str, &str, &str, &str)] = &[
    ("af", "afrikaans", "afr", ""),
    ("am", "amharic", "amh", ""),
    ("ar", "arabic", "ara", ""),
    ("as", "assamese", "asm", ""),
    ("az", "azerbaijani", "aze", ""),
    ("ba", "bashkir", "bak", ""),
    ("be", "belarusian", "bel", ""),
    ("bg", "bulgarian", "bul", ""),
    ("bn", "bengali", "ben", ""),
    ("bo", "tibetan", "bod", "tib"),
    ("br", "breton", "bre", ""),
    ("bs", "bosnian", "bos", ""),
    ("ca", "catalan", "cat", ""),
    ("cs", "czech", "ces", "cze"),
    ("cy", "welsh", "cym", "wel"),
    ("da", "danish", "dan", ""),
    ("de", "german", "deu", "ger"),
    ("el", "greek", "ell", "gre"),
    ("en", "english", "eng", ""),
    ("es", "spanish", "spa", ""),
    ("et", "estonian", "est", ""),
    ("eu", "basque", "eus", "baq"),
    ("fa", "persian", "fas", "per"),
    ("fi", "finnish", "fin", ""),
    ("fo", "faroese", "fao", ""),
    ("fr", "french", "fra", "fre"),
    ("gl", "galician", "glg", ""),
    ("gu", "gujarati", "guj", ""),
    ("ha", "hausa", "hau", ""),
    ("he", "hebrew", "heb", ""),
    ("hi", "hindi", "hin", ""),
    ("hr", "croatian", "hrv", ""),
    ("ht", "haitian creole", "hat", ""),
    ("hu", "hungarian", "hun", ""),
    ("hy", "armenian", "hye", "arm"),
    ("id", "indonesian", "ind", ""),
    ("is", "icelandic", "isl", "ice"),
    ("it", "italian", "ita", ""),
    ("ja", "japanese", "jpn", ""),
    ("jv", "javanese", "jav", ""),
    ("ka", "georgian", "kat", "geo"),
    ("kk", "kazakh", "kaz", ""),
    ("km", "khmer", "khm", ""),
    ("kn", "kannada", "kan", ""),
    ("ko", "korean", "kor", ""),
    ("la", "latin", "lat", ""),
    ("lb", "luxembourgish", "ltz", ""),
    ("ln", "lingala", "lin", ""),
    ("lo", "lao", "lao", ""),
    ("lt", "lithuanian", "lit", ""),
    ("lv", "latvian", "lav", ""),
    ("mg", "malagasy", "mlg", ""),
    ("mi", "maori", "mri", "mao"),
    ("mk", "macedonian", "mkd", "mac"),
    ("ml", "malayalam", "mal", ""),
    ("mn", "mongolian", "mon", ""),
    ("mr", "marathi", "mar", ""),
    ("ms", "malay", "msa", "may"),
    ("mt", "maltese", "mlt", ""),
    ("my", "myanmar", "mya", "bur"),
    ("ne", "nepali", "nep", ""),
    ("nl", "dutch", "nld", "dut"),
    ("nn", "nynorsk", "nno", ""),
    ("no", "norwegian", "nor", ""),
    ("oc", "occitan", "oci", ""),
    ("pa", "punjabi", "pan", ""),
    ("pl", "polish", "pol", ""),
    ("ps", "pashto", "pus", ""),
    ("pt", "portuguese", "por", ""),
    ("ro", "romanian", "ron", "rum"),
    ("ru", "russian", "rus", ""),
    ("sa", "sanskrit", "san", ""),
    ("sd", "sindhi", "snd", ""),
    ("si", "sinhala", "sin", ""),
    ("sk", "slovak", "slk", "slo"),
    ("sl", "slovenian", "slv", ""),
    ("sn", "shona", "sna", ""),
    ("so", "somali", "som", ""),
    ("sq", "albanian", "sqi", "alb"),
    ("sr", "serbian", "srp", ""),
    ("su", "sundanese", "sun", ""),
    ("sv", "swedish", "swe", ""),
    ("sw", "swahili", "swa", ""),
    ("ta", "tamil", "tam", ""),
    ("te", "telugu", "tel", ""),
    ("tg", "tajik", "tgk", ""),
    ("th", "thai", "tha", ""),
    ("tk", "turkmen", "tuk", ""),
    ("tl", "tagalog", "tgl", ""),
    ("tr", "turkish", "tur", ""),
    ("tt", "tatar", "tat", ""),
    ("uk", "ukrainian", "ukr", ""),
    ("ur", "urdu", "urd", ""),
    ("uz", "uzbek", "uzb", ""),
    ("vi", "vietnamese", "vie", ""),
    ("yi", "yiddish", "yid", ""),
    ("yo", "yoruba", "yor", ""),
    ("zh", "chinese", "zho", "chi"),
];

/// Other spellings seen in provider answers.
const ALIASES: &[(&str, &str)] = &[
    ("jw", "jv"),  // Whisper's code for Javanese
    ("fil", "tl"), // Filipino
    ("filipino", "tl"),
    ("mandarin", "zh"),
    ("cmn", "zh"),
    ("castilian", "es"),
    ("flemish", "nl"),
    ("moldavian", "ro"),
    ("moldovan", "ro"),
    ("haitian", "ht"),
    ("burmese", "my"),
    ("valencian", "ca"),
    ("pushto", "ps"),
    ("panjabi", "pa"),
    ("sinhalese", "si"),
    ("letzeburgesch", "lb"),
    ("nob", "no"),
    ("nb", "no"),
    ("norwegian bokmal", "no"),
];

/// ISO-639-1 for what a provider said, or the lowercase input when it is not a known language
/// (kept, so nothing a provider says is lost). `None` for an empty value.
pub fn to_iso639_1(value: &str) -> Option<String> {
    let v = value.trim().to_lowercase().replace('_', "-");
    if v.is_empty() {
        return None;
    }
    if let Some((_, code)) = ALIASES.iter().find(|(a, _)| *a == v) {
        return Some(code.to_string());
    }
    if let Some(l) = LANGUAGES.iter().find(|l| l.1 == v) {
        return Some(l.0.to_string());
    }
    // A tag such as `en-US` or `zh-Hans-CN`: its primary subtag.
    let primary = v.split('-').next().unwrap_or(&v);
    if let Some((_, code)) = ALIASES.iter().find(|(a, _)| *a == primary) {
        return Some(code.to_string());
    }
    let found = LANGUAGES
        .iter()
        .find(|l| l.0 == primary || l.2 == primary || (!l.3.is_empty() && l.3 == primary));
    Some(found.map_or(v.clone(), |l| l.0.to_string()))
}

#[cfg(test)]
mod tests {
    use super::to_iso639_1;

    #[test]
    fn every_form_providers_send_becomes_iso_639_1() {
        for (input, want) in [
            ("english", "en"),
            ("English", "en"),
            ("eng", "en"),
            ("en", "en"),
            ("en-US", "en"),
            ("pt_BR", "pt"),
            ("ger", "de"),
            ("deu", "de"),
            ("haitian creole", "ht"),
            ("jw", "jv"),
            ("zh-Hans-CN", "zh"),
            ("cmn", "zh"),
            ("yue", "yue"),
        ] {
            assert_eq!(to_iso639_1(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(to_iso639_1("  "), None);
    }
}
