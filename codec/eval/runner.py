"""Run every system on every clip: code, remove the delay, score; aggregate with 95% CIs.

Coding runs in this process (neural models use torch's threads, see ``devices.choose_threads``);
scoring, which is single-threaded C and numpy code (PESQ, STOI, the recogniser), is spread over
``workers`` processes of one thread each.

Word error rate ("wer"): pocketsphinx (English) transcribes every coded clip and the original. The
reference is the clip's transcript (a manifest's "text", else a .txt file next to the audio) when it
has one, else the recogniser's transcript of the original; with a transcript the original itself is
also scored, as the system "original" (the recogniser's floor). Each row keeps its errors and the
reference's words, so that a set of clips scores sum(errors) / sum(words), not a mean of clip rates.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..audio.io import Audio, read_audio, to_channels
from ..devices import apply_threads
from ..errors import CodecError
from ..files import read_manifest
from .alignment import align
from .asr import transcribe, word_errors
from .baselines import CodecSystem
from .metrics import ALL_METRICS, METRIC_NAMES, compute_metrics

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}
ORIGINAL = "original"  # the system name and label of the uncoded audio's rows (WER against transcripts)


@dataclass(frozen=True)
class Clip:
    path: Path
    group: str  # e.g. "real" / "tts" from a manifest's "kind"; "all" otherwise
    text: str | None = None  # what is said, when known (manifest "text" or a .txt next to the audio)


@dataclass
class EvalResults:
    rows: list[dict] = field(default_factory=list)  # one per (system, clip)
    unreadable: list[str] = field(default_factory=list)  # "path: reason"
    failures: list[str] = field(default_factory=list)  # "system on path: reason"
    examples: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # clip -> [(label, audio)]
    sample_rates: dict[str, int] = field(default_factory=dict)  # clip -> sample rate of its examples


def find_clips(data: Path, limit: int | None = None) -> list[Clip]:
    """Clips of a folder (recursive) or a JSONL manifest with ``path`` (and optional ``kind``, ``text``).

    A clip's transcript is its manifest entry's ``text``, else the text of a ``.txt`` file next to
    the audio with the same name (``a.flac`` -> ``a.txt``); an empty one counts as none.
    """
    if not data.exists():
        raise CodecError(f"Evaluation data {data} does not exist.")
    if data.is_dir():
        clips = [Clip(p, "all") for p in sorted(data.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
    else:
        clips = []
        for e in read_manifest(data, "Evaluation manifest"):
            if not isinstance(e.get("text", ""), str):
                raise CodecError(f"The \"text\" of {e['path']} in manifest {data} is not a string.")
            clips.append(Clip(data.parent / e["path"], str(e.get("kind", "all")), e.get("text", "").strip() or None))
    if not clips:
        raise CodecError(f"No audio clips found in {data}.")
    clips = clips[:limit] if limit else clips
    return [c if c.text is not None else Clip(c.path, c.group, _sidecar_text(c.path)) for c in clips]


def _sidecar_text(audio: Path) -> str | None:
    """The transcript in ``audio`` with the suffix .txt, if that file exists and is not blank."""
    path = audio.with_suffix(".txt")
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as e:
        raise CodecError(f"Transcript {path} cannot be read as UTF-8 text ({e}).") from None


def score(reference: np.ndarray, decoded: np.ndarray, sample_rate: int, metrics: list[str] | None = None) -> dict:
    """Remove the delay, then the named metrics (None: all) (a worker-process job). For "wer" the
    decoded clip's transcript is returned as "recognized_text"; the runner counts its errors."""
    wanted = None if metrics is None else [m for m in metrics if m in METRIC_NAMES]
    ref, deg, delay = align(reference, decoded, sample_rate)
    out = {"delay_ms": 1000 * delay / sample_rate, **compute_metrics(ref, deg, sample_rate, wanted)}
    if metrics is None or "wer" in metrics:
        out["recognized_text"] = transcribe(decoded, sample_rate)
    return out


def wer_fields(reference: str, source: str, recognized: str) -> dict:
    """A row's WER columns: its rate (None when the reference has no words), the errors and the
    reference's words that corpus rates sum, where the reference came from ("transcript" or "asr"),
    and both texts."""
    errors, words = word_errors(reference, recognized)
    return {"wer": errors / words if words else None, "wer_errors": errors, "wer_words": words,
            "wer_reference": source, "reference_text": reference, "recognized_text": recognized}


