"""Drawing tokens from logits: temperature, top-k, top-p (nucleus), greedy decoding, and
repetition-aware sampling (VALL-E 2): a token drawn from the filtered distribution that already
fills at least ``repetition_threshold`` of the last ``repetition_window`` tokens of its level is
drawn again from the whole distribution, which breaks the loops nucleus sampling falls into."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0: greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0: all
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches p
    repetition_window: int = 0  # repetition-aware sampling over this many past tokens; 0: off
    repetition_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_window < 0 \
                or not 0 < self.repetition_threshold <= 1:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1, repetition_window >= 0 and "
                             f"0 < repetition_threshold <= 1, got {self}")


def sample(logits: Tensor, config: SamplingConfig, generator: torch.Generator | None = None,
           history: Tensor | None = None) -> Tensor:
    """Tokens [B] drawn from logits [B, K]; ``history`` [B, W]: the level's previous tokens."""
    if config.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / config.temperature
    tokens = _draw(_filtered(logits, config), generator)
    if config.repetition_window and history is not None and history.shape[-1]:
        recent = history[..., -config.repetition_window:]
        repeated = (recent == tokens[..., None]).float().sum(-1) >= config.repetition_threshold * recent.shape[-1]
        tokens = torch.where(repeated, _draw(logits, generator), tokens)
    return tokens


def _draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    flat = logits.softmax(-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(logits.shape[:-1])


def _filtered(logits: Tensor, config: SamplingConfig) -> Tensor:
    """Logits [..., K] with everything outside top-k / the nucleus set to -inf."""
    if config.top_k:
        kth = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if config.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= config.top_p  # tokens after the nucleus is complete
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -torch.inf)
    return logits
