"""A depth transformer over the codebook levels of one step (RQ-Transformer, Moshi).

The temporal transformer summarises the past into one vector per step; the depth transformer
then predicts that step's levels one after another, level q seeing the step's vector and the
codes of levels < q (teacher-forced in training, sampled in generation):

    position   0        1           ...  Q-1
    input      h_s      e_0(c_0)    ...  e_{Q-2}(c_{Q-2})      (+ h_s projected, at every position)
    predicts   c_0      c_1         ...  c_{Q-1}
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .transformer import Transformer, TransformerConfig


class DepthHead(nn.Module):
    def __init__(self, config: TransformerConfig, codebook_sizes: tuple[int, ...], input_dim: int) -> None:
        super().__init__()
        if not config.causal:
            raise ValueError("the depth transformer must be causal")
        self.project = nn.Linear(input_dim, config.dim)
        self.embeddings = nn.ModuleList(nn.Embedding(k, config.dim) for k in codebook_sizes[:-1])
        self.transformer = Transformer(config)
        self.heads = nn.ModuleList(nn.Linear(config.dim, k) for k in codebook_sizes)

    def _inputs(self, context: Tensor, codes: Tensor) -> Tensor:
        """context [N, D_in], codes [N, q] of the first q levels -> depth inputs [N, q + 1, D]."""
        h = self.project(context)[:, None]
        previous = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings[: codes.shape[1]])]
        return h + torch.stack([torch.zeros_like(h[:, 0]), *previous], 1)

    def forward(self, context: Tensor, codes: Tensor) -> list[Tensor]:
        """Teacher-forced logits of every level: context [N, D_in], codes [N, Q] -> [N, K_q] per level."""
        hidden = self.transformer(self._inputs(context, codes[:, :-1]))
        return [head(hidden[:, q]) for q, head in enumerate(self.heads)]

    def generate(self, context: Tensor, choose: Callable[[int, Tensor], Tensor]) -> Tensor:
        """Codes [N, Q], level by level: ``choose(level, logits [N, K])`` picks each level's codes."""
        codes = torch.zeros(context.shape[0], 0, dtype=torch.long, device=context.device)
        for level, head in enumerate(self.heads):
            hidden = self.transformer(self._inputs(context, codes))
            codes = torch.cat([codes, choose(level, head(hidden[:, -1]))[:, None]], dim=1)
        return codes
