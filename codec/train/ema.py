"""Weight EMA: the exported (validated, published) model averages the trained weights over steps."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class WeightEMA:
    """ema = d_t ema + (1 - d_t) w_t over a model's floating-point weights (others are copied).

    The decay warms up as d_t = min(decay, (1 + t) / (10 + t)), so the random initial weights
    do not linger in the average (0.999 ** 2000 would still keep 13.5% of them).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.weights: dict[str, Tensor] = {}
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Start the average at the model's current weights."""
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in the weights after step ``step`` (0-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.weights[name].lerp_(value, 1 - decay)
            else:
                self.weights[name].copy_(value)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the averaged weights into ``model`` (one of the same architecture)."""
        model.load_state_dict(self.weights)
        return model

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.weights)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state.keys() != self.weights.keys():
            missing = sorted(set(self.weights) ^ set(state))
            raise ValueError(f"the EMA weights do not match the model (e.g. {missing[0]})")
        for name, value in state.items():
            self.weights[name].copy_(value)
