"""MaskGIT parallel decoding (Chang et al., 2022), independent of the network that predicts.

Every token starts masked (-1). At each step the network predicts every place at once; a token is
drawn at each masked place and scored by its log-probability plus Gumbel noise of scale
``temperature * (1 - step / steps)`` (step = 1 .. steps, so the noise anneals to 0); the most
confident masked places are revealed, as many as the cosine schedule says (``tokens_to_unmask``).
A revealed token is kept to the end: never re-masked, never redrawn.

Tokens are [B, Q, N]: Q levels of N places (an image's raster-flattened grid, or RVQ audio frames).
By default the Q * N tokens compete in one schedule; with ``level_by_level`` level 0 is decoded
completely in ``steps`` steps, then level 1 seeing level 0, and so on (SoundStorm).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .sampling import SamplingConfig, sample
from .visual_generation import GenerationOptions

MASKED = -1  # the token value of a place not decoded yet

Predictor = Callable[[Tensor], list[Tensor]]  # tokens [B, Q, N] (MASKED where unknown) -> per level [B, N, K_q]


def mask_schedule(ratio: float | Tensor) -> float | Tensor:
    """The fraction of tokens still masked once a fraction ``ratio`` in [0, 1] of the decoding is
    done: cos(pi / 2 * ratio) (1 at the start, 0 at the end). Training draws its mask ratios from
    it with ratio ~ U[0, 1)."""
    if isinstance(ratio, Tensor):
        return torch.cos(ratio * (math.pi / 2))
    return math.cos(ratio * math.pi / 2)


def tokens_to_unmask(total: int, steps: int) -> list[int]:
    """How many of ``total`` tokens each of ``steps`` steps reveals: after step s,
    floor(total * mask_schedule(s / steps)) stay masked, adjusted so that every step reveals at
    least one token. The counts sum to ``total``."""
    if not 1 <= steps <= total:
        raise ValueError(f"decoding {total} tokens needs 1 to {total} steps (each reveals at least one), got {steps}")
    counts, masked = [], total
    for step in range(1, steps + 1):
        still_masked = math.floor(total * mask_schedule(step / steps))
        still_masked = max(min(still_masked, masked - 1), steps - step)  # >= 1 now and >= 1 per later step
        counts.append(masked - still_masked)
        masked = still_masked
    return counts


def maskgit_decode(predict: Predictor, batch: int, length: int, levels: int, steps: int,
                   options: GenerationOptions = GenerationOptions(), generator: torch.Generator | None = None,
                   level_by_level: bool = False, device: torch.device | str = "cpu") -> tuple[Tensor, int]:
    """Decode tokens [batch, levels, length] from nothing; returns them and the number of
    ``predict`` calls (``steps``, or ``levels * steps`` level by level).

    ``options``: temperature (sampling and confidence noise; 0 = greedy, noise-free) and top_k.
    """
    tokens = torch.full((batch, levels, length), MASKED, dtype=torch.long, device=device)
    sampling = SamplingConfig(temperature=options.temperature, top_k=options.top_k)
    stages = [[level] for level in range(levels)] if level_by_level else [list(range(levels))]
    calls = 0
    for stage in stages:
        for step, count in enumerate(tokens_to_unmask(len(stage) * length, steps), start=1):
            logits = predict(tokens)
            calls += 1
            drawn = torch.stack([sample(logits[q], sampling, generator) for q in stage], dim=1)  # [B, S, N]
            confidence = torch.stack([logits[q].float().log_softmax(-1).gather(-1, drawn[:, i, :, None])[..., 0]
                                      for i, q in enumerate(stage)], dim=1)  # [B, S, N]: log p(drawn)
            noise_scale = options.temperature * (1 - step / steps)
            if noise_scale > 0:
                confidence = confidence + noise_scale * _gumbel(confidence.shape, generator, confidence.device)
            current = tokens[:, stage]  # [B, S, N]
            confidence = confidence.masked_fill(current != MASKED, -torch.inf).flatten(1)
            chosen = confidence.topk(count, dim=1).indices  # [B, count]
            reveal = torch.zeros_like(confidence, dtype=torch.bool).scatter(1, chosen, True).view_as(current)
            tokens[:, stage] = torch.where(reveal, drawn, current)
    return tokens, calls


def _gumbel(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    uniform = torch.rand(shape, generator=generator, device=device).clamp(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))
