"""What one quantizer level (VQ or factorized VQ) returns, and the per-item loss it uses."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LevelOutput:
    """One level's forward pass; the residual quantizer combines levels into a QuantizerOutput.

    quantized:        [B, D, *axes] with straight-through gradients to the level's input
    codes:            [B, *axes] int64
    commitment_loss:  [B] per item, weighted
    codebook_loss:    [B] per item, weighted (zeros for EMA codebooks)
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor


def mse_per_item(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error of each item: a, b [B, ...] -> [B]."""
    return (a - b).pow(2).flatten(1).mean(1)
