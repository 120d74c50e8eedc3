"""Offline speech recognition for intelligibility (coded speech, spoken-LM continuations):
pocketsphinx (its English acoustic model ships in the pip wheel) and word error rate.

With a vocabulary (word counts, e.g. of a corpus's transcripts) the recogniser decodes with a unigram
language model over those words, which suits small-vocabulary synthetic corpora; without one it uses
the wheel's general English language model.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from codec.errors import CodecError

SAMPLE_RATE = 16000


def words_of(text: str) -> list[str]:
    """Lower-case words, punctuation dropped."""
    return re.findall(r"[a-z']+", text.lower())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein distance over words."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER of (reference, hypothesis) pairs: all errors over all reference words."""
    errors, words = map(sum, zip(*(word_errors(r, h) for r, h in pairs))) if pairs else (0, 0)
    if not words:
        raise CodecError("Word error rate needs references with at least one word.")
    return errors / words


class Recognizer:
    """pocketsphinx over 16 kHz mono audio. Each utterance starts from a freshly initialised decoder
    (~0.3 s): pocketsphinx otherwise carries adaptation state from one utterance to the next, and a
    clip's transcript would depend on the clips recognised before it."""

    def __init__(self, vocabulary: Counter[str] | None = None) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise CodecError("ASR needs pocketsphinx: pip install pocketsphinx.") from None
        if vocabulary is None:
            self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
            return
        probe = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        known = {w: n for w, n in vocabulary.items() if probe.lookup_word(w)}
        if not known:
            raise CodecError("None of the vocabulary's words is in the recogniser's pronunciation dictionary.")
        self._lm_dir = tempfile.TemporaryDirectory()  # read again at every reinit; removed with this object
        arpa = Path(self._lm_dir.name) / "words.arpa"
        arpa.write_text(_unigram_arpa(known))
        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=str(arpa))

    def transcribe(self, samples: torch.Tensor, sample_rate: int) -> str:
        """Words heard in ``samples`` [C, T] (or [T]) at ``sample_rate``."""
        from codec.audio.io import resample

        mono = samples.reshape(-1, samples.shape[-1]).float().mean(0, keepdim=True)
        mono = resample(mono, sample_rate, SAMPLE_RATE)[0]
        pcm = (mono.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
        self.decoder.reinit()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


def available() -> bool:
    """Whether pocketsphinx (the recogniser) is installed."""
    return importlib.util.find_spec("pocketsphinx") is not None


@functools.lru_cache(maxsize=1)
def _english() -> Recognizer:
    return Recognizer()


def transcribe(samples: np.ndarray | torch.Tensor, sample_rate: int) -> str:
    """Words the general English recogniser hears in ``samples`` ([T] or [C, T], numpy or torch);
    the recogniser is loaded once per process."""
    if isinstance(samples, np.ndarray):
        samples = torch.from_numpy(np.ascontiguousarray(samples))
    return _english().transcribe(samples, sample_rate)


def _unigram_arpa(counts: dict[str, int]) -> str:
    """An ARPA unigram model: add-one word frequencies, a tenth of the mass on ending the sentence."""
    total = sum(n + 1 for n in counts.values())
    lines = ["\\data\\", f"ngram 1={len(counts) + 2}", "", "\\1-grams:", "-99 <s>", f"{math.log10(0.1):.4f} </s>"]
    lines += [f"{math.log10(0.9 * (n + 1) / total):.4f} {w}" for w, n in sorted(counts.items())]
    return "\n".join([*lines, "", "\\end\\", ""])
