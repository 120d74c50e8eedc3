"""Offline ASR for continuations: word error rate arithmetic and pocketsphinx on the sample clips."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from codec.audio.io import read_audio
from codec.errors import CodecError
from codec.eval.asr import Recognizer, word_error_rate, word_errors

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TEXTS = {"arctic_awb_a0007": "And you always want to see it in the superlative degree.",
         "arctic_slt_a0009": "He turned sharply, and faced Gregson across the table.",
         "librivox_sense_0880": "he was not an ill disposed young man"}


def test_word_errors_count_substitutions_deletions_and_insertions():
    assert word_errors("the cat sat", "the cat sat") == (0, 3)
    assert word_errors("The cat, sat.", "the bat sat") == (1, 3)  # case and punctuation do not count
    assert word_errors("the cat sat", "the sat") == (1, 3)
    assert word_errors("the cat sat", "the big cat sat down") == (2, 3)
    assert word_errors("a b c d", "") == (4, 4)
    assert word_error_rate([("a b", "a"), ("c d e f", "c d e f")]) == pytest.approx(1 / 6)
    with pytest.raises(CodecError, match="at least one word"):
        word_error_rate([("", "a")])


def test_pocketsphinx_recognizes_the_sample_clips():
    asr = Recognizer()
    heard = {name: asr.transcribe(read_audio(SAMPLES / f"{name}.flac").samples, 16000) for name in TEXTS}
    assert word_error_rate([(TEXTS[n], heard[n]) for n in TEXTS]) < 0.25  # measured 11%
    shuffled = list(TEXTS.values())[1:] + list(TEXTS.values())[:1]
    assert word_error_rate(list(zip(shuffled, heard.values()))) > 0.7


def test_a_vocabulary_restricts_what_is_heard():
    audio = read_audio(SAMPLES / "librivox_sense_0880.flac")
    vocabulary = Counter("he was not an ill disposed young man table degree".split())
    heard = Recognizer(vocabulary).transcribe(audio.samples, audio.sample_rate)
    assert set(heard.split()) <= set(vocabulary)
    assert word_errors(TEXTS["librivox_sense_0880"], heard)[0] <= 2
    with pytest.raises(CodecError, match="dictionary"):
        Recognizer(Counter({"qzxv": 1}))
