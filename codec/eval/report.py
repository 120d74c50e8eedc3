"""Evaluation outputs: results.json / .csv / .md, plot.png and spectrogram comparisons."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write
from .spectrogram import spectrogram_image
from .metrics import ALL_METRICS
from .runner import ORIGINAL, EvalResults

PLOT_METRICS = ("pesq_wb", "stoi", "wer", "mel_distance", "speaker_sim")
KBPS_TICKS = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
TABLE_METRICS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "wer", "si_sdr", "mel_distance", "speaker_sim")
PERCENT_METRICS = frozenset({"wer"})  # stored as fractions, shown as percentages
NOTE_DELAY = ("Each system's delay was estimated by cross-correlation with the original and removed before "
              "the intrusive metrics; the mean delay per system is reported.")


def _label(name: str) -> str:
    return next((m.label for m in ALL_METRICS if m.name == name), name)


def _clips(n: int) -> str:
    return f"{n} clip" + "s" * (n != 1)


def wer_note(rows: list[dict]) -> str | None:
    """Which reference each clip's WER was counted against (None without WER)."""
    sources = {r["clip"]: r["wer_reference"] for r in rows if "wer_reference" in r}
    if not sources:
        return None
    transcripts, asr = sum(s == "transcript" for s in sources.values()), sum(s == "asr" for s in sources.values())
    parts = ([f"transcripts ({_clips(transcripts)})"] if transcripts else []) + (
        [f"ASR of the original ({_clips(asr)})"] if asr else [])
    note = ("WER: word error rate of pocketsphinx (English, its general language model) on each system's output, "
            "over all clips (all errors / all reference words); reference: " + " / ".join(parts) + ".")
    if transcripts:
        note += f" The \"{ORIGINAL}\" row is the recogniser on the uncoded audio against the transcripts: its floor."
    if asr:
        note += (" Against the recogniser's transcript of the original, WER counts only the words coding changed "
                 "(the original scores 0 by construction).")
    return note


def _write_text(path: Path, text: str, force: bool) -> None:
    with atomic_write(path, force) as tmp:
        tmp.write_text(text)


def _cell(stat: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    if not stat or stat["mean"] is None:
        return "-"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['ci95']:.{digits}f}"


