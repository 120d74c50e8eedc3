"""Quantizers that turn continuous latents [B, D, *axes] into codes [B, Q, *axes] and back.

Any number of axes (one or more): audio [B, D, F], image [B, D, H, W], video [B, D, T, H, W].
`build_quantizer(dim, QuantizerConfig(...))` is the entry point: residual VQ (EMA or factorized
codebooks), FSQ or LFQ; every quantizer's forward returns a `QuantizerOutput`. `config`
(QuantizerConfig) imports no quantizer; the quantizers import it, and `build` (build_quantizer)
imports both. Modules outside this package import from here only, never from its submodules.
"""

from .build import build_quantizer
from .config import QuantizerConfig
from .factorized import FactorizedVectorQuantizer
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .metrics import codebook_metrics
from .result import QuantizerOutput
from .rvq import ResidualVectorQuantizer
from .vq import EMACodebook, VectorQuantizer

__all__ = [
    "EMACodebook",
    "FactorizedVectorQuantizer",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "build_quantizer",
    "codebook_metrics",
]
