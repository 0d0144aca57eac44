//! Word error rate as jiwer computes it: a word-level Levenshtein alignment, WER = (S + D + I) / N
//! (it can exceed 1), corpus WER by summing S, D, I and N over turns and dividing once, and an empty
//! reference scoring the number of inserted words. Normalised WER (Whisper's normalisers applied to
//! both sides) is the headline; raw WER uses jiwer's default transform.

use serde::Serialize;

use super::normalize;

/// Edit counts of one alignment, or of many summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WerCounts {
    pub hits: usize,
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
    pub reference_words: usize,
    pub hypothesis_words: usize,
}

impl WerCounts {
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// jiwer's WER: errors over reference words; with an empty reference, the insertions.
    pub fn wer(&self) -> f64 {
        if self.reference_words == 0 {
            self.insertions as f64
        } else {
            self.errors() as f64 / self.reference_words as f64
        }
    }

    pub fn add(&mut self, other: &WerCounts) {
        self.hits += other.hits;
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_words += other.reference_words;
        self.hypothesis_words += other.hypothesis_words;
    }

    /// Corpus counts: sums, so `.wer()` is one division over all turns (never a mean of WERs).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a WerCounts>) -> WerCounts {
        let mut total = WerCounts::default();
        for c in all {
            total.add(c);
        }
        total
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EditOp {
    Equal,
    Substitute,
    Delete,
    Insert,
}

/// One step of the alignment, for display: reference word, hypothesis word, or both.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlignedPair {
    pub op: EditOp,
    pub reference: Option<String>,
    pub hypothesis: Option<String>,
}

/// A minimum-edit alignment of two word sequences. Among equally short alignments it prefers
/// match/substitution, then deletion, then insertion, walking back from the end.
pub fn align(reference: &[&str], hypothesis: &[&str]) -> (WerCounts, Vec<AlignedPair>) {
    let (n, m) = (reference.len(), hypothesis.len());
    let width = m + 1;
    let mut d = vec![0u32; (n + 1) * width];
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j as u32;
    }
    for i in 1..=n {
        d[i * width] = i as u32;
        for j in 1..=m {
            let cost = u32::from(reference[i - 1] != hypothesis[j - 1]);
            let diag = d[(i - 1) * width + j - 1] + cost;
            let del = d[(i - 1) * width + j] + 1;
            let ins = d[i * width + j - 1] + 1;
            d[i * width + j] = diag.min(del).min(ins);
        }
    }
    let mut counts = WerCounts {
        reference_words: n,
        hypothesis_words: m,
        ..WerCounts::default()
    };
    let mut pairs = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = d[i * width + j];
        if i > 0 && j > 0 {
            let same = reference[i - 1] == hypothesis[j - 1];
            if d[(i - 1) * width + j - 1] + u32::from(!same) == here {
                let op = if same {
                    counts.hits += 1;
                    EditOp::Equal
                } else {
                    counts.substitutions += 1;
                    EditOp::Substitute
                };
                pairs.push(AlignedPair {
                    op,
                    reference: Some(reference[i - 1].to_string()),
                    hypothesis: Some(hypothesis[j - 1].to_string()),
                });
                i -= 1;
                j -= 1;
                continue;
            }
        }
        if i > 0 && d[(i - 1) * width + j] + 1 == here {
            counts.deletions += 1;
            pairs.push(AlignedPair {
                op: EditOp::Delete,
                reference: Some(reference[i - 1].to_string()),
                hypothesis: None,
            });
            i -= 1;
        } else {
            counts.insertions += 1;
            pairs.push(AlignedPair {
                op: EditOp::Insert,
                reference: None,
                hypothesis: Some(hypothesis[j - 1].to_string()),
            });
            j -= 1;
        }
    }
    pairs.reverse();
    (counts, pairs)
}

/// Which normaliser makes the headline WER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalizer {
    /// Whisper's `EnglishTextNormalizer`.
    English,
    /// Whisper's `BasicTextNormalizer` (other languages).
    Basic,
}

impl Normalizer {
    /// English for `en` (or no language), basic otherwise.
    pub fn for_language(language: Option<&str>) -> Self {
        match language {
            None => Normalizer::English,
            Some(l)
                if l.eq_ignore_ascii_case("en") || l.to_ascii_lowercase().starts_with("en-") =>
            {
                Normalizer::English
            }
            Some(_) => Normalizer::Basic,
        }
    }

