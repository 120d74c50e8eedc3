"""Judging image and video generators on digits (`codec lm eval`).

Each generator draws ``n`` samples, the classes 0-9 in turn, in batches; a digit classifier trained in the repo
(codec/eval/digit_classifier.py, its test accuracy in its info.json) gives the Fréchet distance of
its features between the samples and held-out real digits (the test split; videos: every frame of
held-out moving digits), the accuracy of the requested class, and the within-class diversity
relative to real digits. Beside quality: the sequential transformer forward passes one batch takes
(CFG's unconditional branch counted) and the wall time per image. Two
reference rows bound the scores: real held-out digits (the valid split against the test split) and
the tokenizer's reconstructions of them (what a perfect generator of its tokens would reach).
MaskGIT and the flow head in random order are also run over a list of step counts (the quality-vs-
steps plot).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from codec.eval.digit_classifier import DigitClassifier
from codec.eval.generation_metrics import GenerationScores, score_images, score_videos
from codec.files import atomic_write

from .visual_generation import GenerationOptions
from .visual_models import LoadedGenerator

BATCH = 50


def method_name(loaded: LoadedGenerator) -> str:
    """ar, maskgit, var, flow (raster) or flow (random)."""
    config = loaded.model.config
    if loaded.model.model_type == "image_token_lm":
        return config.kind
    if loaded.model.model_type == "next_scale_lm":
        return "var"
    return f"flow ({config.order})"


def sweepable(loaded: LoadedGenerator) -> bool:
    """Whether the number of steps is a free choice (MaskGIT, MAR); raster AR and VAR have fixed counts."""
    config = loaded.model.config
    return getattr(config, "kind", None) == "maskgit" or getattr(config, "order", None) == "random"


def effective_steps(loaded: LoadedGenerator, options: GenerationOptions) -> int | None:
    """The decoding steps ``options`` gives a MaskGIT or random-order flow model (None for the others)."""
    if not sweepable(loaded):
        return None
    if options.steps:
        return options.steps
    from .image_flow import DEFAULT_MAR_STEPS

    return loaded.model.config.maskgit_steps if method_name(loaded) == "maskgit" else DEFAULT_MAR_STEPS


def reference(video: bool, frames: int, size: int, count: int = 200) -> tuple[Tensor, Tensor]:
    """Held-out real digits [M, 1, S, S] (or moving-digits videos [M, 1, T, S, S]) and their labels."""
    if video:
        from codec.video.moving_digits import MovingDigits

        clips = MovingDigits(count, frames, size=size, split="test", seed=2)
        return torch.stack([clips[i] for i in range(count)]), torch.stack([clips.label(i)[0] for i in range(count)])
    from codec.image.datasets import digits_images

    images = digits_images("test", size)
    return torch.stack([images[i] for i in range(len(images))]), images.labels.clone()


def score(classifier: DigitClassifier, samples: Tensor, labels: Tensor | None, real: Tensor,
          real_labels: Tensor) -> GenerationScores:
    scorer = score_videos if samples.dim() == 5 else score_images
    return scorer(classifier, samples, labels, real, real_labels)


@torch.no_grad()
def draw(loaded: LoadedGenerator, n: int, options: GenerationOptions, seed: int) -> tuple[Tensor, Tensor, int, float]:
    """(samples [n, C, ...], their labels [n], the forward passes one batch takes (however large), seconds),
    drawn in batches of BATCH."""
    labels = torch.arange(n) % max(loaded.num_classes, 1)
    options = replace(options, order=getattr(loaded.model.config, "order", "raster"))  # the order it was trained for
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    samples, passes, start = [], 0, time.perf_counter()
    for chunk in labels.split(BATCH):
        result = loaded.model.generate(chunk.to(loaded.device), loaded.tokenizer, options, generator)
        samples.append(result.images.float().cpu())
        passes = max(passes, result.forward_passes)
    return torch.cat(samples), labels, passes, time.perf_counter() - start


def row(name: str, method: str, options: GenerationOptions | None, scores: GenerationScores, passes: int | None,
        seconds: float | None, steps: int | None = None) -> dict:
    return {"model": name, "method": method, "steps": steps,
            "cfg": None if options is None else options.cfg, **asdict(scores),
            "forward_passes": passes, "seconds_per_image": seconds}


def evaluate_generators(generators: list[tuple[str, LoadedGenerator]], classifier: DigitClassifier, n: int,
                        options: GenerationOptions, sweep_steps: list[int], seed: int,
                        progress: Callable[[], None] = lambda: None) -> tuple[list[dict], list[dict], dict[str, Tensor]]:
    """(main rows with the references first, sweep rows, samples of each generator)."""
    first = generators[0][1]
    video = first.tokenizer.token_spec.modality == "video"
    samples, labels, _, _ = draw(first, 1, options, seed)  # the shape of a sample: frames and size
    frames, size = (samples.shape[2] if video else 1), samples.shape[-1]
    real, real_labels = reference(video, frames, size)
    rows, sweeps, drawn = [], [], {}
    if not video:
        from codec.image.datasets import digits_images

        valid = digits_images("valid", size)
        valid_images = torch.stack([valid[i] for i in range(len(valid))])
        rows.append(row("real digits (valid split)", "reference", None,
                        score(classifier, valid_images, valid.labels, real, real_labels), None, None))
        tokenizer = first.tokenizer
        with torch.no_grad():
            rebuilt = tokenizer.decode(tokenizer.encode(valid_images.to(first.device))).float().cpu()
        rows.append(row(f"{first.model.config.tokenizer} reconstructions", "reference", None,
                        score(classifier, rebuilt, valid.labels, real, real_labels), None, None))
    for name, loaded in generators:
        method = method_name(loaded)
        samples, labels, passes, seconds = draw(loaded, n, options, seed)
        drawn[name] = samples
        rows.append(row(name, method, options, score(classifier, samples, labels, real, real_labels), passes,
                        seconds / n, effective_steps(loaded, options)))
        progress()
        if sweepable(loaded):
            for steps in sweep_steps:
                swept = replace(options, steps=steps)
                samples, labels, passes, seconds = draw(loaded, n, swept, seed)
                sweeps.append(row(name, method, swept, score(classifier, samples, labels, real, real_labels),
                                  passes, seconds / n, steps))
                progress()
    return rows, sweeps, drawn


def markdown(rows: list[dict]) -> str:
    video = any(r["frame_change"] is not None for r in rows)
    head = "| model | method | steps | FD (lower is better) | class accuracy | diversity | forward passes | s per image |"
    extra = " frame change | label agreement |" if video else ""
    lines = [head + extra, "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if video else "")]

    def cell(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    for r in rows:
        accuracy = "" if r["class_accuracy"] is None else f"{100 * r['class_accuracy']:.1f}%"
        line = (f"| {r['model']} | {r['method']} | {cell(r['steps'], 'd')} | {r['frechet_distance']:.2f} | "
                f"{accuracy} | {r['diversity']:.2f} | {cell(r['forward_passes'], 'd')} | "
                f"{cell(r['seconds_per_image'], '.4f')} |")
        if video:
            line += f" {cell(r['frame_change'], '.2f')} | {cell(r['label_agreement'], '.2f')} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_generation_report(out: Path, rows: list[dict], sweeps: list[dict], samples: dict[str, Tensor],
                            fps: float | None, force: bool = False) -> str:
    """results.json/.csv/.md, plot.png (FD vs steps) and a sample grid per generator (PNG, or GIF for video)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .visual_cli import tile

    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    with atomic_write(out / "results.json", force) as tmp:
        tmp.write_text(json.dumps({"results": rows, "steps_sweep": sweeps}, indent=1) + "\n")
    with atomic_write(out / "results.md", force) as tmp:
        tmp.write_text(table + ("\n" + markdown(sweeps) if sweeps else ""))
    keys = list(rows[0])
    with atomic_write(out / "results.csv", force) as tmp:
        tmp.write_text(",".join(keys) + "\n" + "".join(",".join("" if r[k] is None else str(r[k]) for k in keys) + "\n"
                                                       for r in rows + sweeps))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(r["model"] for r in sweeps):
        points = sorted((r["forward_passes"], r["frechet_distance"]) for r in sweeps if r["model"] == name)
        ax.plot(*zip(*points), "o-", label=f"{name} (steps sweep)")
    references = [r for r in rows if r["method"] == "reference"]
    for r, style in zip(references, ("--", ":")):
        ax.axhline(r["frechet_distance"], linestyle=style, color="grey", linewidth=1, label=r["model"])
    for r in rows:
        if r["method"] != "reference":
            ax.scatter([r["forward_passes"]], [r["frechet_distance"]], marker="*", s=120,
                       label=f"{r['model']} ({r['method']})")
    ax.set(xscale="log", xlabel="transformer forward passes (sequential, per batch)",
           ylabel="Fréchet distance (classifier features)",
           title="quality vs forward passes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(out / "plot.png", force) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    for name, images in samples.items():
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        grid = tile(images[:100].clamp(0, 1), columns=10)
        if images.dim() == 5:
            from codec.video.io import write_video

            write_video(out / f"samples_{safe}.gif", grid, fps or 8.0, force)
        else:
            from codec.image.io import write_image

            write_image(out / f"samples_{safe}.png", grid, force)
    return table
