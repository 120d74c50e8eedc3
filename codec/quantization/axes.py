"""Shape helpers: every quantizer works over [B, D, *axes] by flattening the axes to one.

    audio [B, D, F], image [B, D, H, W], video [B, D, T, H, W]
        -> flatten_axes ->  [B, D, N]  (N = prod(axes), row-major)
        -> quantize     ->  codes [B, Q, N], quantized [B, D, N]
        -> unflatten_axes -> codes [B, Q, *axes], quantized [B, D, *axes]

With one axis the flattening is the identity, so audio results are those of a 1-D quantizer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def flatten_axes(x: Tensor, dim: int) -> tuple[Tensor, torch.Size]:
    """Latent x [B, dim, *axes] (one axis or more) -> ([B, dim, N], axes)."""
    if x.dim() < 3 or x.shape[1] != dim:
        raise ValueError(f"expected a latent [B, D={dim}, *axes] with at least one axis, got shape {tuple(x.shape)}")
    return x.flatten(2), x.shape[2:]


def flatten_code_axes(codes: Tensor, leading: int) -> tuple[Tensor, torch.Size]:
    """Codes with `leading` dims before the axes ([B, *axes]: 1, [B, Q, *axes]: 2) -> ([..., N], axes)."""
    if codes.dim() <= leading:
        layout = "[B, *axes]" if leading == 1 else "[B, Q, *axes]"
        raise ValueError(f"expected codes {layout} with at least one axis, got shape {tuple(codes.shape)}")
    return codes.flatten(leading), codes.shape[leading:]


def unflatten_axes(x: Tensor, axes: torch.Size) -> Tensor:
    """[..., N] -> [..., *axes], the inverse of the flattening above."""
    return x.unflatten(-1, axes)
