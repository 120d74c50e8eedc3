"""Factorized vector quantization with l2-normalised codes (DAC, after Yu et al. ViT-VQGAN).

A 1x1 projection takes the latent to a low-dimensional code space; the nearest code is the
one with the highest cosine similarity; the codebook is learned by gradient through the
codebook loss, while the commitment loss pulls the projected latent towards its code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .level import LevelOutput, mse_per_item

if TYPE_CHECKING:
    from .config import QuantizerConfig


class FactorizedVectorQuantizer(nn.Module):
    """One factorized VQ level over [B, D, T] latents (code space of config.codebook_dim)."""

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.project_in = weight_norm(nn.Conv1d(dim, config.codebook_dim, 1))
        self.project_out = weight_norm(nn.Conv1d(config.codebook_dim, dim, 1))
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)
        self.commitment_weight = config.commitment_weight
        self.codebook_weight = config.codebook_weight

    @property
    def codebook_size(self) -> int:
        return self.codebook.num_embeddings

    def nearest(self, z: Tensor) -> Tensor:
        """Code of highest cosine similarity: z [B, d, T] in code space -> [B, T]."""
        z = F.normalize(z, dim=1)
        codebook = F.normalize(self.codebook.weight, dim=1)  # [K, d]
        return torch.einsum("bdt,kd->btk", z, codebook).argmax(-1)

    def encode(self, x: Tensor) -> Tensor:
        """x [B, D, T] -> codes [B, T]."""
        return self.nearest(self.project_in(x))

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, T] -> [B, D, T]."""
        return self.project_out(self.codebook(codes).transpose(1, 2))

    def forward(self, x: Tensor) -> LevelOutput:
        """Quantize x [B, D, T] with straight-through gradients in code space."""
        z_e = self.project_in(x)  # [B, d, T]
        codes = self.nearest(z_e.detach())
        z_q = self.codebook(codes).transpose(1, 2)  # [B, d, T]
        commitment = mse_per_item(z_e, z_q.detach()) * self.commitment_weight
        codebook_loss = mse_per_item(z_q, z_e.detach()) * self.codebook_weight
        z_q = z_e + (z_q - z_e).detach()  # straight-through
        return LevelOutput(self.project_out(z_q), codes, commitment, codebook_loss)
