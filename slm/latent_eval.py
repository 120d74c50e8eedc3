"""What a LatentLM learned, and how it compares with a token LM on the same prompts.

- held-out flow-matching loss (fixed noise; a poor early-stopping signal: it falls slowly and
  says little about what the samples sound like);
- side by side, on the same prompts (slm/continuation.py protocol): speaker similarity, ASR word
  error rate, energy and Frechet distances of the continuations' latent frames to the real ones,
  and generation time per second of audio, for the latent LM, a token LM (``--compare``), the
  codec's own resyntheses and the trivial baselines (last prompt frame repeated; a Gaussian fitted
  to the prompts);
- the latent LM's distances and speed against the flow head's ODE steps and the temperature.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from .continuation import Continued, Distances, latent_distances, mean_ci, score_continuations
from .latent_model import LatentLM, SamplingOptions

HEAD_STEPS = (1, 2, 4, 8, 20)
TEMPERATURES = (0.5, 0.8, 1.0)


@dataclass(frozen=True)
class SystemRow:
    name: str
    energy: float
    frechet: float
    speaker_same: float | None = None  # mean GE2E similarity of prompt and continuation
    speaker_other: float | None = None  # ... and another speaker's continuation (chance level)
    wer: float | None = None
    seconds_per_second: float | None = None  # generation time per second of generated audio


@dataclass(frozen=True)
class SweepRow:
    head_steps: int
    temperature: float
    energy: float
    frechet: float
    seconds_per_second: float


def timed_continuations(lm, codec, prompts, prompt_seconds: float, options, seed: int) -> tuple[list[Continued], float]:
    """(continuations, generation seconds per second of generated audio)."""
    from .generate import continue_utterances

    start = time.perf_counter()
    results = continue_utterances(lm, codec, prompts, prompt_seconds, options, seed)
    elapsed = time.perf_counter() - start
    generated = sum(r.audio.shape[-1] - r.prompt_samples for r in results) / codec.sample_rate
    return results, elapsed / max(generated, 1e-9)


def system_rows(name: str, results: list[Continued], speed: float, latents_of, frame_rate: float,
                vocabulary: Counter, baselines: bool) -> list[SystemRow]:
    """The system's row (and, with ``baselines``, the codec resynthesis and trivial baselines' rows)."""
    scores = score_continuations(results, vocabulary)
    distances = latent_distances(results, latents_of, frame_rate, baselines)
    row = SystemRow(name, distances["continuation"].energy, distances["continuation"].frechet,
                    mean_ci(scores.same)[0], mean_ci(scores.other)[0], scores.wer, speed)
    resynthesized = [replace(r, audio=r.resynthesis) for r in results]
    ceiling = latent_distances(resynthesized, latents_of, frame_rate)["continuation"]
    rows = [row, SystemRow(f"codec resynthesis ({name})", ceiling.energy, ceiling.frechet, wer=scores.wer_resynthesis)]
    rows += [SystemRow(k, d.energy, d.frechet) for k, d in distances.items() if k != "continuation"]
    return rows


def sweep(lm: LatentLM, codec, prompts, prompt_seconds: float, base: SamplingOptions, latents_of,
          seed: int = 0) -> list[SweepRow]:
    """Distances and speed for each head step count (at the base temperature) and each temperature
    (at the base step count)."""
    settings = [replace(base, steps=n) for n in HEAD_STEPS] + [replace(base, temperature=t) for t in TEMPERATURES]
    rows = []
    for options in dict.fromkeys(settings):  # unique, in order
        results, speed = timed_continuations(lm, codec, prompts, prompt_seconds, options, seed)
        d: Distances = latent_distances(results, latents_of, lm.config.frame_rate)["continuation"]
        rows.append(SweepRow(options.steps, options.temperature, d.energy, d.frechet, speed))
    return rows


def write_latent_report(out: Path, flow_loss: float, systems: list[SystemRow], sweep_rows: list[SweepRow],
                        force: bool = False) -> str:
    """results.json / results.csv / results.md and plot.png in ``out``; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.files import atomic_write

    fmt = lambda v, spec: "" if v is None else format(v, spec)
    lines = [f"held-out flow-matching loss: {flow_loss:.4f} (fixed noise; a poor early-stopping signal)"]
    if systems:
        lines += ["", "| system | energy distance | Frechet distance | speaker sim. own | other speaker | WER | s per s |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.energy:.3f} | {r.frechet:.1f} | {fmt(r.speaker_same, '.3f')} | "
              f"{fmt(r.speaker_other, '.3f')} | {'' if r.wer is None else f'{100 * r.wer:.1f}%'} | "
              f"{fmt(r.seconds_per_second, '.2f')} |" for r in systems]
    if sweep_rows:
        lines += ["", "| head steps | temperature | energy distance | Frechet distance | s per s |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.head_steps} | {r.temperature:g} | {r.energy:.3f} | {r.frechet:.1f} | {r.seconds_per_second:.2f} |"
                  for r in sweep_rows]
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    document = {"flow_loss": flow_loss, "systems": [asdict(r) for r in systems], "sweep": [asdict(r) for r in sweep_rows]}
    with atomic_write(out / "results.json", force) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
    with atomic_write(out / "results.md", force) as tmp:
        tmp.write_text(table)
    with atomic_write(out / "results.csv", force) as tmp:
        keys = [f.name for f in fields(SystemRow)]
        tmp.write_text(",".join(keys) + "\n" + "".join(",".join("" if v is None else str(v) for v in asdict(r).values())
                                                       + "\n" for r in systems))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].barh([r.name for r in systems], [r.energy for r in systems])
    axes[0].set(xlabel="energy distance to the real continuations (lower is better)", title="side by side")
    axes[0].invert_yaxis()
    by_steps = [r for r in sweep_rows if r.temperature == sweep_rows[0].temperature]
    by_temperature = [r for r in sweep_rows if r.head_steps == sweep_rows[-1].head_steps]
    if by_steps:
        axes[1].plot([r.head_steps for r in by_steps], [r.energy for r in by_steps], "o-", label="energy distance")
        twin = axes[1].twinx()
        twin.plot([r.head_steps for r in by_steps], [r.seconds_per_second for r in by_steps], "s--", color="grey")
        twin.set_ylabel("generation s per s of audio")
        axes[1].set(xscale="log", xlabel="flow head ODE steps", ylabel="energy distance", title="quality and speed vs steps")
    if by_temperature:
        axes[2].plot([r.temperature for r in by_temperature], [r.energy for r in by_temperature], "o-")
        axes[2].set(xlabel="temperature (initial noise scale)", ylabel="energy distance", title="quality vs temperature")
    fig.tight_layout()
    with atomic_write(out / "plot.png", force) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return table


def latents_function(codec):
    """Audio [1, T] at the codec's rate -> its latents [D, T'] (the distances' features)."""
    device = next(codec.parameters()).device

    @torch.no_grad()
    def latents_of(audio: torch.Tensor) -> torch.Tensor:
        return codec.encode_latent(audio[None].to(device))[0].float().cpu()

    return latents_of