def evaluate(systems: list[CodecSystem], clips: list[Clip], workers: int = 1, examples: int = 0,
             on_progress: Callable[[], None] = lambda: None, metrics: list[str] | None = None) -> EvalResults:
    """Code every clip with every system and score it with ``metrics`` (None: all of ALL_METRICS);
    unreadable clips are listed, not fatal.

    With "wer", clips that have a transcript also get a row for the uncoded audio (system ORIGINAL),
    placed before the clip's coded rows. The decoded audio of the first ``examples`` readable clips
    is kept for spectrogram figures.
    """
    names = {m.name for m in ALL_METRICS}
    if metrics is not None and (unknown := sorted(set(metrics) - names)):
        raise CodecError(f"Unknown metric(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(m.name for m in ALL_METRICS)}.")
    wer = metrics is None or "wer" in metrics
    results = EvalResults()
    pending: list[tuple[int, dict, Future]] = []  # (clip index, row, its scores)
    originals: dict[int, tuple[Clip, dict, Future]] = {}  # clip index -> (clip, row, its transcript)
    # spawn, not fork: a child forked after torch's OpenMP threads ran can deadlock
    executor: Executor = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=torch.set_num_threads, initargs=(1,))
                          if workers > 1 else _InlineExecutor())
    apply_threads(processes=1 + workers if workers > 1 else 1)  # coding shares the CPUs with the scorers
    with executor:
        for index, clip in enumerate(clips):
            try:
                audio = read_audio(clip.path)
            except CodecError as e:
                results.unreadable.append(f"{clip.path}: {e}")
                for _ in systems:
                    on_progress()
                continue
            mono = Audio(to_channels(audio.samples, 1), audio.sample_rate)
            reference = mono.samples[0].numpy()
            keep = len(results.examples) < examples
            if wer:
                row = {"system": ORIGINAL, "label": ORIGINAL, "nominal_kbps": None, "num_bytes": None,
                       "actual_kbps": None, "clip": str(clip.path), "group": clip.group, "duration_s": mono.duration}
                originals[index] = (clip, row, executor.submit(transcribe, reference, mono.sample_rate))
            if keep:
                results.examples[str(clip.path)] = [("original", reference)]
                results.sample_rates[str(clip.path)] = mono.sample_rate
            for system in systems:
                try:
                    coded = system.code(mono)
                except CodecError as e:
                    results.failures.append(f"{system.label} on {clip.path}: {e}")
                    on_progress()
                    continue
                row = {"system": system.name, "label": system.label, "nominal_kbps": system.nominal_kbps,
                       "num_bytes": coded.num_bytes, "actual_kbps": coded.num_bytes * 8 / mono.duration / 1000,
                       "clip": str(clip.path),
                       "group": clip.group, "duration_s": mono.duration,
                       "encode_rtf": coded.encode_seconds / mono.duration,
                       "decode_rtf": coded.decode_seconds / mono.duration}
                decoded = coded.audio.samples[0].numpy()
                if keep:
                    results.examples[str(clip.path)].append((system.label, decoded))
                pending.append((index, row, executor.submit(score, reference, decoded, mono.sample_rate, metrics)))
                on_progress()
        scored: dict[int, list[dict]] = {}
        for index, row, future in pending:
            row.update(future.result())
            scored.setdefault(index, []).append(row)
        for index in sorted(scored.keys() | originals.keys()):
            rows = scored.get(index, [])
            if index in originals:
                clip, row, heard = originals[index]
                heard = heard.result()
                reference, source = (clip.text, "transcript") if clip.text is not None else (heard, "asr")
                for r in rows:
                    r.update(wer_fields(reference, source, r.pop("recognized_text")))
                if source == "transcript":
                    rows.insert(0, {**row, **wer_fields(reference, source, heard)})
            results.rows += rows
    return results


