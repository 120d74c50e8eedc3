"""Run every system on every clip: code, remove the delay, score; aggregate with 95% CIs.

Coding runs in this process (neural models use torch's threads); scoring, which is
single-threaded C and numpy code (PESQ, STOI), is spread over ``workers`` processes.
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
from ..errors import CodecError
from ..files import read_manifest
from .alignment import align
from .baselines import CodecSystem
from .metrics import compute_metrics

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


@dataclass(frozen=True)
class Clip:
    path: Path
    group: str  # e.g. "real" / "tts" from a manifest's "kind"; "all" otherwise


@dataclass
class EvalResults:
    rows: list[dict] = field(default_factory=list)  # one per (system, clip)
    unreadable: list[str] = field(default_factory=list)  # "path: reason"
    failures: list[str] = field(default_factory=list)  # "system on path: reason"
    examples: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # clip -> [(label, audio)]
    sample_rates: dict[str, int] = field(default_factory=dict)  # clip -> sample rate of its examples


def find_clips(data: Path, limit: int | None = None) -> list[Clip]:
    """Clips of a folder (recursive) or a JSONL manifest with ``path`` (and optional ``kind``)."""
    if not data.exists():
        raise CodecError(f"Evaluation data {data} does not exist.")
    if data.is_dir():
        clips = [Clip(p, "all") for p in sorted(data.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
    else:
        clips = [Clip(data.parent / e["path"], str(e.get("kind", "all")))
                 for e in read_manifest(data, "Evaluation manifest")]
    if not clips:
        raise CodecError(f"No audio clips found in {data}.")
    return clips[:limit] if limit else clips


def score(reference: np.ndarray, decoded: np.ndarray, sample_rate: int, metrics: list[str] | None = None) -> dict:
    """Remove the delay, then the named metrics (None: all) (a worker-process job)."""
    ref, deg, delay = align(reference, decoded, sample_rate)
    return {"delay_ms": 1000 * delay / sample_rate, **compute_metrics(ref, deg, sample_rate, metrics)}


def evaluate(systems: list[CodecSystem], clips: list[Clip], workers: int = 1, examples: int = 0,
             on_progress: Callable[[], None] = lambda: None, metrics: list[str] | None = None) -> EvalResults:
    """Code every clip with every system and score it with ``metrics`` (None: all of METRICS);
    unreadable clips are listed, not fatal.

    The decoded audio of the first ``examples`` readable clips is kept for spectrogram figures.
    """
    results = EvalResults()
    pending: list[tuple[dict, Future]] = []
    # spawn, not fork: a child forked after torch's OpenMP threads ran can deadlock
    executor: Executor = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=torch.set_num_threads, initargs=(1,))
                          if workers > 1 else _InlineExecutor())
    with executor:
        for clip in clips:
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
                pending.append((row, executor.submit(score, reference, decoded, mono.sample_rate, metrics)))
                on_progress()
        for row, future in pending:
            row.update(future.result())
            results.rows.append(row)
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


def aggregate(rows: list[dict], metrics: list[str]) -> list[dict]:
    """One summary per (system label, group), plus "all" groups when clips have several groups."""
    groups = sorted({r["group"] for r in rows})
    keys = [(label, g) for label in dict.fromkeys(r["label"] for r in rows) for g in groups]
    if len(groups) > 1:
        keys += [(label, "all") for label in dict.fromkeys(r["label"] for r in rows)]
    summaries = []
    for label, group in keys:
        selected = [r for r in rows if r["label"] == label and group in (r["group"], "all")]
        if not selected:
            continue
        first = selected[0]
        summary = {"label": label, "system": first["system"], "group": group, "clips": len(selected),
                   "nominal_kbps": first["nominal_kbps"],
                   # all bytes over all seconds: what the whole set costs, not a mean of per-clip rates
                   "actual_kbps": sum(r["num_bytes"] for r in selected) * 8 / sum(r["duration_s"] for r in selected)
                   / 1000}
        for name in metrics + ["delay_ms", "encode_rtf", "decode_rtf"]:
            values = [r[name] for r in selected if r.get(name) is not None]
            mean, half = confidence_interval(values) if values else (None, None)
            summary[name] = {"mean": mean, "ci95": half, "n": len(values), "skipped": len(selected) - len(values)}
        summaries.append(summary)
    return summaries
