"""QuantizerConfig: the frozen description of a quantizer (built by `build.build_quantizer`).

This module imports no quantizer: the quantizers import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

QuantizerKind = Literal["ema", "factorized", "fsq", "lfq"]


@dataclass(frozen=True)
class QuantizerConfig:
    """Which quantizer to build and how it learns.

    kind "ema":        residual VQ, euclidean codebooks of dimension D learned by k-means + EMA (EnCodec)
    kind "factorized": residual VQ, l2-normalised codebooks of `codebook_dim` learned by gradient (DAC)
    kind "fsq":        one level of finite scalar quantization over `fsq_levels` (n_q ignored)
    kind "lfq":        one level of lookup-free quantization: `lfq_bits` signs, 2**lfq_bits codes (n_q ignored);
                       its codebook loss is the entropy penalty, weighted by `entropy_weight`
    """

    kind: QuantizerKind = "ema"
    n_q: int = 8  # residual levels (ema, factorized)
    codebook_size: int = 1024  # codes per level (ema, factorized)
    codebook_dim: int = 8  # low-dimensional code space (factorized only)
    ema_decay: float = 0.99  # ema
    kmeans_iters: int = 50  # ema: Lloyd iterations of the k-means initialisation
    dead_code_threshold: float = 2.0  # restart codes whose EMA count per step falls below this (ema; factorized
    #   with restart_dead_codes)
    restart_dead_codes: bool = False  # factorized: restart dead codes on the batch's latents (ema always does)
    commitment_weight: float = 1.0
    codebook_weight: float = 1.0  # factorized (DAC: 1.0 codebook, 0.25 commitment)
    quantizer_dropout: float = 0.0  # training: probability per item of using 1..n_q levels at random
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # fsq: levels per scalar, codebook = prod(levels)
    lfq_bits: int = 10  # lfq: bits per code, codebook = 2**lfq_bits
    entropy_weight: float = 0.1  # lfq: weight of the entropy penalty (MAGVIT-v2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fsq_levels", tuple(self.fsq_levels))  # lists from JSON configs
        kinds = get_args(QuantizerKind)
        checks = [
            (self.kind in kinds, f"unknown quantizer kind {self.kind!r}; expected one of {kinds}"),
            (self.n_q >= 1, f"n_q must be >= 1, got {self.n_q}"),
            (self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}"),
            (self.codebook_dim >= 1, f"codebook_dim must be >= 1, got {self.codebook_dim}"),
            (0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}"),
            (self.kmeans_iters >= 0, f"kmeans_iters must be >= 0, got {self.kmeans_iters}"),
            (self.dead_code_threshold >= 0, f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}"),
            (self.commitment_weight >= 0, f"commitment_weight must be >= 0, got {self.commitment_weight}"),
            (self.codebook_weight >= 0, f"codebook_weight must be >= 0, got {self.codebook_weight}"),
            (0.0 <= self.quantizer_dropout <= 1.0,
             f"quantizer_dropout must be a probability in [0, 1], got {self.quantizer_dropout}"),
            (len(self.fsq_levels) >= 1 and all(isinstance(n, int) and n >= 2 for n in self.fsq_levels),
             f"fsq_levels must be one or more integers >= 2, got {self.fsq_levels}"),
            (1 <= self.lfq_bits <= 20, f"lfq_bits must be in 1..20, got {self.lfq_bits}"),
            (self.entropy_weight >= 0, f"entropy_weight must be >= 0, got {self.entropy_weight}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Number of codes of each level: (K,) * n_q, (prod(fsq_levels),) for fsq, (2**lfq_bits,) for lfq."""
        if self.kind == "fsq":
            return (math.prod(self.fsq_levels),)
        if self.kind == "lfq":
            return (2**self.lfq_bits,)
        return (self.codebook_size,) * self.n_q

    @property
    def residual(self) -> bool:
        """Whether the levels are residual (a prefix of them is a lower bitrate): RVQ yes; FSQ, LFQ: one level."""
        return self.kind in ("ema", "factorized")