class _InlineExecutor(Executor):
    """Runs submitted jobs immediately (one worker: no process start-up cost)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); half-width 0 for a single value."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), 0.0
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def ratio_interval(errors: list[float], words: list[float]) -> tuple[float, float]:
    """(sum(errors) / sum(words), half-width of its 95% interval): the ratio estimator's
    linearised standard error over clips, with the t quantile; half-width 0 for a single clip."""
    from scipy import stats

    e, w = np.asarray(errors, dtype=np.float64), np.asarray(words, dtype=np.float64)
    rate = float(e.sum() / w.sum())
    if len(e) < 2:
        return rate, 0.0
    se = math.sqrt(len(e) / (len(e) - 1) * float(((e - rate * w) ** 2).sum())) / float(w.sum())
    return rate, float(stats.t.ppf(0.975, len(e) - 1) * se)


def _label_groups(rows: list[dict], labels: list[str]) -> list[tuple[str, str]]:
    """(label, group) for each label and each clip group of ``rows``, then (label, "all") for each
    label when there are several groups."""
    groups = sorted({r["group"] for r in rows})
    return [(label, g) for label in labels for g in groups] + ([(label, "all") for label in labels]
                                                               if len(groups) > 1 else [])


def aggregate(rows: list[dict], metrics: list[str]) -> list[dict]:
    """One summary per (system label, group), plus "all" groups when clips have several groups;
    the ORIGINAL system first.

    Each metric gets {"mean", "ci95", "n", "skipped"} over the rows that were asked for it; for
    "wer" the "mean" is the corpus rate, sum(errors) / sum(reference words) (also given as "errors"
    and "words"), and "ci95" that of a ratio (``ratio_interval``).
    """
    labels = sorted(dict.fromkeys(r["label"] for r in rows), key=lambda label: label != ORIGINAL)
    summaries = []
    for label, group in _label_groups(rows, labels):
        selected = [r for r in rows if r["label"] == label and group in (r["group"], "all")]
        if not selected:
            continue
        first = selected[0]
        coded = first["num_bytes"] is not None  # not the ORIGINAL
        summary = {"label": label, "system": first["system"], "group": group, "clips": len(selected),
                   "nominal_kbps": first["nominal_kbps"],
                   # all bytes over all seconds: what the whole set costs, not a mean of per-clip rates
                   "actual_kbps": sum(r["num_bytes"] for r in selected) * 8 / sum(r["duration_s"] for r in selected)
                   / 1000 if coded else None}
        for name in metrics + ["delay_ms", "encode_rtf", "decode_rtf"]:
            asked = [r for r in selected if name in r]
            scored = [r for r in asked if r[name] is not None]
            summary[name] = {"mean": None, "ci95": None, "n": len(scored), "skipped": len(asked) - len(scored)}
            if scored and name == "wer":
                errors, words = [r["wer_errors"] for r in scored], [r["wer_words"] for r in scored]
                rate, half = ratio_interval(errors, words)
                summary[name].update(mean=rate, ci95=half, errors=sum(errors), words=sum(words))
            elif scored:
                summary[name]["mean"], summary[name]["ci95"] = confidence_interval([r[name] for r in scored])
        summaries.append(summary)
    return summaries


def paired_differences(rows: list[dict], against: str, metrics: list[str]) -> list[dict]:
    """Every other coded system minus the system labelled ``against``, clip by clip: one entry per
    (label, group), plus "all" groups when clips have several groups.

    Each metric gets {"mean", "ci95", "n", "better", "worse"} over the clips both systems scored:
    the mean difference (system - against) with its 95% t-interval, and how many clips the system
    did better or worse on in the metric's direction (lower is better for e.g. mel distance). For
    "wer" the mean is the difference of the two corpus rates, sum(errors - errors') / sum(words),
    with a ratio's interval (``ratio_interval``); better and worse count clips with fewer and more
    errors. A metric that no clip has scores of both systems for is left out.
    """
    directions = {m.name: m.higher_is_better for m in ALL_METRICS}
    base = {r["clip"]: r for r in rows if r["label"] == against}
    labels = list(dict.fromkeys(r["label"] for r in rows if r["label"] not in (against, ORIGINAL)))
    entries = []
    for label, group in _label_groups(rows, labels):
        pairs = [(r, base[r["clip"]]) for r in rows
                 if r["label"] == label and group in (r["group"], "all") and r["clip"] in base]
        if not pairs:
            continue
        entry: dict = {"label": label, "against": against, "group": group, "clips": len(pairs)}
        for name in metrics:
            scored = [(r, b) for r, b in pairs if r.get(name) is not None and b.get(name) is not None]
            if not scored:
                continue
            if name == "wer":
                diffs = [r["wer_errors"] - b["wer_errors"] for r, b in scored]
                mean, half = ratio_interval(diffs, [r["wer_words"] for r, _ in scored])
                gains = [-d for d in diffs]
            else:
                diffs = [r[name] - b[name] for r, b in scored]
                mean, half = confidence_interval(diffs)
                gains = diffs if directions[name] else [-d for d in diffs]
            entry[name] = {"mean": mean, "ci95": half, "n": len(scored),
                           "better": sum(g > 0 for g in gains), "worse": sum(g < 0 for g in gains)}
        entries.append(entry)
    return entries
