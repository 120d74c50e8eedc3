"""AdamW with a linear warm-up followed by a constant, cosine or exponential schedule."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from .config import OptimConfig


def lr_factor(step: int, config: OptimConfig, total_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    after = step - config.warmup_steps
    if config.schedule == "exponential":
        return config.gamma**after
    if config.schedule == "cosine":
        span = max(1, total_steps - config.warmup_steps)
        progress = min(1.0, after / span)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig, total_steps: int,
                    lr: float | None = None, betas: tuple[float, float] | None = None
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its LambdaLR schedule (lr / betas override the config's)."""
    optimizer = torch.optim.AdamW(params, lr=lr or config.lr, betas=betas or config.betas,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total_steps))
    return optimizer, scheduler


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the gradients' total norm to ``max_norm`` (0: no clipping); return the norm before clipping."""
    return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm if max_norm > 0 else math.inf))
