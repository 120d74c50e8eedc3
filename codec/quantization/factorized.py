"""Factorized vector quantization with l2-normalised codes (DAC, after Yu et al. ViT-VQGAN).

A 1x1 projection takes the latent to a low-dimensional code space; the nearest code is the
one with the highest cosine similarity; the codebook is learned by gradient through the
codebook loss, while the commitment loss pulls the projected latent towards its code.

A code that no latent picks gets no gradient and stays dead. With ``restart_dead_codes`` a
training step counts each code's use (an EMA of codes per step, decay ``ema_decay``) and moves
codes below ``dead_code_threshold`` onto random projected latents of the (data-parallel) batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from ..distributed import all_gather_cat, all_reduce_sum_, broadcast_
from .axes import flatten_axes, flatten_code_axes, unflatten_axes
from .config import QuantizerConfig
from .level import LevelOutput, mse_per_item


class FactorizedVectorQuantizer(nn.Module):
    """One factorized VQ level over [B, D, *axes] latents (code space of config.codebook_dim)."""

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.dim = dim
        self.project_in = weight_norm(nn.Conv1d(dim, config.codebook_dim, 1))
        self.project_out = weight_norm(nn.Conv1d(config.codebook_dim, dim, 1))
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)
        self.commitment_weight = config.commitment_weight
        self.codebook_weight = config.codebook_weight
        self.restart = config.restart_dead_codes
        if self.restart:
            self.decay, self.threshold = config.ema_decay, config.dead_code_threshold
            # a new code has 1 / (1 - decay) steps' grace: as if used threshold / (1 - decay) times per step
            self.fresh_usage = config.dead_code_threshold / (1 - config.ema_decay)
            self.register_buffer("usage", torch.full((config.codebook_size,), self.fresh_usage))
            self.register_load_state_dict_pre_hook(self._fresh_usage_if_missing)

    def _fresh_usage_if_missing(self, module, state_dict, prefix, *args) -> None:
        """Weights saved without restarts (e.g. a model to fine-tune) load with every code fresh."""
        state_dict.setdefault(prefix + "usage", torch.full_like(self.usage, self.fresh_usage))

    @property
    def codebook_size(self) -> int:
        return self.codebook.num_embeddings

    def nearest(self, z: Tensor) -> Tensor:
        """Code of highest cosine similarity: z [B, d, N] in code space -> [B, N]."""
        z = F.normalize(z, dim=1)
        codebook = F.normalize(self.codebook.weight, dim=1)  # [K, d]
        # max's indices are argmax's (the first of equal maxima), about 2x faster on CPU
        return torch.einsum("bdn,kd->bnk", z, codebook).max(-1).indices

    def encode(self, x: Tensor) -> Tensor:
        """x [B, D, *axes] -> codes [B, *axes]."""
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        return unflatten_axes(self.nearest(self.project_in(x)), axes)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, *axes] -> [B, D, *axes]."""
        codes, axes = flatten_code_axes(codes, leading=1)  # [B, N]
        return unflatten_axes(self.project_out(self.codebook(codes).transpose(1, 2)), axes)

    def forward(self, x: Tensor) -> LevelOutput:
        """Quantize x [B, D, *axes] with straight-through gradients in code space."""
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        z_e = self.project_in(x)  # [B, d, N]
        codes = self.nearest(z_e.detach())  # [B, N]
        z_q = self.codebook(codes).transpose(1, 2)  # [B, d, N]
        commitment = mse_per_item(z_e, z_q.detach()) * self.commitment_weight
        codebook_loss = mse_per_item(z_q, z_e.detach()) * self.codebook_weight
        z_q = z_e + (z_q - z_e).detach()  # straight-through
        quantized = self.project_out(z_q)  # [B, D, N]
        if self.restart and self.training:
            self._restart_dead_codes(z_e.detach(), codes)
        return LevelOutput(unflatten_axes(quantized, axes), unflatten_axes(codes, axes), commitment, codebook_loss)

    @torch.no_grad()
    def _restart_dead_codes(self, z_e: Tensor, codes: Tensor) -> None:
        """Count this step's codes [B, N] into the usage EMA, then move dead codes onto random
        rows of the projected latents z_e [B, d, N] of every rank (rank 0 draws them for all)."""
        counts = all_reduce_sum_(torch.bincount(codes.flatten(), minlength=self.codebook_size).to(self.usage.dtype))
        self.usage.lerp_(counts, 1 - self.decay)
        dead = self.usage < self.threshold  # [K]
        if not dead.any():
            return
        latents = all_gather_cat(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]).to(self.codebook.weight.dtype))
        rows = broadcast_(torch.randint(len(latents), (self.codebook_size,), device=latents.device))  # rank 0's draw
        samples = latents[rows]  # [K, d]
        self.codebook.weight.copy_(torch.where(dead[:, None], samples, self.codebook.weight))
        self.usage.copy_(torch.where(dead, torch.full_like(self.usage, self.fresh_usage), self.usage))

