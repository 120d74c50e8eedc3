"""A synthetic speech corpus for spoken LMs, made offline: grammar sentences (and, one utterance in seven,
word lists) read by many TTS voices.

    OUT/train/<voice>/<id>.wav (+ .txt)     training voices (codec/data/tts.py VOICES minus HELD_OUT)
    OUT/heldout/<voice>/<id>.wav (+ .txt)   held-out voices, other sentences: evaluation only
    OUT/pairs/<kind>/<n>_{good,bad}.wav     minimal pairs (lexical, syntactic) read by held-out voices
    OUT/pairs_seen/<kind>/...               the same pairs read by training voices (pairs_seen.jsonl):
                                            how much of a failure is the unseen voice
    OUT/manifest.jsonl                      {"path", "id", "text", "speaker", "split"} per utterance
    OUT/pairs.jsonl                         {"kind", "good", "bad", "good_path", "bad_path", "speaker"}

Everything follows from the seed; files already there are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from codec.data.tts import HELD_OUT, VOICES, Voice, synthesize_once
from codec.files import atomic_write

from .grammar import Grammar

WORD_LIST_EVERY = 7  # every 7th training utterance is a word list (slm/grammar.py)
WORDS_PER_SECOND = 2.6  # about how fast the voices speak: sizes the sentence count for a target duration


@dataclass(frozen=True)
class Job:
    path: Path
    voice: Voice
    text: str


def _run(job: Job) -> float:
    return synthesize_once(job.voice, job.text, job.path)


def build_corpus(out: Path, minutes: float, pairs: int = 200, seed: int = 0, workers: int = 2,
                 heldout_fraction: float = 0.1, advance: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Synthesize about ``minutes`` of training speech (plus held-out speech and ``pairs`` minimal
    pairs of each kind); returns minutes per split."""
    grammar = Grammar(seed)
    train_voices = [v for v in VOICES if v.id not in HELD_OUT]
    held_voices = [v for v in VOICES if v.id in HELD_OUT]
    count = _sentences(minutes)
    jobs, rows, train_texts = [], [], set()

    def new_sentence(split: str) -> str:
        """A sentence; outside training, one that training never reads (100 tries, then any)."""
        for _ in range(100):
            text = grammar.sentence()
            if split == "train" or text not in train_texts:
                break
        if split == "train":
            train_texts.add(text)
        return text

    for split, voices, n in (("train", train_voices, count), ("heldout", held_voices, max(1, round(count * heldout_fraction)))):
        for i in range(n):
            voice = voices[i % len(voices)]
            text = grammar.word_list() if split == "train" and i % WORD_LIST_EVERY == WORD_LIST_EVERY - 1 \
                else new_sentence(split)
            uid = f"{split}-{i:06d}"
            path = out / split / voice.id / f"{uid}.wav"
            jobs.append(Job(path, voice, text))
            rows.append({"path": str(path.relative_to(out)), "id": uid, "text": text, "speaker": voice.id, "split": split})
    pair_rows: dict[str, list[dict]] = {"pairs": [], "pairs_seen": []}
    for n in range(pairs):
        for pair in (grammar.lexical_pair(), grammar.syntactic_pair()):
            for folder, voices in (("pairs", held_voices), ("pairs_seen", train_voices)):
                voice = voices[n % len(voices)]
                paths = {side: out / folder / pair.kind / f"{n:05d}_{side}.wav" for side in ("good", "bad")}
                jobs += [Job(paths["good"], voice, pair.good), Job(paths["bad"], voice, pair.bad)]
                pair_rows[folder].append({"kind": pair.kind, "good": pair.good, "bad": pair.bad, "speaker": voice.id,
                                          "good_path": str(paths["good"].relative_to(out)),
                                          "bad_path": str(paths["bad"].relative_to(out))})
    seconds: dict[str, float] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:  # the engines run as subprocesses: threads suffice
        for job, duration in zip(jobs, pool.map(_run, jobs)):
            split = job.path.relative_to(out).parts[0]
            seconds[split] = seconds.get(split, 0.0) + duration
            advance()
    _write_lines(out / "manifest.jsonl", rows)
    for folder, lines in pair_rows.items():
        _write_lines(out / f"{folder}.jsonl", lines)
    return {split: s / 60 for split, s in seconds.items()}


def _write_lines(path: Path, rows: list[dict]) -> None:
    with atomic_write(path, force=True) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sentences(minutes: float) -> int:
    """Training sentences for about ``minutes`` of speech (~7 words a sentence)."""
    return max(1, round(minutes * 60 * WORDS_PER_SECOND / 7))


def count_jobs(minutes: float, pairs: int, heldout_fraction: float = 0.1) -> int:
    """Files ``build_corpus`` synthesizes (for a progress bar)."""
    count = _sentences(minutes)
    return count + max(1, round(count * heldout_fraction)) + 8 * pairs
