"""What a task trains its tokenizer towards: the ``Objective`` interface of the training loop.

One step of the loop (codec/train/trainer.py), around these hooks::

    out = objective.compute(model, batch, step)      # under autocast; model may be DDP-wrapped
    if any of out.losses is not finite on any rank:    # skip the step (abort after a streak)
        return
    metrics = objective.backward(out)                # gradients of the model + trainable_parameters()
    all-reduce the objective's own gradients, clip, optimizer step, schedule step
    metrics |= objective.after_step(batch, out, step)  # e.g. a discriminator's own update

Whatever an objective trains alongside the model (a discriminator with its own optimizer, a
gradient balancer's statistics, a projection head) it owns, and it saves and restores that
through ``state_dict`` / ``load_state_dict``: the loop stores it in every checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class StepOutput:
    """What an objective computed on one batch."""

    losses: dict[str, Tensor]  # scalar losses, logged as loss/<name>; all must be finite to take the step
    metrics: dict[str, float] = field(default_factory=dict)  # other numbers to log (codebook usage, ...)
    output: Any = None  # the model's output, for backward / after_step


class Objective(ABC):
    """The losses of one task's tokenizer, plus anything trained alongside it."""

    @abstractmethod
    def compute(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        """Run ``model`` on ``batch`` and compute the losses of step ``step`` (0-based)."""

    def backward(self, out: StepOutput) -> dict[str, float]:
        """Back-propagate the step's losses (default: their plain sum); return metrics to log."""
        sum(out.losses.values()).backward()
        return {}

    def after_step(self, batch: Any, out: StepOutput, step: int) -> dict[str, float]:
        """Called after the model's optimizer step (not for skipped steps); return metrics to log."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters outside the model that its optimizer trains too (kept out of DDP: the loop
        averages their gradients over ranks itself)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Everything of the objective a resumed run needs (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"this objective keeps no state, got {sorted(state)}")
