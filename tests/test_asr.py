"""Offline ASR for continuations: word error rate arithmetic and pocketsphinx on the sample clips."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from codec.audio.io import read_audio
from codec.errors import CodecError
from codec.eval.asr import Recognizer, word_error_rate, word_errors

from .conftest import DEVSPEECH

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


@pytest.mark.skipif(not (DEVSPEECH / "manifest.jsonl").is_file(), reason="shared devspeech data not present")
def test_a_transcript_does_not_depend_on_the_clips_heard_before():
    """pocketsphinx adapts from one utterance to the next: without a fresh decoder per utterance the
    two espeak clips came out differently when these 12 clips were recognised in reverse order."""
    names = ["real/asterisk_en/vm-tooshort", "real/librivox/sense_and_sensibility_01_austen_64kb-0930",
             *(f"tts/espeak_en-gb/espeak_en-gb_{i:03d}" for i in (5, 11, 25)),
             *(f"tts/espeak_en-us+f3/espeak_en-us+f3_{i:03d}" for i in (3, 6, 11, 17, 22)),
             *(f"tts/espeak_en-us/espeak_en-us_{i:03d}" for i in (15, 23))]
    clips = [read_audio(DEVSPEECH / f"{name}.flac") for name in names]
    asr = Recognizer()
    forward = [asr.transcribe(c.samples, c.sample_rate) for c in clips]
    asr = Recognizer()
    backward = [asr.transcribe(c.samples, c.sample_rate) for c in reversed(clips)][::-1]
    assert forward == backward and sum(bool(t) for t in forward) >= 10
