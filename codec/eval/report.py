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
from .metrics import METRICS
from .runner import EvalResults

PLOT_METRICS = ("pesq_wb", "stoi", "mel_distance", "speaker_sim")
KBPS_TICKS = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
TABLE_METRICS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "mel_distance", "speaker_sim")
NOTE_DELAY = ("Each system's delay was estimated by cross-correlation with the original and removed before "
              "the intrusive metrics; the mean delay per system is reported.")


def _label(name: str) -> str:
    return next((m.label for m in METRICS if m.name == name), name)


def _write_text(path: Path, text: str, force: bool) -> None:
    with atomic_write(path, force) as tmp:
        tmp.write_text(text)


def _cell(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


def markdown_table(summaries: list[dict], metrics: list[str]) -> str:
    """One row per (system, group): bitrates, then each metric's mean ± 95% CI half-width."""
    header = ["system", "clips", "group", "nominal kbps", "actual kbps", "delay ms"] + [_label(m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [s["label"], str(s["clips"]), s["group"], f"{s['nominal_kbps']:g}", f"{s['actual_kbps']:.2f}",
                 _cell(s["delay_ms"], 1)] + [_cell(s.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, results: EvalResults, summaries: list[dict], metrics: list[str],
                 notes: list[str], force: bool = False) -> list[Path]:
    """Write every output file into ``out`` (atomically); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    skipped = {m: sum(1 for r in results.rows if r.get(m) is None) for m in metrics}
    notes = [NOTE_DELAY] + notes + [f"{n} scores of {_label(m)} skipped (clip too short or no speech)."
                                    for m, n in skipped.items() if n]
    document = {"notes": notes, "unreadable": results.unreadable, "failures": results.failures,
                "summary": summaries, "clips": results.rows}
    _write_text(out / "results.json", json.dumps(document, indent=2) + "\n", force)
    buffer = io.StringIO()
    columns = list(dict.fromkeys(k for r in results.rows for k in r))
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(results.rows)
    _write_text(out / "results.csv", buffer.getvalue(), force)
    table_metrics = [m for m in TABLE_METRICS if m in metrics] + [m for m in metrics if m not in TABLE_METRICS]
    text = "# Bitrate vs quality\n\n" + markdown_table(summaries, table_metrics)
    text += "\nMean ± 95% confidence half-width over clips.\n\n" + "".join(f"- {n}\n" for n in notes)
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
    """One panel per metric: quality against actual kbps, one line per system (all clips)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    groups = {s["group"] for s in summaries}
    rows = [s for s in summaries if s["group"] == ("all" if "all" in groups else next(iter(groups)))]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for system in dict.fromkeys(s["system"] for s in rows):
            points = sorted((s["actual_kbps"], s[metric]["mean"], s[metric]["ci95"]) for s in rows
                            if s["system"] == system and s[metric]["mean"] is not None)
            if points:
                x, y, err = map(np.array, zip(*points))
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=system)
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
