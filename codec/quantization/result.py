"""The one typed result every quantizer returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizerOutput:
    """What a quantizer's forward pass produces.

    quantized:        [B, D, *axes] quantized latent with straight-through gradients to the input
    codes:            [B, Q, *axes] int64 code indices (Q = levels used)
    commitment_loss:  scalar, pulls the encoder output towards its codes (summed over levels)
    codebook_loss:    scalar, pulls codebooks towards encoder outputs (zero for EMA codebooks)
    usage:            [Q] fraction of each level's codebook used in this batch
    perplexity:       [Q] exp(entropy) of each level's code histogram in this batch
    first_level:      [B, D, *axes] the first level's quantized output (straight-through), the
                      target of semantic distillation; None for single-level quantizers (FSQ)
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    usage: torch.Tensor
    perplexity: torch.Tensor
    first_level: torch.Tensor | None = None
