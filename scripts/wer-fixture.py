#!/usr/bin/env python3
"""Makes tests/fixtures/wer-reference.json: a few hundred (reference, hypothesis) pairs scored by the
reference implementations — jiwer 4.0.0 for WER and whisper-normalizer 0.1.15 for the Whisper
normalisers — which the Rust WER tests must match to 1e-9.

    python3 -m venv /tmp/werenv && /tmp/werenv/bin/pip install whisper-normalizer==0.1.15 jiwer==4.0.0
    /tmp/werenv/bin/python scripts/wer-fixture.py > tests/fixtures/wer-reference.json
"""
import json
import random

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

english = EnglishTextNormalizer()
basic = BasicTextNormalizer()
rng = random.Random(20261121)

SENTENCES = [
    "I'd like to book a table for two at seven thirty, please.",
    "My account number is four five six seven eight nine.",
    "Can you tell me why I was charged twenty-five dollars and fifty cents?",
    "Um, I think it's the second invoice, the one from March.",
    "We've been waiting for over an hour [background noise] and nobody called back.",
    "Yeah, the colour on the website doesn't match what we received.",
    "I want to cancel my subscription. It's too expensive at ninety-nine pounds a year.",
    "Could you spell that? Is it M-A-R-T-I-N?",
    "The meeting is on the twenty first of June at half past two.",
    "No, no, that's not what I said. I said fifteen, not fifty.",
    "My postcode is SW1A 1AA and the flat number is 3B.",
    "Uh, hmm, let me check... it's about 1,500 euros.",
    "Dr. Smith's office said they'd call me back by Friday.",
    "I'm gonna need the refund processed today, it's been three weeks.",
    "The interest rate went up by two point five percent last month.",
    "Can I speak to a human, please? This is the third time I've called.",
    "(laughs) Sorry, my kid is shouting in the background.",
    "We organised the travel through your centre in Manchester.",
    "It's one oh one, double seven, triple three.",
    "I paid $1,200 for the upgrade and it still doesn't work.",
    "What time do you close on Saturdays?",
    "I've got an appointment at 10:30 tomorrow morning.",
    "Yes.",
    "No thanks, that's all.",
    "Hello? Hello, can you hear me?",
    "I was born in nineteen eighty-seven, on the fourth of July.",
    "The total came to two thousand three hundred and forty-five dollars.",
    "Mr. and Mrs. O'Brien would like a quote for the kitchen.",
    "Let's do the fifteenth instead, if that's okay with y'all.",
    "I dunno, maybe next week? I'm kinda busy right now.",
    "Send it to j.doe@example.com, that's J dot D-O-E.",
    "The parcel weighed 2.5 kilograms and cost £7.99 to ship.",
    "It's the 3rd floor, room 312, next to the lift.",
    "Can't you just reset my password? I've tried twice already.",
    "We need a minimum of a hundred and twenty units by the 1st of May.",
    "She said it's about a million people in the 1960s.",
    "Ok so um the café near the theatre was closed.",
    "They analysed the programme and cancelled it.",
    "",
    "Um, uh.",
    "[inaudible]",
    "...",
]

FOREIGN = [
    "¿Puedo hablar con un agente, por favor?",
    "Ich möchte meine Bestellung stornieren, bitte.",
    "Je voudrais réserver une table pour deux personnes à vingt heures.",
    "Здравствуйте, я хочу узнать статус заказа.",
    "Straße, Größe und Maße — das sind drei Wörter.",
    "東京駅で会いましょう。",
    "Ça coûte quarante-cinq euros, n'est-ce pas ?",
]

