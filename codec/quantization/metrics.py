"""Codebook health metrics: usage and perplexity of each level over a batch of codes."""

from __future__ import annotations

import torch
from torch import Tensor


def codebook_metrics(codes: Tensor, codebook_size: int) -> tuple[Tensor, Tensor]:
    """Usage and perplexity per level: codes [B, Q, *axes] -> usage [Q], perplexity [Q].

    usage: fraction of the codebook's codes that occur; perplexity: exp(entropy) of the code
    histogram (1 when one code is used, K when all K codes are used equally often).
    """
    flat = codes.detach().transpose(0, 1).reshape(codes.shape[1], -1)  # [Q, B * prod(axes)]
    counts = torch.zeros(flat.shape[0], codebook_size, device=codes.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
    probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
    usage = (counts > 0).to(counts.dtype).mean(1)
    perplexity = torch.exp(-torch.xlogy(probs, probs).sum(1))
    return usage, perplexity
