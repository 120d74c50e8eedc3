"""The synthetic corpus: grammar sentences and minimal pairs; voices kept apart; resumable synthesis."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import soundfile as sf

from codec.data.tts import HELD_OUT, VOICES, available_engines
from slm.corpus import build_corpus
from slm.grammar import Grammar, lexicon


def test_grammar_is_seeded_and_pairs_differ_minimally():
    assert [Grammar(3).sentence() for _ in range(2)] == [Grammar(3).sentence() for _ in range(2)]
    g, words = Grammar(0), lexicon()
    for _ in range(100):
        sentence = g.sentence().split()
        assert all(w in words or w == "an" for w in sentence)
        lexical, syntactic = g.lexical_pair(), g.syntactic_pair()
        assert lexical.good in words and lexical.bad not in words and len(lexical.good) == len(lexical.bad)
        assert sum(a != b for a, b in zip(lexical.good, lexical.bad)) == 1
        good, bad = syntactic.good.split(), syntactic.bad.split()
        assert good != bad and len(good) == len(bad)
        changed = sum(a != b for a, b in zip(good, bad))
        assert Counter(good) == Counter(bad) or changed == 1  # reordered, or one verb's number flipped


def test_held_out_voices_exist():
    ids = {v.id for v in VOICES}
    assert HELD_OUT < ids and len(ids) == len(VOICES) and len(ids - HELD_OUT) >= 20


@pytest.mark.skipif(available_engines() != {"espeak-ng", "flite", "festival"},
                    reason="needs the TTS engines espeak-ng, flite and festival (apt-get install espeak-ng flite festival)")
def test_a_small_corpus(tmp_path):
    made = build_corpus(tmp_path, minutes=0.3, pairs=2, seed=1, workers=2)
    assert set(made) == {"train", "heldout", "pairs", "pairs_seen"} and made["train"] > 0.1
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    heldout = [r for r in rows if r["split"] == "heldout"]
    assert not {r["speaker"] for r in train} & HELD_OUT and {r["speaker"] for r in heldout} <= HELD_OUT
    assert not {r["text"] for r in train} & {r["text"] for r in heldout}
    for r in rows:
        info = sf.info(tmp_path / r["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.3
        assert (tmp_path / r["path"]).with_suffix(".txt").read_text().strip() == r["text"]
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [p["kind"] for p in pairs] == ["lexical", "syntactic"] * 2 and {p["speaker"] for p in pairs} <= HELD_OUT
    seen = [json.loads(line) for line in (tmp_path / "pairs_seen.jsonl").read_text().splitlines()]
    assert [(p["good"], p["bad"]) for p in seen] == [(p["good"], p["bad"]) for p in pairs]
    assert not {p["speaker"] for p in seen} & HELD_OUT
    first = (tmp_path / rows[0]["path"]).stat().st_mtime_ns
    assert build_corpus(tmp_path, minutes=0.3, pairs=2, seed=1) == pytest.approx(made)  # resumed: nothing redone
    assert (tmp_path / rows[0]["path"]).stat().st_mtime_ns == first
