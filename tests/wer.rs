//! WER and the Whisper normalisers against reference values from jiwer 4.0.0 and
//! whisper-normalizer 0.1.15 (tests/fixtures/wer-reference.json, made by scripts/wer-fixture.py).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::stt::wer::{self, Normalizer, WerCounts};

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/wer-reference.json")).expect("fixture parses")
}

fn words(s: &str) -> Vec<String> {
    wer::jiwer_words(s)
}

fn counts(reference: &str, hypothesis: &str) -> WerCounts {
    let r = words(reference);
    let h = words(hypothesis);
    let r: Vec<&str> = r.iter().map(String::as_str).collect();
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    wer::align(&r, &h).0
}

#[test]
fn normalisers_produce_the_python_packages_text() {
    let f = fixture();
    let mut mismatches = Vec::new();
    for p in f["pairs"].as_array().unwrap() {
        for (name, n) in [
            ("english", Normalizer::English),
            ("basic", Normalizer::Basic),
        ] {
            for side in ["reference", "hypothesis"] {
                let input = p[side].as_str().unwrap();
                let want = p[name][side].as_str().unwrap();
                let got = words(&n.apply(input)).join(" ");
                if got != want {
                    mismatches.push(format!("{name} {input:?}: want {want:?}, got {got:?}"));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn per_pair_wer_matches_jiwer_to_1e_9() {
    let f = fixture();
    let pairs = f["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 300, "a few hundred pairs");
    for p in pairs {
        let (r, h) = (
            p["reference"].as_str().unwrap(),
            p["hypothesis"].as_str().unwrap(),
        );
        for (name, n) in [
            ("english", Normalizer::English),
            ("basic", Normalizer::Basic),
        ] {
            let s = wer::score(r, h, n);
            let want = p[name]["wer"].as_f64().unwrap();
            assert!(
                (s.wer - want).abs() < 1e-9,
                "{name} {r:?} / {h:?}: {} vs jiwer {want}",
                s.wer
            );
            assert_eq!(
                s.counts.errors() as u64,
                p[name]["errors"].as_u64().unwrap(),
                "{name} {r:?} / {h:?}"
            );
            assert_eq!(
                s.empty_reference,
                p[name]["reference_words"].as_u64() == Some(0)
            );
        }
        let raw = counts(r, h);
        assert!(
            (raw.wer() - p["raw"]["wer"].as_f64().unwrap()).abs() < 1e-9,
            "raw {r:?} / {h:?}"
        );
        assert!((wer::score(r, h, Normalizer::English).raw_wer - raw.wer()).abs() < 1e-12);
    }
}

#[test]
fn corpus_wer_matches_jiwer_over_all_pairs() {
    let f = fixture();
    let pairs = f["pairs"].as_array().unwrap();
    for name in ["english", "basic", "raw"] {
        let all: Vec<WerCounts> = pairs
            .iter()
            .map(|p| {
                let (r, h) = (
                    p["reference"].as_str().unwrap(),
                    p["hypothesis"].as_str().unwrap(),
                );
                match name {
                    "english" => wer::score(r, h, Normalizer::English).counts,
                    "basic" => wer::score(r, h, Normalizer::Basic).counts,
                    _ => counts(r, h),
                }
            })
            .collect();
        let got = WerCounts::sum(&all).wer();
        let want = f["corpus_wer"][name].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{name}: {got} vs jiwer {want}");
        let mean = all.iter().map(WerCounts::wer).sum::<f64>() / all.len() as f64;
        assert!(
            (mean - want).abs() > 1e-6,
            "{name}: corpus WER must not be the mean of per-pair WERs"
        );
    }
}
