"""What every image / video generator shares: how it is asked to sample, and what it returns.

Generators (raster AR and MaskGIT over codes, next-scale VAR, continuous tokens with a flow head)
implement ``generate(labels, tokenizer, options, generator) -> Generated``: class labels [B] in,
decoded images [B, C, H, W] (or videos [B, C, T, H, W]) in [0, 1] out, with the number of
transformer forward passes it took (the cost the evaluation compares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from codec.errors import CodecError


@dataclass(frozen=True)
class GenerationOptions:
    steps: int = 0  # MaskGIT: decoding steps; continuous tokens in random order (MAR): reveal steps; 0: the default
    cfg: float = 1.0  # classifier-free guidance scale (1: none; the unconditional branch costs one more pass)
    temperature: float = 1.0  # 0: greedy / noise-free where the method allows
    top_k: int = 0  # discrete methods: keep the k most likely codes (0: all)
    order: Literal["raster", "random"] = "raster"  # continuous tokens: raster AR or random order (MAR)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.cfg < 0 or self.temperature < 0 or self.top_k < 0:
            raise ValueError(f"steps, cfg, temperature and top_k must be >= 0, got {self}")
        if self.order not in ("raster", "random"):
            raise ValueError(f"order must be raster or random, got {self.order!r}")


@dataclass
class Generated:
    images: Tensor  # [B, C, H, W] or [B, C, T, H, W] in [0, 1]
    forward_passes: int  # transformer forward passes for the whole batch (CFG's second branch counted)


def check_tokenizer(tokenizer: nn.Module, name: str, fingerprint: str) -> None:
    """CodecError unless ``tokenizer`` has the fingerprint of the tokenizer a generator was trained on
    (``name``, ``fingerprint``: what its config records)."""
    from codec.checkpoint import model_fingerprint

    found = model_fingerprint(tokenizer)
    if found != fingerprint:
        raise CodecError(f"The tokenizer (fingerprint {found}) is not the one this model was trained on "
                         f"({name!r}, fingerprint {fingerprint}).")
