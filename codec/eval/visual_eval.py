"""Image and video tokenizers against classic codecs at equal bits (``codec eval`` with an image or
video tokenizer as --model).

Every tokenizer is run at each of its bitrates (each prefix of residual levels); each image is then
also coded by JPEG and WebP at the same number of bits, and each video by H.264 and VP9 at the same
bitrate (the best quality of a quality or constant-rate-factor search that fits; "over budget" when
even the lowest quality does not). "Bits" are the coded data without headers: the tokens' packed
bits against JPEG's entropy-coded segment and WebP's bitstream chunk (what grows with the content;
headers are a fixed cost, about 170 bytes for a small grey JPEG with optimised tables, that would
decide every comparison on small images). Whole-file bits (the .cdc file, the .jpg/.webp file, the raw
H.264/VP9 stream) are reported beside them. Quality: PSNR, SSIM and MS-SSIM per image (videos: per
frame, averaged). A JPEG/WebP quality sweep gives the classic codecs' quality-vs-bits curves for the plot.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CodecError
from ..files import atomic_write, files_under
from ..image.bitstream import encode_visual_cdc
from ..image.coding import decode_visual, encode_image, encode_video
from .image_metrics import ms_ssim, psnr, ssim
from .visual_baselines import (VIDEO_CRF_RANGES, CodedVideo, jpeg_at_bits, jpeg_at_quality, video_at_crf, webp_at_bits,
                               webp_at_quality)

JPEG_SWEEP = (1, 3, 5, 10, 20, 30, 50, 75, 90)
WEBP_SWEEP = (0, 5, 10, 20, 40, 60, 80, 100)
METRICS = ("psnr", "ssim", "ms_ssim")


@dataclass(frozen=True)
class NamedTokenizer:
    """A tokenizer to evaluate, as loaded for the command line."""

    name: str
    model: nn.Module
    fingerprint: str


def _levels(model: nn.Module) -> list[int]:
    """The level counts an image or video tokenizer serves: every prefix of residual levels, else all."""
    full = len(model.config.quantizer.codebook_sizes)
    return list(range(1, full + 1)) if model.token_spec.residual else [full]


def _bitrates(tok: NamedTokenizer) -> Iterator[str]:
    """Set each level count ``tok`` serves in turn and yield the system's name; all levels again after."""
    levels = _levels(tok.model)
    try:
        for n_q in levels:
            tok.model.set_num_codebooks(n_q)
            yield f"{tok.name} ({n_q} level{'s' if n_q > 1 else ''})" if len(levels) > 1 else tok.name
    finally:
        tok.model.set_num_codebooks(levels[-1])


def _scores(x: Tensor, y: Tensor) -> dict[str, float]:
    """PSNR, SSIM, MS-SSIM of y against x: images [C, H, W] or videos [C, T, H, W] (frame by frame)."""
    frames_x = x.transpose(0, 1) if x.dim() == 4 else x[None]
    frames_y = y.transpose(0, 1) if y.dim() == 4 else y[None]
    values = {"psnr": psnr(frames_y, frames_x).clamp(max=100.0), "ssim": ssim(frames_y, frames_x),
              "ms_ssim": ms_ssim(frames_y, frames_x)}
    return {k: float(v.mean()) for k, v in values.items()}


def image_rows(tokenizers: list[NamedTokenizer], images: list[tuple[str, Tensor]],
               progress: Callable[[], None] = lambda: None) -> tuple[list[dict], dict[str, list[Tensor]]]:
    """One row per (system, image) and the reconstructions of each system (for the grid)."""
    rows, recons = [], defaultdict(list)
    for tok in tokenizers:
        for system in _bitrates(tok):
            for item, image in images:
                pixels = image.shape[-1] * image.shape[-2]
                coded = encode_image(tok.model, image, tok.name, tok.fingerprint)
                y = decode_visual(tok.model, coded)
                bits = coded.header.positions * sum(coded.header.code_bits)
                file_bits = 8 * len(encode_visual_cdc(coded.header, coded.codes))
                rows.append({"system": system, "kind": "tokenizer", "item": item, "bits": bits, "file_bits": file_bits,
                             "bpp": bits / pixels, "file_bpp": file_bits / pixels, **_scores(image, y)})
                recons[system].append(y)
                for kind, at_bits in (("JPEG", jpeg_at_bits), ("WebP", webp_at_bits)):
                    base = at_bits(image, bits, include_headers=False)
                    name = f"{kind} at the bits of {system}"
                    rows.append({"system": name, "kind": kind.lower(), "item": item, "bits": base.payload_bits,
                                 "file_bits": base.bits, "bpp": base.payload_bits / pixels,
                                 "file_bpp": base.bits / pixels, "quality": base.quality, "over_budget": base.over_budget,
                                 **_scores(image, base.reconstruction)})
                    recons[name].append(base.reconstruction)
                progress()
    return rows, recons


