"""Residual vector quantization: each level quantizes what the previous levels left over.

Decoding any prefix of the levels gives a coarser reconstruction, so one model serves several
bitrates. Quantizer dropout (SoundStream, DAC) trains for that: in training, each item with
probability p keeps only a random number of levels in 1..n_q.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .axes import flatten_axes, flatten_code_axes, unflatten_axes
from .config import QuantizerConfig
from .factorized import FactorizedVectorQuantizer
from .metrics import codebook_metrics
from .result import QuantizerOutput
from .vq import VectorQuantizer

Level = VectorQuantizer | FactorizedVectorQuantizer


class ResidualVectorQuantizer(nn.Module):
    """config.n_q levels of EMA ("ema") or factorized ("factorized") VQ over [B, D, *axes]."""

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        if config.kind not in ("ema", "factorized"):
            raise ValueError(f"residual VQ needs kind 'ema' or 'factorized', got {config.kind!r}")
        level = VectorQuantizer if config.kind == "ema" else FactorizedVectorQuantizer
        self.dim = dim
        self.levels = nn.ModuleList(level(dim, config) for _ in range(config.n_q))
        self.quantizer_dropout = config.quantizer_dropout

    @property
    def n_q(self) -> int:
        return len(self.levels)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(level.codebook_size for level in self.levels)

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize x [B, D, *axes] with the first n_q levels (default: all).

        Losses are summed over levels, each averaged over the items for which the level is
        active; codes [B, n_q, *axes] are returned for every level, active or dropped.
        """
        n_q = self._check_n_q(n_q)
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        active_levels = self._active_levels(x.shape[0], n_q, x.device)  # [B]
        quantized = torch.zeros_like(x)
        residual = x
        codes, commitment, codebook_loss = [], x.new_zeros(()), x.new_zeros(())
        for i, level in enumerate(self.levels[:n_q]):
            out = level(residual)  # quantized [B, D, N], codes [B, N]
            active = (active_levels > i).to(x.dtype)  # [B]
            quantized = quantized + out.quantized * active[:, None, None]
            residual = residual - out.quantized
            codes.append(out.codes)
            if i == 0:
                first_level = out.quantized
            commitment = commitment + _masked_mean(out.commitment_loss, active)
            codebook_loss = codebook_loss + _masked_mean(out.codebook_loss, active)
        codes_t = torch.stack(codes, 1)  # [B, n_q, N]
        usage, perplexity = codebook_metrics(codes_t, max(self.codebook_sizes))
        return QuantizerOutput(unflatten_axes(quantized, axes), unflatten_axes(codes_t, axes), commitment,
                               codebook_loss, usage, perplexity, unflatten_axes(first_level, axes))

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """x [B, D, *axes] -> codes [B, n_q, *axes]; never changes the codebooks."""
        n_q = self._check_n_q(n_q)
        residual, axes = flatten_axes(x, self.dim)  # [B, D, N]
        codes = []
        for level in self.levels[:n_q]:
            codes.append(level.encode(residual))  # [B, N]
            residual = residual - level.decode(codes[-1])
        return unflatten_axes(torch.stack(codes, 1), axes)  # [B, n_q, *axes]

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, Q, *axes] with Q <= n_q -> [B, D, *axes] (sum of the first Q levels)."""
        codes, axes = flatten_code_axes(codes, leading=2)  # [B, Q, N]
        self._check_n_q(codes.shape[1])
        quantized = torch.stack([level.decode(c) for level, c in zip(self.levels, codes.unbind(1))]).sum(0)
        return unflatten_axes(quantized, axes)  # [B, D, *axes]

    def _check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be between 1 and {self.n_q}, got {n_q}")
        return n_q

    def _active_levels(self, batch: int, n_q: int, device: torch.device) -> Tensor:
        """Levels each item uses [B]: n_q, or with quantizer dropout (training) 1..n_q at random."""
        full = torch.full((batch,), n_q, device=device)
        if not self.training or self.quantizer_dropout == 0:
            return full
        dropped = torch.rand(batch, device=device) < self.quantizer_dropout
        return torch.where(dropped, torch.randint(1, n_q + 1, (batch,), device=device), full)


def _masked_mean(loss: Tensor, mask: Tensor) -> Tensor:
    """Mean of per-item loss [B] over items with mask [B] == 1 (0 when none)."""
    return (loss * mask).sum() / mask.sum().clamp_min(1)
