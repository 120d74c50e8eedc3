"""Finite scalar quantization (Mentzer et al. 2023, arXiv 2309.15505).

The latent is projected to one scalar per entry of `levels`; each scalar is squashed into a
bounded range and rounded to one of L_i integer grid points, then normalised to [-1, 1]. The
implicit codebook is the product grid, prod(L_i) codes, so nothing is learned but the two
projections and no codebook can collapse. A code is the mixed-radix number of the digits.
The public methods take [B, D, *axes]; the grid helpers work on the flattened [B, C, N].

Grid of one scalar with L levels (values = digits / (L // 2)):
    odd  L = 5:  -2 -1  0  1  2            -> -1, -0.5, 0, 0.5, 1
    even L = 8:  -4 -3 -2 -1  0  1  2  3   -> -1 ... 0.75 (bounded with a half-step offset)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .axes import flatten_axes, flatten_code_axes, unflatten_axes
from .config import QuantizerConfig
from .metrics import codebook_metrics
from .result import QuantizerOutput

_BOUND_EPS = 1e-3


class FiniteScalarQuantizer(nn.Module):
    """One FSQ level over [B, D, *axes] latents: codes [B, 1, *axes] into prod(config.fsq_levels) codes."""

    levels: Tensor
    half_width: Tensor
    basis: Tensor

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.dim = dim
        levels = torch.tensor(config.fsq_levels)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        self.register_buffer("levels", levels, persistent=False)  # [C]
        self.register_buffer("half_width", (levels // 2).float(), persistent=False)  # [C]
        self.register_buffer("basis", basis, persistent=False)  # [C] mixed-radix place values
        self.project_in = nn.Conv1d(dim, len(levels), 1)
        self.project_out = nn.Conv1d(len(levels), dim, 1)

    @property
    def n_q(self) -> int:
        return 1

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels.tolist())

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,)

    def bound(self, z: Tensor) -> Tensor:
        """Squash z [B, C, N] so that rounding gives digits in [-(L // 2), (L - 1) - L // 2]; 0 -> 0."""
        levels = self.levels[:, None].to(z.dtype)
        half_l = (levels - 1) * (1 - _BOUND_EPS) / 2
        offset = (self.levels[:, None] % 2 == 0).to(z.dtype) * 0.5  # even L: grid shifted by half a step
        shift = torch.atanh((offset / half_l).clamp(max=1 - _BOUND_EPS))  # clamp only matters for L = 2
        return torch.tanh(z + shift) * half_l - offset

    def quantize_values(self, z: Tensor) -> Tensor:
        """Grid values [B, C, N] in [-1, 1] for z [B, C, N], with straight-through rounding."""
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / self.half_width[:, None]

    def values_to_codes(self, values: Tensor) -> Tensor:
        """Grid values [B, C, N] -> codes [B, 1, N] int64."""
        digits = (values * self.half_width[:, None] + self.half_width[:, None]).round().long()
        return (digits * self.basis[:, None]).sum(1, keepdim=True)

    def codes_to_values(self, codes: Tensor) -> Tensor:
        """Codes [B, 1, N] -> exact grid values [B, C, N]."""
        digits = (codes // self.basis[:, None]) % self.levels[:, None]
        return (digits - self.half_width[:, None]) / self.half_width[:, None]

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize x [B, D, *axes]; there are no auxiliary losses (both are zero)."""
        self._check_n_q(n_q)
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        values = self.quantize_values(self.project_in(x))  # [B, C, N]
        codes = self.values_to_codes(values.detach())  # [B, 1, N]
        usage, perplexity = codebook_metrics(codes, self.codebook_size)
        zero = x.new_zeros(())
        quantized = self.project_out(values)  # [B, D, N]
        return QuantizerOutput(unflatten_axes(quantized, axes), unflatten_axes(codes, axes), zero, zero.clone(),
                               usage, perplexity)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """x [B, D, *axes] -> codes [B, 1, *axes]."""
        self._check_n_q(n_q)
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        return unflatten_axes(self.values_to_codes(self.quantize_values(self.project_in(x))), axes)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, 1, *axes] -> [B, D, *axes]."""
        codes, axes = flatten_code_axes(codes, leading=2)  # [B, 1, N]
        self._check_n_q(codes.shape[1])
        values = self.codes_to_values(codes).to(self.project_out.weight.dtype)  # [B, C, N]
        return unflatten_axes(self.project_out(values), axes)

    def _check_n_q(self, n_q: int | None) -> None:
        if n_q not in (None, 1):
            raise ValueError(f"FSQ has a single level: n_q must be None or 1, got {n_q}")