def sweep_rows(images: list[tuple[str, Tensor]]) -> list[dict]:
    """JPEG and WebP over their quality range: mean payload bpp and quality per setting (the curves)."""
    rows = []
    for kind, at_quality, qualities in (("JPEG", jpeg_at_quality, JPEG_SWEEP), ("WebP", webp_at_quality, WEBP_SWEEP)):
        for quality in qualities:
            scores = defaultdict(list)
            for _, image in images:
                coded = at_quality(image, quality)
                pixels = image.shape[-1] * image.shape[-2]
                scores["bpp"].append(coded.payload_bits / pixels)
                scores["file_bpp"].append(coded.bits / pixels)
                for k, v in _scores(image, coded.reconstruction).items():
                    scores[k].append(v)
            rows.append({"codec": kind, "quality": quality, **{k: sum(v) / len(v) for k, v in scores.items()}})
    return rows


def _video_at(video: Tensor, fps: float, kbps: float, codec: str) -> tuple[CodedVideo, bool]:
    """The classic codec's best quality within ``kbps``: the lowest constant rate factor (binary search)
    whose stream fits, as for JPEG's quality; (its highest CRF, True) when even that is larger.
    (Two-pass rate control misses short clips' targets by far, and x264 refuses rates under ~10 kbps.)"""
    low, high = VIDEO_CRF_RANGES[codec]
    best = video_at_crf(video, fps, high, codec)
    if best.kbps_actual > kbps:
        return best, True
    high -= 1
    while low <= high:  # invariant: ``best`` fits; every CRF below ``low`` does not
        middle = (low + high) // 2
        coded = video_at_crf(video, fps, middle, codec)
        if coded.kbps_actual <= kbps:
            best, high = coded, middle - 1
        else:
            low = middle + 1
    return best, False


def video_rows(tokenizers: list[NamedTokenizer], videos: list[tuple[str, Tensor, float]], codecs: tuple[str, ...],
               progress: Callable[[], None] = lambda: None) -> tuple[list[dict], dict[str, list[Tensor]]]:
    """One row per (system, video): bits as kbps of the coded data, quality per frame averaged."""
    rows, recons = [], defaultdict(list)
    for tok in tokenizers:
        for system in _bitrates(tok):
            for item, video, fps in videos:
                seconds = video.shape[1] / fps
                coded = encode_video(tok.model, video, fps, tok.name, tok.fingerprint)
                y = decode_visual(tok.model, coded)
                bits = coded.header.positions * sum(coded.header.code_bits)
                file_bits = 8 * len(encode_visual_cdc(coded.header, coded.codes))
                rows.append({"system": system, "kind": "tokenizer", "item": item, "kbps": bits / seconds / 1000,
                             "file_kbps": file_bits / seconds / 1000, **_scores(video, y)})
                recons[system].append(y)
                for codec in codecs:
                    base, over = _video_at(video, fps, bits / seconds / 1000, codec)
                    name = f"{codec.upper()} at the bitrate of {system}"
                    rows.append({"system": name, "kind": codec, "item": item, "kbps": base.kbps_actual,
                                 "file_kbps": base.kbps_actual, "over_budget": over,
                                 **_scores(video, base.reconstruction)})
                    recons[name].append(base.reconstruction)
                progress()
    return rows, recons