    pub fn apply(self, s: &str) -> String {
        match self {
            Normalizer::English => normalize::english(s),
            Normalizer::Basic => normalize::basic(s),
        }
    }
}

/// jiwer's default transform: collapse `\s\s+` to one space, strip, split on single spaces.
pub fn jiwer_words(s: &str) -> Vec<String> {
    let mut collapsed = String::with_capacity(s.len());
    let space = normalize::is_py_space;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if space(c) && chars.peek().is_some_and(|n| space(*n)) {
            while chars.peek().is_some_and(|n| space(*n)) {
                chars.next();
            }
            collapsed.push(' ');
        } else {
            collapsed.push(c);
        }
    }
    collapsed
        .trim_matches(space)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// One hypothesis scored against one reference.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WerScore {
    pub normalizer: Normalizer,
    /// Normalised WER: the headline.
    pub wer: f64,
    pub counts: WerCounts,
    /// WER of the texts as given (jiwer's default transform only).
    pub raw_wer: f64,
    pub raw_counts: WerCounts,
    pub normalized_reference: String,
    pub normalized_hypothesis: String,
    /// The normalised alignment.
    pub alignment: Vec<AlignedPair>,
    /// The normalised reference has no words: WER counts inserted words; show such turns apart.
    pub empty_reference: bool,
}

pub fn score(reference: &str, hypothesis: &str, normalizer: Normalizer) -> WerScore {
    let normalized_reference = normalizer.apply(reference);
    let normalized_hypothesis = normalizer.apply(hypothesis);
    let nr = jiwer_words(&normalized_reference);
    let nh = jiwer_words(&normalized_hypothesis);
    let (counts, alignment) = align(&as_strs(&nr), &as_strs(&nh));
    let rr = jiwer_words(reference);
    let rh = jiwer_words(hypothesis);
    let (raw_counts, _) = align(&as_strs(&rr), &as_strs(&rh));
    WerScore {
        normalizer,
        wer: counts.wer(),
        counts,
        raw_wer: raw_counts.wer(),
        raw_counts,
        normalized_reference: nr.join(" "),
        normalized_hypothesis: nh.join(" "),
        alignment,
        empty_reference: nr.is_empty(),
    }
}

fn as_strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(r: &str, h: &str) -> WerCounts {
        let r: Vec<&str> = r.split_whitespace().collect();
        let h: Vec<&str> = h.split_whitespace().collect();
        align(&r, &h).0
    }

    #[test]
    fn substitutions_deletions_and_insertions_are_counted() {
        let c = counts("the cat sat on the mat", "the cat sit on mat today");
        assert_eq!(
            (c.hits, c.substitutions, c.deletions, c.insertions),
            (3, 3, 0, 0)
        );
        assert!((c.wer() - 3.0 / 6.0).abs() < 1e-12);
        let c = counts("a b c d", "a c d e");
        assert_eq!(
            (c.hits, c.substitutions, c.deletions, c.insertions),
            (3, 0, 1, 1)
        );
        let (_, pairs) = align(&["a", "b"], &["a", "x", "b"]);
        assert_eq!(
            pairs.iter().map(|p| p.op).collect::<Vec<_>>(),
            vec![EditOp::Equal, EditOp::Insert, EditOp::Equal]
        );
    }

    #[test]
    fn wer_can_exceed_one_and_empty_references_count_insertions() {
        assert_eq!(counts("hi", "oh hi there you").wer(), 3.0);
        assert_eq!(counts("", "two words").wer(), 2.0);
        assert_eq!(counts("", "").wer(), 0.0);
        assert_eq!(counts("all gone", "").wer(), 1.0);
    }

    #[test]
    fn corpus_wer_sums_before_dividing() {
        let a = counts("one two three four", "one two three four");
        let b = counts("five", "six");
        let corpus = WerCounts::sum([&a, &b]);
        assert!(
            (corpus.wer() - 1.0 / 5.0).abs() < 1e-12,
            "not the mean of 0 and 1"
        );
    }

    #[test]
    fn normalised_wer_ignores_case_punctuation_and_number_spelling() {
        let s = score(
            "I'd like twenty-five tickets, please.",
            "i would like 25 tickets please",
            Normalizer::English,
        );
        assert_eq!(s.wer, 0.0, "{s:?}");
        assert!(s.raw_wer > 0.5);
        assert!(!s.empty_reference);
        assert_eq!(jiwer_words("  a  b\tc "), vec!["a", "b\tc"]);
    }
}