FILLERS = ["um", "uh", "hmm", "mm", "mhm", "like", "you know"]
SWAPS = {
    "color": "colour", "colour": "color", "centre": "center", "center": "centre",
    "theatre": "theater", "organised": "organized", "analysed": "analyzed",
    "programme": "program", "cancelled": "canceled", "I'd": "I would", "it's": "it is",
    "I've": "I have", "can't": "cannot", "don't": "do not", "doesn't": "does not",
    "two": "2", "three": "3", "seven": "7", "fifteen": "15", "fifty": "50", "twenty": "20",
    "second": "2nd", "third": "3rd", "first": "1st", "dollars": "bucks", "please": "please.",
    "gonna": "going to", "kinda": "kind of", "okay": "OK", "Mr.": "Mister", "Dr.": "Doctor",
}
RANDOM_WORDS = ["the", "a", "account", "bill", "can", "yes", "no", "today", "number", "refund",
                "call", "fifty", "twenty", "ten", "pounds", "order", "late", "hi", "thanks", "so"]


def perturb(sentence: str) -> str:
    words = sentence.split()
    out = []
    for w in words:
        r = rng.random()
        bare = w.strip(".,?!")
        if r < 0.08:
            continue  # deletion
        if r < 0.16:
            out.append(rng.choice(RANDOM_WORDS))  # substitution
            continue
        if r < 0.30 and bare in SWAPS:
            out.append(w.replace(bare, SWAPS[bare]))
            continue
        out.append(w)
        if rng.random() < 0.06:
            out.append(rng.choice(FILLERS + RANDOM_WORDS))  # insertion
    text = " ".join(out)
    r = rng.random()
    if r < 0.25:
        text = text.lower()
    elif r < 0.35:
        text = text.upper()
    if rng.random() < 0.3:
        text = "".join(c for c in text if c not in ",.?!")
    if rng.random() < 0.05:
        text = "  " + text.replace(" ", "   ", 2) + " \t"
    return text


def main() -> None:
    pairs = []
    for s in SENTENCES:
        pairs.append((s, s))
        for _ in range(6):
            pairs.append((s, perturb(s)))
    for s in FOREIGN:
        pairs.append((s, s))
        for _ in range(3):
            pairs.append((s, perturb(s)))
    # Edge cases: empty sides, hypotheses much longer than references, number spellings.
    pairs += [
        ("", ""),
        ("", "hello there"),
        ("hello there", ""),
        ("um", "uh"),
        ("one two three", "1 2 3"),
        ("twenty twenty four", "2024"),
        ("it costs ten thousand dollars", "it costs $10,000"),
        ("three and a half percent", "3.5%"),
        ("hi", "hi hi hi hi hi"),
        ("the first the second the third", "1st 2nd 3rd"),
        ("minus five degrees", "-5 degrees"),
        ("a b c d e f g", "g f e d c b a"),
    ]
    out = []
    raw_refs, raw_hyps = [], []
    for ref, hyp in pairs:
        item = {"reference": ref, "hypothesis": hyp}
        for name, norm in (("english", english), ("basic", basic)):
            nr, nh = norm(ref), norm(hyp)
            m = jiwer.process_words(nr, nh)
            item[name] = {
                "reference": " ".join(nr.split()),
                "hypothesis": " ".join(nh.split()),
                "wer": m.wer,
                "errors": m.substitutions + m.deletions + m.insertions,
                "reference_words": m.hits + m.substitutions + m.deletions,
            }
        m = jiwer.process_words(ref, hyp)
        item["raw"] = {"wer": m.wer, "errors": m.substitutions + m.deletions + m.insertions}
        raw_refs.append(ref)
        raw_hyps.append(hyp)
        out.append(item)
    corpus = {
        "english": jiwer.wer([english(r) for r in raw_refs], [english(h) for h in raw_hyps]),
        "basic": jiwer.wer([basic(r) for r in raw_refs], [basic(h) for h in raw_hyps]),
        "raw": jiwer.wer(raw_refs, raw_hyps),
    }
    json.dump(
        {
            "generator": "scripts/wer-fixture.py",
            "reference": {"jiwer": jiwer.__version__ if hasattr(jiwer, "__version__") else "4.0.0",
                          "whisper-normalizer": "0.1.15"},
            "corpus_wer": corpus,
            "pairs": out,
        },
        __import__("sys").stdout,
        ensure_ascii=False,
        indent=1,
    )


if __name__ == "__main__":
    main()