def summarise(rows: list[dict]) -> list[dict]:
    """Per system: the mean of each number and the 95% half-interval of each quality metric."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["system"]].append(row)
    summaries = []
    for system, members in groups.items():
        summary = {"system": system, "kind": members[0]["kind"], "items": len(members)}
        for key, value in members[0].items():
            if isinstance(value, bool):
                summary[key] = sum(m[key] for m in members)  # over-budget count
            elif isinstance(value, (int, float)):
                values = [float(m[key]) for m in members]
                mean = sum(values) / len(values)
                summary[key] = mean
                if key in METRICS and len(values) > 1:
                    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                    summary[f"{key}_ci95"] = 1.96 * math.sqrt(var / len(values))
        summaries.append(summary)
    return summaries


def markdown(summaries: list[dict], rate: str) -> str:
    """The table: rate (bpp or kbps) of the coded data and of whole files, PSNR, SSIM, MS-SSIM."""
    unit = "bits per pixel" if rate == "bpp" else "kbps"
    lines = [f"| system | {unit} | file {unit} | PSNR (dB) | SSIM | MS-SSIM |", "|---|---:|---:|---:|---:|---:|"]
    for s in summaries:
        over = f" ({s['over_budget']} of {s['items']} over budget)" if s.get("over_budget") else ""
        cells = [f"{s[m]:.3f} ± {s.get(m + '_ci95', 0):.3f}" if m != "psnr" else f"{s[m]:.2f} ± {s.get(m + '_ci95', 0):.2f}"
                 for m in METRICS]
        lines.append(f"| {s['system']}{over} | {s[rate]:.3f} | {s['file_' + rate]:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grid(originals: list[Tensor], recons: dict[str, list[Tensor]], systems: list[str], count: int) -> Tensor:
    """Rows: original, then each system; columns: the first ``count`` images (or first frames). [C, H', W']"""
    def first_frame(x: Tensor) -> Tensor:
        return x[:, 0] if x.dim() == 4 else x

    picks = range(min(count, len(originals)))
    rows = [[first_frame(originals[i]) for i in picks]] + [[first_frame(recons[s][i]) for i in picks] for s in systems]
    height = max(x.shape[-2] for row in rows for x in row)
    width = max(x.shape[-1] for row in rows for x in row)
    channels = max(x.shape[0] for row in rows for x in row)
    canvas = torch.ones(channels, len(rows) * (height + 2), len(rows[0]) * (width + 2))
    for r, row in enumerate(rows):
        for c, x in enumerate(row):
            canvas[:, r * (height + 2):r * (height + 2) + x.shape[-2],
                   c * (width + 2):c * (width + 2) + x.shape[-1]] = x.expand(channels, -1, -1).clamp(0, 1)
    return canvas


def write_visual_report(out: Path, rows: list[dict], sweep: list[dict], originals: list[Tensor],
                        recons: dict[str, list[Tensor]], rate: str, force: bool = False) -> str:
    """results.json / .csv / .md, plot.png (quality vs bits) and grid.png in ``out``; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summaries = summarise(rows)
    table = markdown(summaries, rate)
    with atomic_write(out / "results.json", force) as tmp:
        tmp.write_text(json.dumps({"summary": summaries, "sweep": sweep, "rows": rows}, indent=1) + "\n")
    with atomic_write(out / "results.md", force) as tmp:
        tmp.write_text(table)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with atomic_write(out / "results.csv", force) as tmp:
        tmp.write_text(",".join(keys) + "\n" + "".join(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("ssim", "psnr")):
        for codec in sorted({s["codec"] for s in sweep}):
            points = [s for s in sweep if s["codec"] == codec]
            ax.plot([p[rate] for p in points], [p[metric] for p in points], "o-", label=f"{codec} (quality sweep)",
                    color="C0" if codec == "JPEG" else "C1")
        for kind, marker, colour in (("tokenizer", "*", "C3"), ("jpeg", "x", "C0"), ("webp", "+", "C1"),
                                     ("h264", "x", "C0"), ("vp9", "+", "C1")):
            points = [s for s in summaries if s["kind"] == kind]
            if points:
                ax.scatter([p[rate] for p in points], [p[metric] for p in points], marker=marker, s=90, color=colour,
                           label="tokenizers" if kind == "tokenizer" else f"{kind.upper()} at equal bits")
        ax.set(xlabel=("bits per pixel" if rate == "bpp" else "kbps") + " (coded data)", ylabel=metric.upper(),
               title=f"{metric.upper()} vs bits")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(out / "plot.png", force) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    systems = [s["system"] for s in summaries]
    grid = _grid(originals, recons, systems, 8)  # [C, rows * (h + 2), columns * (w + 2)]
    row_height = grid.shape[1] / (len(systems) + 1)
    fig, ax = plt.subplots(figsize=(2 + grid.shape[2] / 40, 0.4 + grid.shape[1] / 40))
    ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * row_height for i in range(len(systems) + 1)], ["original", *systems], fontsize=7)
    ax.set_xticks([])
    with atomic_write(out / "grid.png", force) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return table