def _metric_cell(stat: dict | None, metric: str) -> str:
    return _cell(stat, 1, 100.0) if metric in PERCENT_METRICS else _cell(stat)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(summaries: list[dict], metrics: list[str]) -> str:
    """One row per (system, group): bitrates, then each metric's mean ± 95% CI half-width (WER: the
    corpus rate in percent)."""
    header = ["system", "clips", "group", "nominal kbps", "actual kbps", "delay ms"] + [_label(m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [s["label"], str(s["clips"]), s["group"], _number(s["nominal_kbps"], "g"),
                 _number(s["actual_kbps"], ".2f"), _cell(s["delay_ms"], 1)]
        cells += [_metric_cell(s.get(m), m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _difference_cell(stat: dict | None, metric: str) -> str:
    if stat is None:
        return "-"
    scale, digits = (100.0, 1) if metric in PERCENT_METRICS else (1.0, 3)
    return (f"{scale * stat['mean']:+.{digits}f} ± {scale * stat['ci95']:.{digits}f} "
            f"({stat['better']}/{stat['n']} better)")


def paired_table(entries: list[dict], metrics: list[str]) -> str:
    """One row per (system, group) of ``runner.paired_differences``: each metric's mean difference
    from the compared system ± 95% CI half-width, and the clips it did better on."""
    shown = [m for m in metrics if any(m in e for e in entries)]
    header = ["system", "against", "clips", "group"] + [_label(m) for m in shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        cells = [e["label"], e["against"], str(e["clips"]), e["group"]] + [_difference_cell(e.get(m), m) for m in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, results: EvalResults, summaries: list[dict], metrics: list[str],
                 notes: list[str], force: bool = False, paired: list[dict] | None = None) -> list[Path]:
    """Write every output file into ``out`` (atomically); returns their paths. ``paired``: the
    entries of ``runner.paired_differences``, reported in their own section."""
    out.mkdir(parents=True, exist_ok=True)
    skipped = {m: sum(1 for r in results.rows if m in r and r[m] is None) for m in metrics}
    why = {"wer": "no words in the reference"}
    notes = [NOTE_DELAY] + ([wer_note(results.rows)] if "wer" in metrics else []) + notes + [
        f"{n} scores of {_label(m)} skipped ({why.get(m, 'clip too short or no speech')})."
        for m, n in skipped.items() if n]
    document = {"notes": notes, "unreadable": results.unreadable, "failures": results.failures,
                "summary": summaries, "paired": paired or [], "clips": results.rows}
    _write_text(out / "results.json", json.dumps(document, indent=2) + "\n", force)
    buffer = io.StringIO()
    # coded rows' columns first: the original's rows have only the bitrate-free and WER ones
    columns = list(dict.fromkeys(k for r in sorted(results.rows, key=lambda r: r["system"] == ORIGINAL) for k in r))
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(results.rows)
    _write_text(out / "results.csv", buffer.getvalue(), force)
    table_metrics = [m for m in TABLE_METRICS if m in metrics] + [m for m in metrics if m not in TABLE_METRICS]
    text = "# Bitrate vs quality\n\n" + markdown_table(summaries, table_metrics)
    text += "\nMean ± 95% confidence half-width over clips"
    text += " (WER: all errors over all reference words, in percent).\n\n" if "wer" in table_metrics else ".\n\n"
    if paired:
        text += ("## Clip by clip\n\n" + paired_table(paired, table_metrics)
                 + "\nEach system minus the one it is compared with, over the clips both scored: mean ± 95% "
                 "confidence half-width, and on how many clips it did better (WER: the difference of the "
                 "corpus rates, in points).\n\n")
    text += "".join(f"- {n}\n" for n in notes)
    text += "".join(f"- unreadable: {u}\n" for u in results.unreadable)
    text += "".join(f"- failed: {f}\n" for f in results.failures)
    _write_text(out / "results.md", text, force)
    written = [out / "results.json", out / "results.csv", out / "results.md"]
    written.append(plot(out / "plot.png", summaries, [m for m in PLOT_METRICS if m in metrics], force))
    written += spectrograms(out / "spectrograms", results, force)
    return written


def _savefig(figure, path: Path, force: bool, dpi: int = 100) -> Path:
    import matplotlib.pyplot as plt

    with atomic_write(path, force) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    plt.close(figure)
    return path


def plot(path: Path, summaries: list[dict], metrics: list[str], force: bool) -> Path:
    """One panel per metric: quality against actual kbps, one line per system (all clips); the
    uncoded original (WER only) as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    groups = {s["group"] for s in summaries}
    rows = [s for s in summaries if s["group"] == ("all" if "all" in groups else next(iter(groups)))]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        for system in dict.fromkeys(s["system"] for s in rows):
            points = sorted((s["actual_kbps"], s[metric]["mean"], s[metric]["ci95"]) for s in rows
                            if s["system"] == system and s["actual_kbps"] is not None and s[metric]["mean"] is not None)
            if points:
                x, y, err = map(np.array, zip(*points))
                ax.errorbar(x, scale * y, yerr=scale * err, marker="o", capsize=3, label=system)
        floors = [ax.axhline(scale * s[metric]["mean"], color="gray", linestyle="--", label=s["label"])
                  for s in rows if s["actual_kbps"] is None and s[metric]["mean"] is not None]
        if floors and ax is not axes[0][0]:
            ax.legend(handles=floors, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(KBPS_TICKS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("kbps (actual, headers included)")
        ax.set_title(_label(metric))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return _savefig(figure, path, force)


def spectrograms(folder: Path, results: EvalResults, force: bool) -> list[Path]:
    """A figure per example clip: the original's log-mel spectrogram above each system's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for index, (clip, entries) in enumerate(results.examples.items()):
        folder.mkdir(parents=True, exist_ok=True)
        sr = results.sample_rates[clip]
        figure, axes = plt.subplots(len(entries), 1, figsize=(7, 1.1 * len(entries)), squeeze=False)
        for ax, (label, audio) in zip(axes[:, 0], entries):
            ax.imshow(spectrogram_image(torch.from_numpy(audio), sr)[0].numpy(), aspect="auto", cmap="magma")
            ax.set_ylabel(label, rotation=0, ha="right", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, 0].set_title(Path(clip).name, fontsize=9)
        figure.tight_layout()
        written.append(_savefig(figure, folder / f"clip{index}_{Path(clip).stem}.png", force, dpi=72))
    return written