def check_same_modality(tokenizers: list[NamedTokenizer]) -> str:
    modalities = {t.model.token_spec.modality for t in tokenizers}
    if len(modalities) != 1:
        raise CodecError(f"Evaluate tokenizers of one modality at a time, got {', '.join(sorted(modalities))}.")
    return modalities.pop()



def load_images(data: Path, channels: int, size: int, max_items: int | None) -> list[tuple[str, Tensor]]:
    """Evaluation images [C, H, W]: every image under a folder (whole, any size), one image file, or the
    test split of a bundled dataset (digits, faces, samples) at ``size``."""
    from ..image.datasets import DATASET_NAMES, image_dataset
    from ..image.io import IMAGE_SUFFIXES, read_image

    if data.is_dir():
        files = files_under(data, IMAGE_SUFFIXES)[:max_items]
        if not files:
            raise CodecError(f"{data} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        return [(str(p.relative_to(data)), read_image(p, channels)) for p in files]
    if data.is_file():
        return [(data.name, read_image(data, channels))]
    if str(data) in DATASET_NAMES:
        count = max_items or 64
        dataset = image_dataset(str(data), "test", size, channels, items=count, seed=2)
        return [(f"{data}/{i}", dataset[(i, 0)]) for i in range(min(count, len(dataset)))]
    raise CodecError(f"--data must be a folder of images, an image or one of {', '.join(DATASET_NAMES)}; "
                     f"got {data}.")


def load_videos(data: Path, channels: int, size: int, frames: int, fps: float,
                max_items: int | None) -> list[tuple[str, Tensor, float]]:
    """Evaluation videos [C, T, H, W] with their fps: every video under a folder, one video file, or
    held-out moving digits (``frames`` frames at ``fps``)."""
    from ..video.io import VIDEO_SUFFIXES, read_video
    from ..video.moving_digits import MovingDigits

    if data.is_dir() or data.is_file():
        files = [data] if data.is_file() else files_under(data, VIDEO_SUFFIXES)[:max_items]
        if not files:
            raise CodecError(f"{data} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))}).")
        return [(p.name, *read_video(p, channels)) for p in files]
    if str(data) == "moving_digits":
        count = max_items or 16
        dataset = MovingDigits(count, frames, size=size, split="test", seed=2)
        return [(f"moving_digits/{i}", dataset[(i, 0)], fps) for i in range(count)]
    raise CodecError(f"--data must be a folder of videos, a video or moving_digits; got {data}.")


def run_visual_eval(tokenizers: list[NamedTokenizer], data: Path, out: Path, max_items: int | None,
                    progress: Callable[[int], Callable[[], None]], force: bool = False) -> str:
    """Evaluate tokenizers of one modality on ``data``; write the report to ``out``; return the table.
    ``progress(total)`` gives the callback advanced after each item of each system."""
    modality = check_same_modality(tokenizers)
    model = tokenizers[0].model
    config = model.config
    total = sum(len(_levels(t.model)) for t in tokenizers)
    if modality == "image":
        images = load_images(data, config.channels, config.image_size, max_items)
        rows, recons = image_rows(tokenizers, images, progress(total * len(images)))
        sweep = sweep_rows(images)
        return write_visual_report(out, rows, sweep, [x for _, x in images], recons, "bpp", force)
    frames = 1 + 2 * config.temporal_downsample
    videos = load_videos(data, config.channels, config.image_size, frames, config.frame_rate, max_items)
    from .visual_baselines import available_video_codecs

    codecs = tuple(c for c, ok in available_video_codecs().items() if ok)
    rows, recons = video_rows(tokenizers, videos, codecs, progress(total * len(videos)))
    return write_visual_report(out, rows, [], [v for _, v, _ in videos], recons, "kbps", force)
